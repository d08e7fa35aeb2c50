"""A browser camera as a source, in Debian's Chromium against a real node (switch + Janus).

One browser context (a 西湖区 operator) publishes Chromium's fake camera and microphone from the
console's publish page as a field terminal; another context (the province admin) watches that
terminal on the video wall. The tests read what the users see: the publisher's state, the
frames the viewer's browser decoded, the terminal's online status in the directory, the audit
log, and the viewer's tile after the publisher stops.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e.console_node import Node, launch_chromium, log_in, media_browser_args
from media_site import ADMIN, VILLAGE, XIHU_OPERATOR, api, login_cookie, media_node

pytestmark = pytest.mark.e2e

PLAY_TIMEOUT_MS = 45_000  # readiness bound, not a performance assertion
TERMINAL = "33010601001380000001"  # 龙坞村's field terminal (type 138)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = media_node(tmp_path_factory.mktemp("publish"), channels=4, linger=2.0)
    try:
        cookie = login_cookie(n, *ADMIN)
        body = {
            "code": TERMINAL,
            "parent_code": VILLAGE,
            "kind": "field_terminal",
            "name": "龙坞村单兵终端",
        }
        api(n, cookie, "POST", "/directory/entries", body)
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with launch_chromium(media_browser_args(fake_devices=1)) as b:
        yield b


def frames(page: Page) -> int:
    return int(page.get_by_test_id("tile-0").get_attribute("data-frames-decoded") or 0)


def wait_frames_above(page: Page, n: int) -> None:
    page.wait_for_function(
        '(n) => Number(document.querySelector(`[data-testid="tile-0"]`)'
        ".dataset.framesDecoded || 0) > n",
        arg=n,
        timeout=PLAY_TIMEOUT_MS,
    )


def entry_status(page: Page, node: Node) -> str:
    r = page.request.get(f"{node.base_url}/api/directory/entries/{TERMINAL}")
    return str(json.loads(r.body())["status"])


def test_one_browser_publishes_a_fake_camera_and_another_watches_it(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    publisher = pages()
    log_in(publisher, node.base_url, *XIHU_OPERATOR, hash_="#/publish")
    select = publisher.get_by_test_id("publish-endpoint")
    expect(select.locator(f'option[value="{TERMINAL}"]')).to_have_count(1)
    select.select_option(TERMINAL)
    publisher.get_by_test_id("publish-start").click()
    state = publisher.get_by_test_id("publish-state")
    expect(state).to_have_attribute("data-state", "publishing", timeout=PLAY_TIMEOUT_MS)
    expect(state).to_have_text("发布中")
    assert entry_status(publisher, node) == "online"

    viewer = pages()
    log_in(viewer, node.base_url, *ADMIN, hash_=f"#/wall/{TERMINAL}")
    tile = viewer.get_by_test_id("tile-0")
    expect(tile).to_have_attribute("data-state", "playing", timeout=PLAY_TIMEOUT_MS)
    wait_frames_above(viewer, 0)
    first = frames(viewer)
    wait_frames_above(viewer, first + 25)
    assert int(tile.get_attribute("data-width") or 0) > 0

    # Both the publication and the view are audited, by their users, with the terminal's code.
    r = viewer.request.get(f"{node.base_url}/api/audit?target={TERMINAL}")
    rows = json.loads(r.body())["items"]
    seen = {(x["username"], x["action"], x["result"]) for x in rows}
    assert (XIHU_OPERATOR[0], "live.publish", "ok") in seen, rows
    assert (ADMIN[0], "live.view", "ok") in seen, rows

    # The publisher stops: the viewer's tile says why, the terminal goes offline.
    publisher.get_by_test_id("publish-stop").click()
    expect(state).to_have_attribute("data-state", "stopped")
    expect(tile).to_have_attribute("data-state", "no_signal", timeout=PLAY_TIMEOUT_MS)
    expect(viewer.get_by_test_id("tile-0-state")).to_contain_text("the browser stopped publishing")
    viewer.wait_for_function(
        "async (url) => (await (await fetch(url)).json()).status === 'offline'",
        arg=f"{node.base_url}/api/directory/entries/{TERMINAL}",
        timeout=PLAY_TIMEOUT_MS,
    )
    assert publisher.errors == [] and viewer.errors == []


def test_only_terminals_in_scope_are_offered_for_publishing(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_="#/publish")
    options = page.get_by_test_id("publish-endpoint").locator("option")
    expect(options.and_(page.locator(f'[value="{TERMINAL}"]'))).to_have_count(1)
    # The village's 20-odd cameras are not publishable: the terminal is the only choice.
    assert [o.get_attribute("value") for o in options.all()] == [TERMINAL]
