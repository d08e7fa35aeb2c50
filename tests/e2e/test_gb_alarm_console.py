"""GB/T 28181 alarms through a real node and the console: ``vmesh node run`` with ``[gb28181]``,
live video, ``[recording]`` and ``[command] alarm_priorities = [1]`` — the listeners wired by the
node process itself. A simulated IPC (in a thread of its own) registers; its camera gets an alarm
recording plan through the API; a first-priority alarm from the device is recorded (the alarm
lists its MP4 segments, the play link serves an MP4) and opens an incident; in Chromium the
district operator's *Alarms* page shows the alarm with its recording and its command room, and
the room's log names the alarm.
"""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from e2e.console_node import Node, log_in
from e2e.test_gb_live import sip_port  # noqa: F401 - the fixture: a free SIP port
from media_site import ADMIN, VILLAGE, XIHU_OPERATOR, api, free_udp_block, login_cookie, media_node
from peers.gb_device_sim import GbDeviceSim, SimThread, h264_clip
from vmesh.gb28181.manscdp import AlarmNotify

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]

IPC = "33010601001320000078"  # an IPC of 龙坞村 (西湖区, the operator's scope)
PASSWORD = "Gb-alarm-2024"
# Readiness bound (how long to wait for a state), not a performance assertion.
WAIT_S = 90.0


def until(check: Callable[[], Any], what: str) -> Any:
    end = time.monotonic() + WAIT_S
    while not (got := check()):
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.2)
    return got


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, sip_port: int) -> Iterator[Node]:  # noqa: F811
    media = free_udp_block(200)
    extra = (
        f'\n[gb28181]\nenabled = true\nsip_host = "127.0.0.1"\nsip_port = {sip_port}\n'
        f'password = "{PASSWORD}"\nparent_code = "{VILLAGE}"\n'
        f"media_port_range = [{media}, {media + 199}]\n"
        "\n[recording]\nenabled = true\nsegment_seconds = 1\nstall_seconds = 10\n"
        "\n[command]\nalarm_priorities = [1]\n"
    )
    n = media_node(tmp_path_factory.mktemp("gb-alarm"), channels=1, linger=0.5, extra_toml=extra)
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def ipc(
    node: Node,
    sip_port: int,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    clip = h264_clip(tmp_path_factory.mktemp("clip") / "c.h264")
    runner = SimThread()
    sim = GbDeviceSim(
        IPC, PASSWORD, "33000000002006000001", ("127.0.0.1", sip_port),
        channels=[(IPC, "龙坞国标枪机")], name="龙坞国标枪机", clip=clip,
    )  # fmt: skip
    runner.run(sim.start())
    try:
        assert runner.run(sim.register()) == 200
        yield runner, sim
    finally:
        runner.run(sim.close())
        runner.stop()


def test_an_alarm_is_recorded_opens_a_room_and_shows_in_the_console(
    pages: Callable[[], Page], node: Node, ipc: Any
) -> None:
    runner, sim = ipc
    admin = login_cookie(node, *ADMIN)

    def camera_known() -> bool:
        return api(node, admin, "GET", f"/directory/entries/{IPC}") is not None

    until(lambda: _ok(camera_known), "the IPC's channel in the directory")
    plan = {"mode": "alarm", "post_alarm_seconds": 4}
    assert api(node, admin, "PUT", f"/recordings/{IPC}/plan", plan)["mode"] == "alarm"

    now = datetime.now().isoformat(timespec="seconds")
    alarm = AlarmNotify(IPC, 501, "1", "5", now, "周界入侵", 120.05, 30.2, "6")
    assert runner.run(sim.send_alarm(alarm)).status == 200

    def linked() -> dict[str, Any] | None:
        items = api(node, admin, "GET", f"/gb28181/alarms?channel={IPC}")["items"]
        a = items[0] if items else None
        return a if a and a["recording"] and a["recording"]["segments"] and a["incident"] else None

    a = until(linked, "the alarm's recorded segments and its incident")
    req = urllib.request.Request(node.base_url + a["recording"]["play"], headers={"Cookie": admin})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.headers["content-type"] == "video/mp4" and len(r.read()) > 1000

    page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, "#/alarms")
    row = page.get_by_test_id(f"alarm-{a['id']}")
    expect(row).to_contain_text("周界入侵")
    expect(row).to_contain_text("龙坞国标枪机")
    expect(page.get_by_test_id(f"alarm-recording-{a['id']}")).to_have_attribute(
        "href", a["recording"]["play"]
    )
    page.goto(f"{node.base_url}/#/recordings/{IPC}")
    expect(page.get_by_test_id("rec-alarm").first).to_be_attached()  # the timeline's alarm mark
    page.goto(f"{node.base_url}/#/alarms")
    page.get_by_test_id(f"alarm-incident-{a['id']}").click()
    expect(page.get_by_text("GB alarm: 龙坞国标枪机").first).to_be_visible()
    expect(page.get_by_text(f"alarm #{a['id']}").first).to_be_visible()


def _ok(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except urllib.error.HTTPError:
        return False
