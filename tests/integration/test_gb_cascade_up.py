"""Cascade up (issue 5, acceptance "Cascade"): a vmesh node registers to a simulated upper platform,
which fetches its 10,000-channel catalogue and plays a channel.

The node is a real ``vmesh node run`` with live video (tests/media_site.py) whose directory holds
10,000 extra cameras imported through ``vmesh directory import`` (``vmesh.directory.transfer``);
``[[gb28181.upper]]`` points at ``GbUpperSim`` (tests/peers/gb_upper_sim.py), which challenges the
REGISTER with digest, queries Catalog and collects every page, INVITEs a synthetic camera and
decodes the PS over RTP it receives with PyAV.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.console_node import NODE_CODE, Node
from media_site import ADMIN, VILLAGE, api, camera_code, login_cookie, media_node
from peers.gb_device_sim import SimThread
from peers.gb_upper_sim import GbUpperSim, decoded_frames
from vmesh.gb28181.manscdp import CONTENT_TYPE, DeviceInfoQuery, DeviceStatusQuery

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]

UPPER = "33000000002008000001"
STRICT = "33000000002008000002"  # an upper that refuses our password
PASSWORD = "Upper-cascade-2024"
MANY = 10_000
PAGE = 20
WAIT_S = 60.0  # readiness bound for states, not a performance assertion


def many_code(n: int) -> str:
    return f"33010601001327{n:06d}"


@pytest.fixture(scope="module")
def runner() -> Iterator[SimThread]:
    r = SimThread()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def upper(runner: SimThread) -> Iterator[GbUpperSim]:
    sim = GbUpperSim(UPPER, PASSWORD, NODE_CODE)
    runner.run(sim.start())
    yield sim
    runner.run(sim.close())


@pytest.fixture(scope="module")
def strict(runner: SimThread) -> Iterator[GbUpperSim]:
    sim = GbUpperSim(STRICT, "another-password", NODE_CODE)
    runner.run(sim.start())
    yield sim
    runner.run(sim.close())


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, upper: GbUpperSim, strict: GbUpperSim
) -> Iterator[Node]:
    extra = {
        many_code(n): {"name": f"级联摄像机{n:05d}", "attrs": {"manufacturer": "Hik"}}
        for n in range(1, MANY + 1)
    }
    toml = (
        "\n[gb28181]\n"
        "enabled = true\n"
        'sip_host = "127.0.0.1"\n'
        "sip_port = 0\n"
        f'parent_code = "{VILLAGE}"\n'
        "\n[[gb28181.upper]]\n"
        f'id = "{UPPER}"\n'
        f'address = "127.0.0.1:{upper.local[1]}"\n'
        f'password = "{PASSWORD}"\n'
        "keepalive_interval_seconds = 1\n"
        f"catalog_page_size = {PAGE}\n"
        "\n[[gb28181.upper]]\n"
        f'id = "{STRICT}"\n'
        f'address = "127.0.0.1:{strict.local[1]}"\n'
        f'password = "{PASSWORD}"\n'
    )
    n = media_node(
        tmp_path_factory.mktemp("gb-cascade-up"), channels=1, extra_cameras=extra, extra_toml=toml
    )
    try:
        yield n
    finally:
        n.stop()


def until(check: Any, what: str) -> None:
    end = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.1)


def uppers(node: Node) -> list[dict[str, Any]]:
    cookie = login_cookie(node, *ADMIN)
    return api(node, cookie, "GET", "/gb28181/uppers")["uppers"]  # type: ignore[no-any-return]


def test_node_registers_and_keeps_alive(node: Node, upper: GbUpperSim, runner: SimThread) -> None:
    until(lambda: upper.registers >= 1, "REGISTER accepted by the upper")
    assert upper.refused == 0
    until(lambda: upper.keepalives >= 2, "keepalives at the upper")
    link = uppers(node)[0]
    assert link["id"] == UPPER and link["state"] == "registered"
    assert link["keepalives"] >= 1


def test_refused_keepalives_make_the_node_register_again(
    node: Node, upper: GbUpperSim, runner: SimThread
) -> None:
    until(lambda: upper.registers >= 1, "REGISTER accepted by the upper")
    before = upper.registers
    upper.refuse_keepalives = True  # the upper forgot us
    until(lambda: upper.registers > before, "REGISTER again after 3 refused keepalives")
    until(lambda: uppers(node)[0]["state"] == "registered", "the link registered again")


def test_upper_fetches_the_10k_catalogue(node: Node, upper: GbUpperSim, runner: SimThread) -> None:
    until(lambda: upper.registers >= 1, "REGISTER accepted by the upper")
    result = runner.run(upper.query_catalog(), timeout=300)
    assert result.complete, result.error
    items = {it.device_id: it for it in result.items}
    assert len(items) == result.sum_num
    assert {many_code(n) for n in range(1, MANY + 1)} <= items.keys()
    assert upper.pages == math.ceil(result.sum_num / PAGE)
    assert upper.page_charsets == {"GB18030"}  # GB bytes, as the query's GB2312 declaration asked
    # Org units first, with their parents; cameras under their org unit, names in GB2312.
    village = items[VILLAGE]
    assert village.name == "龙坞村" and village.parent_id == "33010601002166000001"
    cam = items[many_code(4321)]
    assert cam.name == "级联摄像机04321" and cam.parent_id == VILLAGE
    assert cam.manufacturer == "Hik" and cam.status == "ON"
    codes = [it.device_id for it in result.items]
    assert codes.index(VILLAGE) < codes.index(many_code(1))
    info = runner.run(upper.query(DeviceInfoQuery(NODE_CODE, upper.next_sn())))
    assert info.manufacturer == "vmesh" and info.result == "OK"
    status = runner.run(upper.query(DeviceStatusQuery(NODE_CODE, upper.next_sn())))
    assert status.online == "ONLINE"


@pytest.mark.parametrize("mode", ["udp", "tcp_passive", "tcp_active"])
def test_upper_plays_a_channel_as_ps(
    node: Node, upper: GbUpperSim, runner: SimThread, mode: str
) -> None:
    until(lambda: upper.registers >= 1, "REGISTER accepted by the upper")
    resp, play = runner.run(upper.invite(camera_code(1), mode))
    assert resp.status == 200, resp.reason
    assert play.answer is not None and play.answer.ssrc == "0100000001"
    assert play.answer.tcp == (mode != "udp")
    runner.run(upper.wait_frames(play, 40))
    assert decoded_frames(play.ps()) >= 10
    assert uppers(node)[0]["sessions"] == 1
    assert runner.run(upper.bye(play)) == 200
    until(lambda: uppers(node)[0]["sessions"] == 0, "the session ended after BYE")


def test_upper_invites_refused_with_reasons(
    node: Node, upper: GbUpperSim, runner: SimThread
) -> None:
    until(lambda: upper.registers >= 1, "REGISTER accepted by the upper")
    resp, _ = runner.run(upper.invite("33010601001327999999"))
    assert resp.status == 404  # no such channel
    resp, _ = runner.run(upper.invite(many_code(7)))
    assert resp.status == 488  # a camera without a source

    # A malformed offer: 400 naming the SDP.
    async def bad_sdp() -> int:
        assert upper.endpoint is not None and upper.lower is not None
        req = upper._request(
            "INVITE",
            camera_code(1),
            body=b"v=0\r\nm=video abc RTP/AVP 96\r\n",
            ctype="APPLICATION/SDP",
        )
        resp = await upper.endpoint.request(req, upper.lower)
        assert "SDP" in resp.reason
        return resp.status

    assert runner.run(bad_sdp()) == 400

    async def bad_manscdp() -> int:  # a query that is not XML: 400, nothing answered
        assert upper.endpoint is not None and upper.lower is not None
        req = upper._request("MESSAGE", NODE_CODE, body=b"<Query><CmdType>Cat", ctype=CONTENT_TYPE)
        resp = await upper.endpoint.request(req, upper.lower)
        return resp.status

    pages = upper.pages
    assert runner.run(bad_manscdp()) == 400
    assert upper.pages == pages
    assert uppers(node)[0]["sessions"] == 0


def test_refused_link_shows_failed_and_retries(node: Node, strict: GbUpperSim) -> None:
    """The second upper refuses our password: its link shows failed with the reason, and the
    node keeps trying (with back-off) while the first link stays registered."""
    until(lambda: strict.refused >= 2, "REGISTER retried after the refusal")
    links = {link["id"]: link for link in uppers(node)}
    assert links[STRICT]["state"] == "failed" and "403" in links[STRICT]["last_error"]
    assert links[UPPER]["state"] == "registered"
