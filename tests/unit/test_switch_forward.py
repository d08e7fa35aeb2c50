"""``Switch.forward_rtp``, the transport's fast path: the copies a socket would send are the same
bytes ``on_rtp`` returns, a send error loses only that output's copy (counted), and packets that
are not plain 12-byte headers are forwarded and checked exactly as before."""

from __future__ import annotations

import random

import pytest

from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, OutputSpec, Send, Switch
from vmesh.switch.rtp import RtpPacket, parse_rtp

pytestmark = pytest.mark.unit


def stream(n_frames: int, per_frame: int = 3, **extra: object) -> list[bytes]:
    """H.264 FU-A frames, the first a keyframe (STAP-A with SPS/PPS, then IDR fragments)."""
    out = []
    seq = 500
    for f in range(n_frames):
        for i in range(per_frame):
            if f == 0 and i == 0:
                head = b"\x18\x00\x02\x67\x42\x00\x02\x68\xce"
            else:
                t = 5 if f == 0 else 1
                head = bytes(
                    (0x7C, t | (0x80 if i == 0 else 0) | (0x40 if i == per_frame - 1 else 0))
                )
            pkt = RtpPacket(
                96,
                seq,
                f * 3600,
                0xABC,
                i == per_frame - 1,
                payload=head + bytes([f, i]) * 50,
                **extra,
            )  # type: ignore[arg-type]
            out.append(pkt.serialize())
            seq += 1
    return out


def switch(n: int) -> Switch:
    sw = Switch(rng=random.Random(7))
    sw.add_input(InputSpec("cam", Codec.h264))
    for i in range(n):
        sw.add_output(OutputSpec(f"o{i}", Codec.h264, ssrc=100 + i, dest=("127.0.0.1", 9000 + i)))
        sw.route(f"o{i}", "cam", 0.0)
    return sw


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"csrc": (7, 8)},
        {"extension_profile": 0xBEDE, "extension": b"\x10\xff\x00\x00"},
        {"padding": 4},
    ],
)
def test_forward_rtp_sends_what_on_rtp_returns(extra: dict[str, object]) -> None:
    packets = stream(4, **extra)
    a, b = switch(3), switch(3)
    for k, p in enumerate(packets):
        expected = a.on_rtp("cam", p, k * 0.01)
        sent: list[Send] = []

        def send(buf: bytearray, dest: object, sent: list[Send] = sent) -> None:
            sent.append(Send(dest, bytes(buf)))

        rest = b.forward_rtp("cam", p, k * 0.01, send)
        # The first packet (the keyframe) starts the outputs: a GOP replay, returned as Sends;
        # every later copy goes through send().
        assert (len(sent), len(rest)) == ((0, 3) if k == 0 else (3, 0))
        assert sent + rest == expected
    got = [parse_rtp(d) for (d,) in [(s.data,) for s in sent]]
    assert {g.ssrc for g in got} == {100, 101, 102}
    assert b.snapshot().outputs["o1"].packets == len(packets)


def test_a_failing_send_loses_only_that_copy_and_is_counted() -> None:
    sw = switch(3)
    delivered: dict[object, int] = {}

    def send(buf: bytearray, dest: object) -> None:
        if dest == ("127.0.0.1", 9001):
            raise BlockingIOError("send buffer full")
        delivered[dest] = delivered.get(dest, 0) + 1

    packets = stream(2)
    for k, p in enumerate(packets):
        sw.forward_rtp("cam", p, k * 0.01, send)
    outs = sw.snapshot().outputs
    live = len(packets) - 1  # the first packet reaches the outputs as a replay (returned)
    assert delivered == {("127.0.0.1", 9000): live, ("127.0.0.1", 9002): live}
    assert (outs["o1"].send_errors, outs["o0"].send_errors) == (live, 0)
    assert outs["o1"].packets == outs["o0"].packets == len(packets)


def test_malformed_datagrams_are_counted_not_forwarded() -> None:
    sw = switch(1)
    sent: list[object] = []
    for bad in (b"\x80\x60\x00", b"\x40" + bytes(20), b"\x81\x60" + bytes(10)):
        assert sw.forward_rtp("cam", bad, 0.0, lambda buf, dest: sent.append(dest)) == []
    assert sent == []
    assert sw.snapshot().inputs["cam"].malformed == 3
