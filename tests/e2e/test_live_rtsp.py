"""An RTSP camera served by a real RTSP server (GStreamer's ``gst-rtsp-server``) plays in Chromium.

The node pulls the camera with ffmpeg (``-c copy``) into the switch and a Janus channel; the test
reads what a user sees: the tile's state, frames decoded (``getStats``) and the decoded
resolution, which is the one the server serves (352×288, none of the synthetic cameras' sizes).
A second camera on the same server is pulled ``always``: without anyone watching it, the
directory shows it online.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e.console_node import Node
from e2e.test_live_wall import (  # noqa: F401 - browser: Chromium with autoplay, module scope
    PLAY_TIMEOUT_MS,
    browser,
    frames,
    log_in,
    wait_frames_above,
)
from media_site import XIHU_OPERATOR, RtspPeer, camera_code, media_node
from peers.rtsp import requires_gst_rtsp

pytestmark = [
    pytest.mark.e2e,
    requires_gst_rtsp,
]

RTSP_CAMERA = camera_code(30)
ALWAYS_CAMERA = camera_code(31)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspPeer]:
    base: Path = tmp_path_factory.mktemp("rtsp")
    srv = RtspPeer(base / "rtsp-server.log", path="/live/main", size="352x288").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, server: RtspPeer) -> Iterator[Node]:
    extra = {
        RTSP_CAMERA: {"name": "龙坞路口网络摄像机", "attrs": {"rtsp_url": server.url}},
        ALWAYS_CAMERA: {
            "name": "龙坞常开网络摄像机",
            "status": "offline",
            "attrs": {"rtsp_url": server.url, "transport": "tcp", "pull": "always"},
        },
    }
    n = media_node(tmp_path_factory.mktemp("live-rtsp"), channels=2, extra_cameras=extra)
    try:
        yield n
    finally:
        n.stop()


def entry(page: Page, node: Node, code: str) -> dict[str, object]:
    return dict(
        json.loads(page.request.get(f"{node.base_url}/api/directory/entries/{code}").body())
    )


def test_rtsp_camera_plays_at_the_served_resolution(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_=f"#/dir/{RTSP_CAMERA}")
    page.get_by_test_id("detail-watch").click()
    tile = page.get_by_test_id("tile-0")
    expect(tile).to_have_attribute("data-state", "playing", timeout=PLAY_TIMEOUT_MS)
    expect(page.get_by_test_id("tile-0-name")).to_have_text("龙坞路口网络摄像机")
    wait_frames_above(page, "0", 0)
    first = frames(page, "0")
    wait_frames_above(page, "0", first + 25)
    assert tile.get_attribute("data-width") == "352"
    assert tile.get_attribute("data-height") == "288"
    expect(page.get_by_test_id("tile-0-stats")).to_contain_text("352×288")
    watched = entry(page, node, RTSP_CAMERA)
    assert watched["status"] == "online" and watched["last_seen"], watched
    assert page.errors == []


def test_camera_pulled_always_is_online_without_a_viewer(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR)
    # Imported as offline; the node pulls it from its start, so the directory soon says online.
    for _ in range(150):  # a readiness bound (30 s), not a performance assertion
        e = entry(page, node, ALWAYS_CAMERA)
        if e["status"] == "online":
            break
        page.wait_for_timeout(200)
    assert e["status"] == "online" and e["last_seen"], e
