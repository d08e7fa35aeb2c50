"""A GB/T 28181 camera in Chromium, end to end (issue 5, acceptance 1), against a real node.

The node runs ``vmesh node run`` with ``[gb28181]`` and live video on; the simulated IPC
(tests/peers/gb_device_sim.py, in a thread of its own) registers with digest and answers the
catalogue. The test reads what a user sees and what the device receives: the channel in the
directory tree, the tile playing with frames decoded, PTZ pad presses arriving at the device as
PTZCmd (a move, then stop on release), and after the tile is closed and the linger passes, BYE at
the device and ``vmesh_gb28181_ssrcs_in_use 0`` on ``/metrics``.
"""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e.console_node import Node, free_port
from e2e.gb_cascade_lower import UNREACHABLE_UPPER_TOML
from e2e.test_live_wall import (  # noqa: F401 - browser: Chromium with autoplay, module scope
    PLAY_TIMEOUT_MS,
    browser,
    log_in,
    wait_frames_above,
)
from media_site import VILLAGE, XIHU, XIHU_OPERATOR, free_udp_block, media_node
from peers.gb_device_sim import GbDeviceSim, SimThread, h264_clip
from vmesh.gb28181.manscdp import PtzCommand

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]

IPC = "33010601001320000077"  # an IPC of 龙坞村 (西湖区, the operator's scope)
PASSWORD = "Gb-device-2024"
# Readiness bound for the device side (how long to wait for a state), not a performance assertion.
WAIT_S = 45.0
LAST_PTZ: list[str] = []


def until(check: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what} (device PTZ: {LAST_PTZ})")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def sip_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, sip_port: int) -> Iterator[Node]:
    media = free_udp_block(200)
    extra = (
        "\n[gb28181]\n"
        "enabled = true\n"
        'sip_host = "127.0.0.1"\n'
        f"sip_port = {sip_port}\n"
        f'password = "{PASSWORD}"\n'
        f'parent_code = "{VILLAGE}"\n'
        f"media_port_range = [{media}, {media + 199}]\n" + UNREACHABLE_UPPER_TOML
    )
    n = media_node(tmp_path_factory.mktemp("gb-live"), channels=2, linger=0.5, extra_toml=extra)
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def ipc(
    node: Node, sip_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GbDeviceSim]:
    clip = h264_clip(tmp_path_factory.mktemp("clip") / "c.h264", gop=50)
    runner = SimThread()
    sim = GbDeviceSim(
        IPC,
        PASSWORD,
        "33000000002006000001",
        ("127.0.0.1", sip_port),
        channels=[(IPC, "龙坞国标球机")],
        name="龙坞国标球机",
        clip=clip,
    )
    runner.run(sim.start())
    try:
        assert runner.run(sim.register()) == 200
        yield sim
    finally:
        runner.run(sim.close())
        runner.stop()


def ssrcs_in_use(node: Node) -> float:
    with urllib.request.urlopen(f"{node.base_url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("vmesh_gb28181_ssrcs_in_use "):
                return float(line.split()[1])
    raise AssertionError("vmesh_gb28181_ssrcs_in_use is not on /metrics")


def ptz_names(sim: GbDeviceSim) -> list[str]:
    names = {PtzCommand.LEFT: "left", PtzCommand.UP: "up", PtzCommand.ZOOM_IN: "zoom_in"}
    out = []
    for _, cmd in list(sim.ptz):
        out.append("stop" if cmd.is_stop else names.get(cmd.code, hex(cmd.code)))
    LAST_PTZ[:] = out
    return out


def test_gb_camera_registers_plays_steers_and_byes(pages, node: Node, ipc: GbDeviceSim) -> None:  # type: ignore[no-untyped-def]
    page: Page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_="#/dir")
    # The channel in the tree, under 龙坞村 (expanded from the operator's root).
    for code in (XIHU, "33010601002166000001", VILLAGE):
        page.get_by_test_id(f"tree-toggle-{code}").click()
    expect(page.get_by_test_id(f"tree-label-{IPC}")).to_contain_text("龙坞国标球机")

    # Watch it: the tile plays and the browser decodes frames.
    page.goto(f"{node.base_url}/#/dir/{IPC}")
    page.get_by_test_id("detail-watch").click()
    tile = page.get_by_test_id("tile-0")
    expect(tile).to_have_attribute("data-state", "playing", timeout=PLAY_TIMEOUT_MS)
    wait_frames_above(page, "0", 10)
    assert ssrcs_in_use(node) == 1
    assert len(ipc.invites) == 1 and ipc.invites[0].session_name == "Play"

    # The PTZ pad: press-and-release moves, then stops; zoom too.
    pad = page.get_by_test_id("tile-0-ptz")
    expect(pad).to_be_visible()
    page.get_by_test_id("tile-0-ptz-left").click()
    until(lambda: ptz_names(ipc) == ["left", "stop"], "left then stop at the device")
    page.get_by_test_id("tile-0-ptz-zoom_in").click()
    until(lambda: ptz_names(ipc)[2:] == ["zoom_in", "stop"], "zoom in then stop at the device")
    assert all(ch == IPC for ch, _ in ipc.ptz)

    # The viewer leaves: after the linger the node hangs up and the SSRC is free again.
    page.get_by_test_id("tile-0-stop").click()
    until(lambda: len(ipc.byes) == 1, "BYE at the device")
    until(lambda: ssrcs_in_use(node) == 0, "no SSRC allocated")
    assert page.errors == []


def test_fixed_camera_has_no_ptz_pad(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    page: Page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_="#/wall/" + "33010601001326000001")
    expect(page.get_by_test_id("tile-0")).to_have_attribute(
        "data-state", "playing", timeout=PLAY_TIMEOUT_MS
    )
    expect(page.get_by_test_id("tile-0-ptz")).to_be_hidden()


# Cascade (issue 5): a lower platform's channel, and an upper link's line, on this node and browser.
from e2e.gb_cascade_lower import (  # noqa: E402, F401
    lower,
    test_lower_platform_tree_and_channel_plays,
    test_network_page_shows_the_upper_link,
)
