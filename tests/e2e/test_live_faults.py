"""Faulty cameras in Chromium: each tile says what is happening, the other tiles keep playing.

One node and one page for the module. Tile 0 plays a synthetic camera throughout; the other tiles
get an RTSP camera that is unreachable (nothing listens), one with the wrong password (GStreamer's
RTSP server with Basic authentication answers 401), one in MJPEG (a codec the switch does not
carry) and one whose server is frozen mid-stream (SIGSTOP: the connection stays open, no media
flows) and then thawed. Each tile must show its state with the reason in its visible label, never
a black or frozen picture without one, while tile 0's ``framesDecoded`` keeps growing.
"""

from __future__ import annotations

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
from media_site import UNREACHABLE_RTSP_CAMERA, XIHU_OPERATOR, RtspPeer, camera_code, media_node
from peers.rtsp import requires_gst_rtsp

pytestmark = [
    pytest.mark.e2e,
    requires_gst_rtsp,
]

SYNTHETIC = camera_code(2)
WRONG_PASSWORD = camera_code(40)
MJPEG = camera_code(41)
FREEZING = camera_code(42)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RtspPeer]]:
    base: Path = tmp_path_factory.mktemp("rtsp-faults")
    made = {
        "auth": RtspPeer(base / "auth.log", user="admin", password="Right-pass-1"),
        "mjpeg": RtspPeer(base / "mjpeg.log", video="mjpeg"),
        "freeze": RtspPeer(base / "freeze.log"),
    }
    try:
        for srv in made.values():
            srv.start()
        yield made
    finally:
        for srv in made.values():
            srv.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, servers: dict[str, RtspPeer]) -> Iterator[Node]:
    extra = {
        WRONG_PASSWORD: {
            "name": "龙坞密码错误摄像机",
            "attrs": {
                "rtsp_url": servers["auth"].url,
                "username": "admin",
                "password": "Wrong-pass-9",
            },
        },
        MJPEG: {"name": "龙坞MJPEG摄像机", "attrs": {"rtsp_url": servers["mjpeg"].url}},
        FREEZING: {"name": "龙坞冻结摄像机", "attrs": {"rtsp_url": servers["freeze"].url}},
    }
    n = media_node(
        tmp_path_factory.mktemp("live-faults"),
        channels=6,
        linger=2.0,
        extra_cameras=extra,
    )
    try:
        yield n
    finally:
        n.stop()


def assign(page: Page, code: str, tile: int) -> None:
    page.get_by_test_id(f"camera-{code}").click()
    page.get_by_test_id(f"tile-{tile}").click(position={"x": 40, "y": 40})
    expect(page.get_by_test_id(f"tile-{tile}")).to_have_attribute("data-code", code)


def keeps_playing(page: Page, tile: str = "0") -> None:
    """Tile ``tile`` decodes new frames (its camera is unaffected by the others' faults)."""
    wait_frames_above(page, tile, frames(page, tile) + 10)
    expect(page.get_by_test_id(f"tile-{tile}")).to_have_attribute("data-state", "playing")


def test_each_fault_shows_its_state_while_another_tile_keeps_playing(
    pages, node: Node, servers
) -> None:  # type: ignore[no-untyped-def]
    page = pages()
    # The readiness bound of the tiles (the login page under a busy machine took over 15 s once).
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_="#/wall", timeout_ms=PLAY_TIMEOUT_MS)
    page.get_by_test_id("layout-9").click()
    assign(page, SYNTHETIC, 0)
    expect(page.get_by_test_id("tile-0")).to_have_attribute(
        "data-state", "playing", timeout=PLAY_TIMEOUT_MS
    )
    wait_frames_above(page, "0", 0)

    # Nothing listens at the camera's address.
    assign(page, UNREACHABLE_RTSP_CAMERA, 1)
    expect(page.get_by_test_id("tile-1")).to_have_attribute(
        "data-state", "error", timeout=PLAY_TIMEOUT_MS
    )
    label = page.get_by_test_id("tile-1-state")
    expect(label).to_contain_text("错误: unreachable")
    expect(label).to_contain_text("Connection refused")
    assert "Secret-123" not in (label.text_content() or "")  # the camera's password stays hidden
    keeps_playing(page)

    # The server refuses the password.
    assign(page, WRONG_PASSWORD, 2)
    expect(page.get_by_test_id("tile-2")).to_have_attribute(
        "data-state", "error", timeout=PLAY_TIMEOUT_MS
    )
    expect(page.get_by_test_id("tile-2-state")).to_contain_text("wrong credentials: 401")
    assert "Wrong-pass-9" not in (page.get_by_test_id("tile-2-state").text_content() or "")
    keeps_playing(page)

    # The camera sends MJPEG.
    assign(page, MJPEG, 3)
    expect(page.get_by_test_id("tile-3")).to_have_attribute(
        "data-state", "error", timeout=PLAY_TIMEOUT_MS
    )
    expect(page.get_by_test_id("tile-3-state")).to_contain_text("unsupported codec")
    expect(page.get_by_test_id("tile-3-state")).to_contain_text("mjpeg")
    keeps_playing(page)

    # A camera that plays, then freezes mid-stream: the tile says so instead of a still picture.
    assign(page, FREEZING, 4)
    tile4 = page.get_by_test_id("tile-4")
    expect(tile4).to_have_attribute("data-state", "playing", timeout=PLAY_TIMEOUT_MS)
    wait_frames_above(page, "4", 0)
    servers["freeze"].pause()
    try:
        expect(tile4).to_have_attribute("data-state", "no_signal", timeout=PLAY_TIMEOUT_MS)
        expect(page.get_by_test_id("tile-4-state")).to_contain_text("无信号: no packets for")
        keeps_playing(page)
    finally:
        servers["freeze"].resume()
    # Thawed, the camera is picked up again by itself and the same tile plays on.
    expect(tile4).to_have_attribute("data-state", "playing", timeout=60_000)
    wait_frames_above(page, "4", frames(page, "4") + 10)
    keeps_playing(page)
    # The faulty tiles still say why (nothing turned into an unexplained picture meanwhile).
    expect(page.get_by_test_id("tile-1")).to_have_attribute("data-state", "error")
    expect(page.get_by_test_id("tile-2")).to_have_attribute("data-state", "error")
    expect(page.get_by_test_id("tile-3")).to_have_attribute("data-state", "error")
    assert page.errors == []
