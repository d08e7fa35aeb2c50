"""A fabric ``LinkIn`` relayed by the switch's C data plane (``_dataplane.c``, "fabric link
relays") against the same link read by the event loop in Python, over real loopback sockets.

The same packets from the upstream — in order, a gap of three, the retransmission of one of them
(twice: the second is a duplicate), a duplicate of a packet in order, RTCP, and the same sequence
numbers from an address that is not the link's peer — must give the same NACKs at the upstream,
the same link counters and the same packets at the switch input, and with the data plane most of
them must have been relayed in C."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from vmesh.fabric.links import LOOPBACK, LinkIn
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, KeyframeRequest, Switch
from vmesh.switch.rtcp import RtcpNack, RtcpReceiverReport, parse_compound, serialize_compound
from vmesh.switch.rtp import RtpPacket
from vmesh.switch.transport import SwitchTransport

pytestmark = pytest.mark.integration

SSRC = 0x5EED


def _sock() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOPBACK, 0))
    s.setblocking(False)
    return s


def _rtp(seq: int) -> bytes:
    # H.264 single NAL units (type 1), a frame per packet
    return RtpPacket(96, seq, seq * 3600, SSRC, True, payload=b"\x41" + bytes(100)).serialize()


async def _run(dataplane: bool) -> dict[str, Any]:
    t = SwitchTransport(Switch(), dataplane=dataplane)
    await t.start()
    up, intruder = _sock(), _sock()
    link = await LinkIn.open(LOOPBACK)
    try:
        spec = InputSpec(
            "fabric/cam",
            Codec.h264,
            keyframe_request=KeyframeRequest.pli,
            rtcp_dest=(LOOPBACK, link.lo.port),
        )
        port = await t.add_input(spec, port=0)
        link.switch_rtp = (LOOPBACK, port)
        link.attach(t)
        link.peer = up.getsockname()
        to = (LOOPBACK, link.wan.port)

        async def send(s: socket.socket, data: bytes) -> None:
            s.sendto(data, to)
            await asyncio.sleep(0.002)  # one at a time, in this order

        for seq in range(100, 150):
            await send(up, _rtp(seq))
        for seq in range(153, 161):  # 150-152 lost
            await send(up, _rtp(seq))
        await send(up, _rtp(151))  # a retransmission
        await send(up, _rtp(151))  # ... and again: a duplicate
        await send(up, _rtp(158))  # a duplicate of a packet in order
        await send(up, serialize_compound([RtcpReceiverReport(1)]))  # RTCP: not forwarded
        for seq in range(161, 170):
            await send(intruder, _rtp(seq))  # not the peer: dropped
        for seq in range(161, 180):
            await send(up, _rtp(seq))
        await asyncio.sleep(0.3)
        nacks: list[int] = []
        while True:
            try:
                data = up.recv(2048)
            except BlockingIOError:
                break
            for p in parse_compound(data):
                if isinstance(p, RtcpNack):
                    nacks.extend(p.lost)
        stats = link.stats()
        inp = t.switch.snapshot().inputs["fabric/cam"]
        return {
            "nacks": sorted(set(nacks)),
            "link": {k: stats[k] for k in ("packets", "bytes", "nack_recovered", "duplicates")},
            "switch_input_packets": inp.packets,
            "relayed": t.dataplane_relayed(),
            "last_rtp_at": link.last_rtp_at is not None,
        }
    finally:
        link.close()
        await t.close()
        up.close()
        intruder.close()


async def test_the_c_relay_does_what_the_python_link_does() -> None:
    ref = await _run(dataplane=False)
    fast = await _run(dataplane=True)
    assert ref["relayed"] is None
    assert ref["nacks"] == [150, 151, 152]
    # 50 + 8 in order, the retransmission, 19 after: the duplicates, RTCP and the intruder's
    # packets never reach the switch input.
    assert ref["switch_input_packets"] == 50 + 8 + 1 + 19
    assert ref["link"]["duplicates"] == 2 and ref["link"]["nack_recovered"] == 1
    assert {k: v for k, v in fast.items() if k != "relayed"} == {
        k: v for k, v in ref.items() if k != "relayed"
    }
    assert fast["relayed"] >= 70  # the in-order packets, relayed in C
