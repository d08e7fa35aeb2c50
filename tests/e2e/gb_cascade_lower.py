"""Cascade down (issue 5, acceptance "Cascade"): a simulated lower platform registers to vmesh and
one of its channels plays in Chromium.

The test runs on test_gb_live's node and browser (``vmesh node run`` with ``[gb28181]`` and live
video): tests/e2e/test_gb_live.py imports it, so no node of its own is started (this module is
not collected by itself).
``GbLowerSim`` (tests/peers/gb_lower_sim.py) registers with digest as a type 200 platform and
answers the catalogue as a tree — a business group, two nested virtual organisations, channels
under each, GB2312 names, 1 to 8 items a page. The test checks what an operator sees: the groups
and channels in the directory where the platform put them, and a channel of the platform playing
in a tile (frames decoded), the INVITE at the platform naming that channel, BYE after the tile
closes.
"""

from __future__ import annotations

import shutil
import time
import urllib.error
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e.console_node import Node, log_in
from e2e.test_live_wall import PLAY_TIMEOUT_MS, wait_frames_above
from media_site import VILLAGE, XIHU_OPERATOR, api, login_cookie
from peers.gb_device_sim import SimThread, h264_clip
from peers.gb_lower_sim import GbLowerSim

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]

PASSWORD = "Gb-device-2024"  # test_gb_live's [gb28181] password
PLATFORM = "33010601002000000009"  # the lower platform's ID (type 200) under 龙坞村
GROUP = "33010601002150000001"  # 215 business group
ORG_A = "33010601002160000001"  # 216 under the group
ORG_B = "33010601002160000002"  # 216 under ORG_A
CHANNEL = "33010601001310000003"  # a channel of ORG_B: the one played
# An upper platform nobody answers for (test_gb_live's node): its link shows on the network page.
UPPER = "33000000002008000001"
UNREACHABLE_UPPER_TOML = f'\n[[gb28181.upper]]\nid = "{UPPER}"\naddress = "127.0.0.1:9"\n'
WAIT_S = 45.0  # readiness bound for device-side states, not a performance assertion


def until(check: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def lower(
    node: Node,  # test_gb_live's fixtures
    sip_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GbLowerSim]:
    clip = h264_clip(tmp_path_factory.mktemp("clip") / "c.h264", gop=50)
    runner = SimThread()
    sim = GbLowerSim(
        PLATFORM,
        PASSWORD,
        "33000000002006000001",
        ("127.0.0.1", sip_port),
        name="某厂商下级平台",
        clip=clip,
        groups=[
            (GROUP, "治安业务分组", PLATFORM),
            (ORG_A, "龙坞片区", GROUP),
            (ORG_B, "南门路口", ORG_A),
        ],
        tree=[
            ("33010601001310000001", "片区球机一", ORG_A),
            ("33010601001310000002", "片区枪机二", ORG_A),
            (CHANNEL, "南门通道三", ORG_B),
            *[(f"330106010013100001{n:02d}", f"南门通道{n:02d}", ORG_B) for n in range(10, 30)],
            ("33010601001310000099", "平台直属通道", PLATFORM),
        ],
    )
    runner.run(sim.start())
    try:
        assert runner.run(sim.register()) == 200
        yield sim
    finally:
        runner.run(sim.close())
        runner.stop()


def entry(n: Node, cookie: str, code: str) -> dict[str, object]:
    try:
        return api(n, cookie, "GET", f"/directory/entries/{code}")  # type: ignore[no-any-return]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {}
        raise


def parent_of(e: dict[str, object]) -> str | None:
    path = e.get("path") or []
    assert isinstance(path, list)
    return str(path[-2]["code"]) if len(path) >= 2 else None


def test_lower_platform_tree_and_channel_plays(pages, node: Node, lower: GbLowerSim) -> None:  # type: ignore[no-untyped-def]
    cookie = login_cookie(node, *XIHU_OPERATOR)
    until(lambda: bool(entry(node, cookie, CHANNEL)), "the platform's channels in the directory")
    until(lambda: bool(entry(node, cookie, "33010601001310000129")), "the catalogue's last page")
    assert len(lower.page_sizes) > 1 and set(lower.page_sizes) <= set(range(1, 9))
    # The structure kept: platform under 龙坞村, group beside it, the orgs nested, channels under
    # their org (and the platform's own channel under the platform).
    assert parent_of(entry(node, cookie, PLATFORM)) == VILLAGE
    assert entry(node, cookie, PLATFORM)["kind"] == "platform"
    group = entry(node, cookie, GROUP)
    assert group["kind"] == "department" and group["name"] == "治安业务分组"
    assert parent_of(group) == VILLAGE
    assert parent_of(entry(node, cookie, ORG_A)) == GROUP
    assert parent_of(entry(node, cookie, ORG_B)) == ORG_A
    ch = entry(node, cookie, CHANNEL)
    assert ch["name"] == "南门通道三" and parent_of(ch) == ORG_B
    assert parent_of(entry(node, cookie, "33010601001310000099")) == PLATFORM

    # Played in Chromium like an IPC channel: the INVITE goes to the platform for this channel.
    page: Page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_=f"#/dir/{CHANNEL}")
    page.get_by_test_id("detail-watch").click()
    expect(page.get_by_test_id("tile-0")).to_have_attribute(
        "data-state", "playing", timeout=PLAY_TIMEOUT_MS
    )
    wait_frames_above(page, "0", 10)
    assert lower.invited == [CHANNEL]
    page.get_by_test_id("tile-0-stop").click()
    until(lambda: len(lower.byes) == 1, "BYE at the lower platform")
    from e2e.test_gb_live import ssrcs_in_use  # the module that runs this test

    until(lambda: ssrcs_in_use(node) == 0, "no SSRC allocated")
    assert page.errors == []


def test_network_page_shows_the_upper_link(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    """The node's upper link (nothing answers at 127.0.0.1:9) is a line of the network page with
    its state, in the console's language."""
    page: Page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_="#/network")
    line = page.get_by_test_id(f"network-gb-upper-{UPPER}")
    expect(line).to_contain_text(UPPER)
    expect(line).to_contain_text("127.0.0.1:9")
    assert line.get_attribute("data-state") in ("registering", "failed")
    assert page.errors == []
