"""Cascade up, sans IO: the switch's H.264 RTP remuxed into PS over RTP for an upper platform.

``upper._SwitchIn`` takes RTP packets as the switch sends them (RFC 6184, FU-A for big NAL units,
marker on a frame's last packet), and hands one PS frame per access unit to the cascade; the PS
goes through our RTP reassembler and PS demuxer back to the same access units, key frames marked.
``declared_charset`` reads the charset of an upper's query from its XML declaration.
"""

from __future__ import annotations

from typing import Any

import pytest

from vmesh.gb28181.ps import PsCodec, RtpPsPacketizer, RtpPsReceiver, packetize_h264
from vmesh.gb28181.upper import UpperSession, _SwitchIn, declared_charset
from vmesh.switch.rtp import RtpPacket, parse_rtp

pytestmark = pytest.mark.unit

SPS = b"\x67\x42\xc0\x1e" + bytes(range(20))
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65" + bytes(i % 251 for i in range(5000))  # FU-A across several packets
P = b"\x41" + bytes(i % 13 for i in range(300))


def annexb(*nals: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


class _Capture:
    """What ``Cascade.send_ps`` would send: the PS RTP packets, through the real packetizer."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def send_ps(self, s: Any, rtp: RtpPsPacketizer, frame: bytes, ts: int) -> None:
        self.packets += [p.serialize() for p in rtp.packetize(frame, ts)]


def switch_rtp(frames: list[tuple[int, bytes]]) -> list[bytes]:
    out, seq = [], 0
    for ts, au in frames:
        nals = [n for n in au.split(b"\x00\x00\x00\x01") if n]
        payloads = [p for n in nals for p in packetize_h264(b"\x00\x00\x00\x01" + n)]
        for i, p in enumerate(payloads):
            out.append(RtpPacket(102, seq, ts, 1234, i == len(payloads) - 1, payload=p).serialize())
            seq += 1
    return out


def test_switch_rtp_becomes_ps_that_demuxes_to_the_same_access_units() -> None:
    key, delta = annexb(SPS, PPS, IDR), annexb(P)
    cap = _Capture()
    session = UpperSession(None, "c", "x", "0100000001", ("127.0.0.1", 9), "udp", -1)  # type: ignore[arg-type]
    proto = _SwitchIn(cap, session, PsCodec.h264)  # type: ignore[arg-type]
    for d in switch_rtp([(3600, key), (7200, delta), (10800, delta)]):
        proto.datagram_received(d, ("127.0.0.1", 1))
    assert cap.packets, "no PS sent"
    rx = RtpPsReceiver(100000001)
    aus = [au for d in cap.packets for au in rx.receive(parse_rtp(d))]
    assert [(au.codec, au.pts, au.is_keyframe) for au in aus] == [
        (PsCodec.h264, 3600, True),
        (PsCodec.h264, 7200, False),
        (PsCodec.h264, 10800, False),
    ]
    assert aus[0].data.replace(b"\x00\x00\x00\x01", b"") == key.replace(b"\x00\x00\x00\x01", b"")
    assert aus[1].data.replace(b"\x00\x00\x00\x01", b"") == P
    assert all(
        parse_rtp(d).ssrc == 100000001 and parse_rtp(d).payload_type == 96 for d in cap.packets
    )


@pytest.mark.parametrize(
    ("body", "charset"),
    [
        (b'<?xml version="1.0" encoding="GB2312"?><Query/>', "GB2312"),
        (b"<?xml version='1.0' encoding='utf-8'?><Query/>", "UTF-8"),
        (b"<Query/>", "GB2312"),
        (b'<?xml version="1.0" encoding="EBCDIC"?><Query/>', "GB2312"),
    ],
)
def test_declared_charset(body: bytes, charset: str) -> None:
    assert declared_charset(body) == charset
