"""Browser-camera plumbing with a real Janus and the real switch, no browser: a VideoRoom
publisher is ``rtp_forward``ed into switch inputs, a channel shows it, the switch's keyframe
request reaches the publisher as a PLI through Janus, and stopping removes forwarders and inputs.

The publisher here is a VideoRoom *remote* (plain-RTP) publisher fed by the test's own UDP
sockets, so the test can see what reaches the publisher: Janus relays keyframe requests to the
address its RTCP port latched, exactly as it sends them to a browser publisher's encoder.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from edge_helpers import free_tcp_port, need_janus

from vmesh.config import MediaConfig
from vmesh.edge.janus import JanusPluginError
from vmesh.media.publish import ROOM_ID, BrowserSources, BrowserSpec
from vmesh.media.service import MediaService
from vmesh.switch.rtcp import RtcpPli, RtcpReceiverReport, parse_compound, serialize_compound

pytestmark = pytest.mark.integration

CODE = "33010601001380000001"  # a field terminal's code (type 138)
PUBLISHER = 777001
WAIT_S = 20.0


@pytest.fixture
async def media(tmp_path: Path) -> AsyncIterator[MediaService]:
    need_janus()
    http = free_tcp_port()
    admin = free_tcp_port()
    while admin == http:
        admin = free_tcp_port()
    cfg = MediaConfig(
        enabled=True,
        janus_http_port=http,
        janus_admin_port=admin,
        ice_port_range=(28000, 28499),
        streaming_port_range=(28500, 28599),
        channel_port_range=(28600, 28699),
        input_port_range=(28700, 28999),
        channels=2,
    )
    m = MediaService(cfg, tmp_path)
    await m.start()
    try:
        yield m
    finally:
        await m.stop()


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def _free_udp_pair() -> int:
    for base in range(29000, 29400, 2):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
                a.bind(("127.0.0.1", base))
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                    b.bind(("127.0.0.1", base + 1))
            return base
        except OSError:
            continue
    raise RuntimeError("no free UDP port pair in 29000-29400")


def _h264_delta(seq: int, ts: int) -> bytes:
    """An RTP packet with a (non-keyframe) H.264 slice NAL: a viewer cannot start on it."""
    return struct.pack("!BBHII", 0x80, 0x80 | 96, seq & 0xFFFF, ts, 1000) + b"\x41" + bytes(200)


async def _wait(pred: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:
            if pred():
                return
            await asyncio.sleep(0.05)


async def test_publisher_forwarded_into_switch_gets_pli_and_stop_cleans_up(
    media: MediaService,
) -> None:
    sources = BrowserSources.of(media)
    room = sources.room
    h = await room.handle()
    port = _free_udp_pair()
    added = await h.request(
        {
            "request": "add_remote_publisher",
            "room": ROOM_ID,
            "id": PUBLISHER,
            "secret": room.secret,
            "admin_key": room.admin_key,
            "display": "field terminal (test)",
            "iface": "127.0.0.1",
            "port": port,
            "rtcp_port": port + 1,
            "streams": [{"type": "video", "mindex": 0, "mid": "0", "codec": "h264"}],
        }
    )
    rtp, rtcp = _udp(), _udp()
    loop = asyncio.get_running_loop()
    # Latch our RTCP socket as the publisher's: Janus sends keyframe requests there.
    rtcp.sendto(serialize_compound([RtcpReceiverReport(1000)]), ("127.0.0.1", port + 1))

    async def send_media() -> None:
        seq, ts = 1, 90_000
        while True:
            for _ in range(3):
                rtp.sendto(_h264_delta(seq, ts), ("127.0.0.1", port))
                seq += 1
            ts += 3600
            await asyncio.sleep(0.04)

    sender = asyncio.create_task(send_media())
    try:
        fw = sources.reserve(CODE, PUBLISHER)
        try:
            await sources.start(fw, "0", None)
        except JanusPluginError as e:  # "No such feed" after every attempt: what Janus had
            people = await h.request(
                {"request": "listparticipants", "room": ROOM_ID, "secret": room.secret}
            )
            same = h is await room.handle()
            raise AssertionError(
                f"{e}; add_remote_publisher answered {added.data}; the room lists "
                f"{people.data.get('participants')}; same handle: {same}"
            ) from None
        assert fw.video_rtcp is not None
        listed = await room.forwarders()
        assert [f["stream_id"] for f in listed[PUBLISHER]] == fw.stream_ids

        # The forwarded packets arrive at the switch input: the source is playing.
        def arrived() -> bool:
            st = media.transport.switch.snapshot().inputs.get(fw.video_input)
            return st is not None and st.packets > 10

        await _wait(arrived)
        assert media.signal_of(CODE).state == "playing"

        # A viewer's channel shows it. No keyframe is cached, so the switch asks the source for
        # one; the request must reach the publisher through Janus as a PLI.
        ch = media.lend("viewer")
        await media.play(ch, CODE, BrowserSpec(CODE))
        assert media.transport.switch.snapshot().outputs[ch.video_output].pending_input == (
            fw.video_input
        )
        got_pli = False
        async with asyncio.timeout(WAIT_S):
            while not got_pli:
                data = await loop.sock_recv(rtcp, 2048)
                got_pli = any(isinstance(p, RtcpPli) for p in parse_compound(data))
        snap = media.transport.switch.snapshot().inputs[fw.video_input]
        assert snap.keyframe_requests_sent >= 1 and snap.keyframe_requests_unrelayable == 0

        # Unpublish: forwarders gone in Janus, the input gone from the switch, viewers told why.
        await sources.stop(fw)
        listed = await room.forwarders()
        assert listed.get(PUBLISHER, []) == []
        assert fw.video_input not in media.transport.switch.snapshot().inputs
        sig = media.signal_of(CODE)
        assert (sig.state, sig.reason) == ("no_signal", "the browser stopped publishing")
        media.give_back(ch)
        # The ports are free for the next publication.
        assert fw.base not in media._used_input_bases
    finally:
        sender.cancel()
        rtp.close()
        rtcp.close()
        await h.request(
            {
                "request": "remove_remote_publisher",
                "room": ROOM_ID,
                "id": PUBLISHER,
                "secret": room.secret,
            }
        )


async def test_not_publishing_endpoint_is_refused_with_reason(media: MediaService) -> None:
    sources = BrowserSources.of(media)
    ch = media.lend("viewer")
    with pytest.raises(Exception, match="is not publishing now"):
        await media.play(ch, CODE, BrowserSpec(CODE))
    media.give_back(ch)
    assert sources.signal_of(CODE) is None
