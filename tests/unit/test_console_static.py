"""The console's static files: served with their headers, complete in both languages.

Pure checks on ``vmesh.web`` without a node: a bare FastAPI app with the console mounted, and the
string tables read as text (the console has no build step, so these files are what ships).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from vmesh.web import console

pytestmark = pytest.mark.unit

I18N = console.STATIC / "i18n"
KEY = re.compile(r'^\s*"([^"]+)":', re.M)
# t("key"), tOr("key", …) and field("key", …) calls with a literal key.
USED = re.compile(r'\b(?:t|tOr|field)\(\s*"([a-z][A-Za-z0-9_-]*\.[A-Za-z0-9_.-]+)"')


def keys(name: str) -> set[str]:
    return set(KEY.findall((I18N / name).read_text(encoding="utf-8")))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    console.mount(app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://node.test"
    ) as c:
        yield c


async def test_index_is_served_with_no_cache_and_a_strict_policy(http: httpx.AsyncClient) -> None:
    r = await http.get("/")
    assert r.status_code == 200
    assert '<script src="/js/boot.js" defer>' in r.text
    assert r.headers["cache-control"] == "no-cache"
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_boot_script_loads_main_as_a_module(http: httpx.AsyncClient) -> None:
    # boot.js is a classic script (it must run when a module of the graph fails to arrive) that
    # adds main.js as the module the rest is imported from.
    r = await http.get("/js/boot.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert 'script.type = "module"' in r.text and 'script.src = "/js/main.js"' in r.text
    assert not re.search(r"^(import|export) ", r.text, re.M)


async def test_modules_are_javascript_and_revalidate(http: httpx.AsyncClient) -> None:
    r = await http.get("/js/main.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    again = await http.get("/js/main.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


async def test_every_imported_module_exists(http: httpx.AsyncClient) -> None:
    # Walk the import graph from main.js the way the browser does; a missing file breaks the page.
    seen: set[str] = set()
    todo = ["/js/main.js"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        r = await http.get(path)
        assert r.status_code == 200, f"{path} is imported but not served"
        base = path.rsplit("/", 1)[0]
        for spec in re.findall(r'^import .*? from "(\.[^"]+)";', r.text, re.M):
            parts = (base + "/" + spec).split("/")
            out: list[str] = []
            for p in parts:
                if p == "..":
                    out.pop()
                elif p != ".":
                    out.append(p)
            todo.append("/".join(out))
    assert "/i18n/zh-CN.js" in seen and "/i18n/en.js" in seen
    assert len(seen) >= 10


def test_both_languages_have_the_same_keys() -> None:
    zh, en = keys("zh-CN.js"), keys("en.js")
    assert zh, "no strings found in zh-CN.js"
    assert zh - en == set(), "missing in en.js"
    assert en - zh == set(), "missing in zh-CN.js"


def test_every_string_the_code_asks_for_exists() -> None:
    zh = keys("zh-CN.js")
    used: set[str] = set()
    for f in (console.STATIC / "js").rglob("*.js"):
        used |= set(USED.findall(f.read_text(encoding="utf-8")))
    assert used, "no t(...) calls found"
    assert used - zh == set()


def test_no_markup_injection_paths_in_the_code() -> None:
    # Names and attributes come from imported files; the console builds DOM nodes, never HTML text.
    for f in (console.STATIC / "js").rglob("*.js"):
        text = f.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{f.name} uses {sink}"
