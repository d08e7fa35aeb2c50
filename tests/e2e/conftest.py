"""Fixtures for browser tests: a real node with a small directory, Chromium, a fresh page.

``node`` (module scope: one node serves the tests of a module) imports ``directory.csv`` and adds
an admin and a county operator with the CLI, starts ``vmesh node run`` and stops it afterwards,
also when a test fails. ``browser`` is Debian's Chromium driven by Playwright; every test here is
skipped, with the reason, when it is not installed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.console_node import (
    ADMIN,
    CHROMIUM,
    CHROMIUM_ARGS,
    HERE,
    LOCKOUT_FAILURES,
    NODE_CODE,
    PROVINCE,
    XIHU,
    XIHU_OPERATOR,
    Node,
    free_port,
    network_report,
    watch_network,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is missing (Debian package chromium; make test installs it)"
    )
    for item in items:
        if "e2e" in item.keywords and str(HERE) in str(item.path):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("node")
    port = free_port()
    config = base / "vmesh.toml"
    config.write_text(
        "[node]\n"
        f'code = "{NODE_CODE}"\n'
        'name = "浙江省节点"\n'
        'tier = "province"\n'
        'data_dir = "data"\n'
        "\n[http]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        "\n[auth]\n"
        f"lockout_failures = {LOCKOUT_FAILURES}\n",
        encoding="utf-8",
    )
    n = Node(base_url=f"http://127.0.0.1:{port}", config=config, log=base / "node.log")
    n.cli("directory", "import", str(HERE / "directory.csv"))
    n.add_user(*ADMIN, roles=("admin",), scope=PROVINCE, display_name="省平台管理员")
    n.add_user(*XIHU_OPERATOR, roles=("operator",), scope=XIHU, display_name="西湖区值班员")
    n.start()
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def pages(browser, node: Node, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Open fresh pages, each in its own browser context (own cookies, no stored language).

    Uncaught page errors are collected in ``page.errors``. On a failure every page's screenshot
    goes to the node's temporary folder (or ``$VMESH_E2E_ARTIFACTS``), and every page's console
    messages, failed requests and requests still unanswered, and the node's log tail are printed,
    for whoever reads the failure. Every context is closed afterwards.
    """
    contexts = []

    def open_page():  # type: ignore[no-untyped-def]
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        context.set_default_timeout(15_000)
        contexts.append(context)
        pg = context.new_page()
        pg.errors = []
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        watch_network(pg)
        return pg

    try:
        yield open_page
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            out = Path(os.environ.get("VMESH_E2E_ARTIFACTS", node.log.parent))
            out.mkdir(parents=True, exist_ok=True)
            for n, context in enumerate(contexts):
                # A screenshot is a courtesy: it must never mask the failure itself.
                with contextlib.suppress(Exception):
                    shot = out / f"{request.node.name}-{n}.png"
                    context.pages[0].screenshot(path=str(shot), full_page=True)
                with contextlib.suppress(Exception):
                    sys.stderr.write(f"\n--- page {n} ---\n{network_report(context.pages[0])}\n")
            sys.stderr.write(f"\n--- node log tail ---\n{node.log_text()}\n")
        for context in contexts:
            context.close()


@pytest.fixture
def page(pages):  # type: ignore[no-untyped-def]
    """One fresh page on the node's console (see ``pages``)."""
    return pages()
