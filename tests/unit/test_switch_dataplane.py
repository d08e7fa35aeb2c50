"""The C data plane's fast path (``switch/_dataplane.c``) against the reference, ``Switch.on_rtp``.

Two switches built alike get the same random sequence of packets (in order, reordered, duplicated,
lost, with a new SSRC, with CSRCs, H.264 aggregation packets, H.265, Opus), routes, splices and
ticks. One handles every packet in Python; the other gives each packet to the C fast path first and
to ``on_rtp`` only when the fast path declines it. After every step the copies sent (destination
and every byte) and every field of every input and output (counters, offsets, GOP cache) must be
equal, and the fast path must have handled most packets."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, OutputSpec, Switch, SwitchConfig
from vmesh.switch.rtp import RtpPacket

dataplane = pytest.importorskip("vmesh.switch._dataplane")
pytestmark = pytest.mark.unit

INPUTS = {"a": Codec.h264, "b": Codec.h264, "c": Codec.h265, "d": Codec.opus}
OUTPUTS = {
    "v1": Codec.h264,
    "v2": Codec.h264,
    "v3": Codec.h264,
    "h1": Codec.h265,
    "s1": Codec.opus,
    "s2": Codec.opus,
}


class Source:
    """An RTP source that makes frames of 3 packets (keyframe every 10 frames)."""

    def __init__(self, codec: Codec, rng: random.Random) -> None:
        self.codec = codec
        self.rng = rng
        self.seq = rng.getrandbits(16)
        self.ts = rng.getrandbits(32)
        self.ssrc = rng.getrandbits(32) | 1
        self.frame = 0
        self.part = 0

    def payload(self) -> bytes:
        key = self.frame % 10 == 0
        first, last = self.part == 0, self.part == 2
        body = bytes([self.frame & 0xFF, self.part]) * 30
        if self.codec is Codec.opus:
            return b"\xfc" + body
        if self.codec is Codec.h265:
            t = 19 if key else 1
            return bytes((49 << 1, 1, t | (0x80 if first else 0) | (0x40 if last else 0))) + body
        if key and first and self.rng.random() < 0.5:
            return b"\x18\x00\x02\x67\x42\x00\x02\x68\xce" + body  # STAP-A: SPS + PPS
        t = 5 if key else 1
        return bytes((0x7C, t | (0x80 if first else 0) | (0x40 if last else 0))) + body

    def next(self) -> bytes:
        audio = self.codec is Codec.opus
        extra: dict[str, Any] = {}
        if self.rng.random() < 0.03:
            extra["csrc"] = (7,)
        pkt = RtpPacket(
            111 if audio else 96,
            self.seq,
            self.ts,
            self.ssrc,
            audio or self.part == 2,
            payload=self.payload(),
            **extra,
        )
        self.seq = (self.seq + 1) & 0xFFFF
        if audio or self.part == 2:
            self.part = 0
            self.frame += 1
            self.ts = (self.ts + (960 if audio else 3600)) & 0xFFFFFFFF
        else:
            self.part += 1
        return pkt.serialize()


def build(cfg: SwitchConfig) -> Switch:
    sw = Switch(cfg, rng=random.Random(3))
    for name, codec in INPUTS.items():
        sw.add_input(InputSpec(name, codec))
    for i, (name, codec) in enumerate(OUTPUTS.items()):
        sw.add_output(
            OutputSpec(
                name,
                codec,
                ssrc=1000 + i,
                dest=("127.0.0.1", 20000 + i),
                payload_type=100 if name == "v2" else None,
                nack_history=64 if name == "v3" else 0,
            )
        )
    return sw


def state(sw: Switch) -> dict[str, Any]:
    """Every field of every input and output (objects by their ids)."""
    out: dict[str, Any] = {}
    for name, inp in sw._inputs.items():
        for f in type(inp).__slots__:
            v = getattr(inp, f)
            if f in ("spec",):
                continue
            if f in ("fanout", "waiting"):
                v = [o.spec.id for o in v]
            out[f"in.{name}.{f}"] = list(v) if f == "gop" else v
    for name, o in sw._outputs.items():
        for f in type(o).__slots__:
            v = getattr(o, f)
            if f in ("input", "pending"):
                v = v.spec.id if v is not None else None
            elif f == "spec":
                continue
            out[f"out.{name}.{f}"] = v
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("gop_cache", [True, False])
def test_fast_path_makes_exactly_what_on_rtp_makes(seed: int, gop_cache: bool) -> None:
    cfg = SwitchConfig(gop_cache=gop_cache, gop_max_packets=45 if seed % 2 else 4000)
    ref, fast = build(cfg), build(cfg)
    plane = dataplane.DataPlane(fast, 0, threading.Lock(), print, print, 0.05)
    for i in range(len(OUTPUTS)):
        plane.set_dest(("127.0.0.1", 20000 + i), "127.0.0.1", 20000 + i)
    rng = random.Random(seed)
    sources = {name: Source(codec, random.Random(seed * 10 + i)) for i, (name, codec) in
               enumerate(INPUTS.items())}  # fmt: skip
    held: dict[str, bytes] = {}
    now = 1_700_000_000.0
    fast_count = slow_count = 0
    for step in range(1500):
        now += rng.random() * 0.01
        r = rng.random()
        if r < 0.02:
            out = rng.choice(list(OUTPUTS))
            choices = [i for i, c in INPUTS.items() if c is OUTPUTS[out]]
            inp = rng.choice(choices)
            assert ref.route(out, inp, now) == fast.route(out, inp, now)
        elif r < 0.025:
            out = rng.choice(list(OUTPUTS))
            ref.unroute(out)
            fast.unroute(out)
        elif r < 0.03:
            assert ref.tick(now) == fast.tick(now)
        else:
            name = rng.choice(list(INPUTS))
            src = sources[name]
            roll = rng.random()
            if roll < 0.01:
                src.ssrc = rng.getrandbits(32) | 1  # the source restarts
            if roll < 0.02:
                src.seq = (src.seq + rng.randrange(1, 5000)) & 0xFFFF  # a loss or a jump
            data = src.next()
            if roll > 0.985 and name not in held:
                held[name] = data  # delivered later: reordered
                continue
            batch = [data]
            if name in held and rng.random() < 0.5:
                batch.append(held.pop(name))
            if roll > 0.98:
                batch.append(data)  # duplicated
            for d in batch:
                want = [(s.dest, s.data) for s in ref.on_rtp(name, d, now)]
                got = dataplane.forward_for_test(plane, name, d, now)
                if got is None:
                    slow_count += 1
                    got = [(s.dest, s.data) for s in fast.on_rtp(name, d, now)]
                else:
                    fast_count += 1
                assert got == want, f"step {step}"
        assert state(fast) == state(ref), f"step {step}"
    assert ref.snapshot() == fast.snapshot()
    assert fast_count > slow_count, (fast_count, slow_count)  # the fast path was exercised


def test_nothing_routed_and_unknown_destinations_are_declined_or_empty() -> None:
    sw = build(SwitchConfig())
    plane = dataplane.DataPlane(sw, 0, threading.Lock(), print, print, 0.05)
    src = Source(Codec.opus, random.Random(1))
    first = src.next()
    assert dataplane.forward_for_test(plane, "d", first, 1.0) is None  # first packet: Python
    sw.on_rtp("d", first, 1.0)
    assert dataplane.forward_for_test(plane, "d", src.next(), 1.1) == []  # no output routed
    sw.route("s1", "d", 1.2)
    # s1's destination was never given to the plane: declined, and nothing was changed.
    before = state(sw)
    assert dataplane.forward_for_test(plane, "d", src.next(), 1.3) is None
    assert state(sw) == before
    plane.set_dest(("127.0.0.1", 20004), "127.0.0.1", 20004)
    assert dataplane.forward_for_test(plane, "d", src.next(), 1.4) is None  # s1 not synced yet
    sw.on_rtp("d", src.next(), 1.4)  # ... which the reference does on its first packet
    [(dest, data)] = dataplane.forward_for_test(plane, "d", src.next(), 1.4)
    assert dest == ("127.0.0.1", 20004)
    assert int.from_bytes(data[8:12], "big") == 1004


def test_aggregation_packets_stay_on_the_fast_path_with_the_same_keyframe_answer() -> None:
    """A keyframe's first packet is often a STAP-A (H.264) or AP (H.265) carrying the parameter
    sets: the C path tests them itself (it used to hand them to Python, a slow packet per GOP),
    and finds a keyframe exactly where ``codecs.starts_keyframe`` does, malformed ones included."""
    cfg = SwitchConfig()
    ref, fast = build(cfg), build(cfg)
    plane = dataplane.DataPlane(fast, 0, threading.Lock(), print, print, 0.05)
    for sw in (ref, fast):
        sw.route("v1", "a", 1.0)
        sw.route("h1", "c", 1.0)
    plane.set_dest(("127.0.0.1", 20000), "127.0.0.1", 20000)
    plane.set_dest(("127.0.0.1", 20003), "127.0.0.1", 20003)
    seq = {"a": 100, "c": 500}
    ts = {"a": 0, "c": 0}
    h264_fu = (b"\x7c\x85", b"\x7c\x05", b"\x7c\x45")  # IDR start, middle, end
    h265_fu = (b"\x62\x01\x93", b"\x62\x01\x13", b"\x62\x01\x53")  # IDR_W_RADL (19)
    stap_a = b"\x18\x00\x02\x67\x42\x00\x02\x68\xce"  # SPS + PPS: a keyframe
    stap_a_bad = b"\x18\x00\x09\x67\x42"  # a size beyond the packet: not a keyframe
    stap_a_delta = b"\x18\x00\x02\x09\x10\x00\x02\x06\x05"  # AUD + SEI: not a keyframe
    ap = b"\x60\x01\x00\x03\x40\x01\x0c\x00\x03\x42\x01\x01"  # VPS + SPS: a keyframe
    ap_delta = b"\x60\x01\x00\x03\x46\x01\x50"  # AUD only

    def frame(name: str, first: bytes, now: float, python: bool = False) -> list[bool]:
        """One frame (``first``, then a whole FU fragmented NAL unit) to both switches; whether
        the fast path took each packet."""
        fu = h264_fu if name == "a" else h265_fu
        taken = []
        for i, head in enumerate((first, *fu)):
            marker = i == 3
            pkt = RtpPacket(96, seq[name], ts[name], 0xA0 if name == "a" else 0xC0, marker,
                            payload=head + bytes(40)).serialize()  # fmt: skip
            seq[name] = (seq[name] + 1) & 0xFFFF
            want = [(s.dest, s.data) for s in ref.on_rtp(name, pkt, now)]
            got = None if python else dataplane.forward_for_test(plane, name, pkt, now)
            taken.append(got is not None)
            if got is None:
                got = [(s.dest, s.data) for s in fast.on_rtp(name, pkt, now)]
            assert got == want
            assert state(fast) == state(ref)
        ts[name] = (ts[name] + 3600) & 0xFFFFFFFF
        return taken

    # The first frames go through Python (first packet, outputs syncing on the keyframe).
    frame("a", stap_a, 1.0, python=True)
    frame("c", ap, 1.0, python=True)
    frame("a", h264_fu[1], 1.04, python=True)  # a delta frame's worth of packets
    frame("c", h265_fu[1], 1.04, python=True)
    keys = (fast._inputs["a"].keyframes, fast._inputs["c"].keyframes)
    for k, (head_a, head_c) in enumerate(
        [(stap_a_bad, ap_delta), (stap_a_delta, ap_delta), (stap_a, ap), (stap_a, ap)]
    ):
        now = 1.1 + k * 0.04
        assert all(frame("a", head_a, now)), head_a  # every packet: C, same bytes, same state
        assert all(frame("c", head_c, now)), head_c
    assert (fast._inputs["a"].keyframes, fast._inputs["c"].keyframes) == (keys[0] + 4, keys[1] + 4)
    assert ref.snapshot() == fast.snapshot()


def test_an_output_that_answers_nacks_stays_on_the_fast_path_and_keeps_each_copy() -> None:
    """A fabric link's output keeps a NACK history: the C path stores every copy it sends there,
    byte for byte, where ``on_rtp`` would (it used to hand each such packet to Python)."""
    sw = build(SwitchConfig())
    plane = dataplane.DataPlane(sw, 0, threading.Lock(), print, print, 0.05)
    plane.set_dest(("127.0.0.1", 20002), "127.0.0.1", 20002)
    src = Source(Codec.h264, random.Random(5))
    sw.route("v3", "a", 1.0)
    for i in range(12):  # the first packets sync the output (Python)
        sw.on_rtp("a", src.next(), 1.0 + i / 100)
    out = sw._outputs["v3"]
    assert out.history is not None and out.synced
    fast = 0
    for i in range(40):
        pkt = src.next()
        got = dataplane.forward_for_test(plane, "a", pkt, 2.0 + i / 100)
        if got is None:  # a header with CSRCs (the source adds some): Python's
            [send] = sw.on_rtp("a", pkt, 2.0 + i / 100)
            got = [(send.dest, send.data)]
        else:
            fast += 1
        [(dest, data)] = got
        assert dest == ("127.0.0.1", 20002)
        seq = int.from_bytes(data[2:4], "big")
        assert out.history[seq & out.mask] == data
    assert fast >= 30, fast
