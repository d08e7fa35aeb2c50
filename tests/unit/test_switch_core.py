"""The switch core, driven with hand-built H.264 and Opus streams and a simulated clock.

Each test looks at what a receiver of an output channel would see: which frames arrive, with
which SSRC, sequence numbers and timestamps, and which RTCP goes back to the sources.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Hashable

import pytest

from vmesh.errors import Conflict, InvalidInput, NotFound
from vmesh.switch.codecs import Codec
from vmesh.switch.core import (
    InputSpec,
    KeyframeRequest,
    OutputSpec,
    Replay,
    Send,
    Switch,
    SwitchConfig,
)
from vmesh.switch.rtcp import (
    ReportBlock,
    RtcpFir,
    RtcpNack,
    RtcpPli,
    RtcpReceiverReport,
    RtcpSdes,
    RtcpSenderReport,
    parse_compound,
    serialize_compound,
)
from vmesh.switch.rtp import RtpPacket, parse_rtp, seq_distance

pytestmark = pytest.mark.unit

FPS = 25
TICKS = 90000 // FPS


class Camera:
    """An H.264 source: each frame is ``per_frame`` FU-A packets; a keyframe starts with a STAP-A
    carrying SPS and PPS. Each payload ends with ``#name:frame:index`` to identify it."""

    def __init__(
        self, name: str, ssrc: int, seq: int = 1000, ts: int = 0, per_frame: int = 3
    ) -> None:
        self.name = name
        self.ssrc = ssrc
        self.seq = seq
        self.ts = ts
        self.per_frame = per_frame
        self.frame_no = 0

    def frame(self, key: bool = False) -> list[bytes]:
        out = []
        for i in range(self.per_frame):
            tag = f"{self.name}:{self.frame_no}:{i}".encode()
            if key and i == 0:
                head = b"\x18\x00\x02\x67\x42\x00\x02\x68\xce"
            elif i == 0:
                head = b"\x5c\x81" if not key else b"\x7c\x85"
            elif i == self.per_frame - 1:
                head = b"\x7c\x45" if key else b"\x5c\x41"
            else:
                head = b"\x7c\x05" if key else b"\x5c\x01"
            last = i == self.per_frame - 1
            pkt = RtpPacket(96, self.seq, self.ts, self.ssrc, last, payload=head + b"#" + tag)
            out.append(pkt.serialize())
            self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + TICKS) & 0xFFFFFFFF
        self.frame_no += 1
        return out


def tag(data: bytes) -> str:
    return parse_rtp(data).payload.split(b"#", 1)[1].decode()


def rtp_to(sends: list[Send], dest: Hashable) -> list[RtpPacket]:
    return [parse_rtp(s.data) for s in sends if s.dest == dest]


def make(config: SwitchConfig | None = None, kf: KeyframeRequest = KeyframeRequest.none) -> Switch:
    sw = Switch(config, rng=random.Random(7))
    rtcp = "cam-a-rtcp" if kf is not KeyframeRequest.none else None
    sw.add_input(InputSpec("a", Codec.h264, keyframe_request=kf, rtcp_dest=rtcp))
    sw.add_input(
        InputSpec("b", Codec.h264, keyframe_request=kf, rtcp_dest="cam-b-rtcp" if rtcp else None)
    )
    sw.add_output(OutputSpec("o1", Codec.h264, ssrc=0x1111, dest="o1", rtcp_dest="o1-rtcp"))
    return sw


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def frame(self) -> float:
        self.now += 1 / FPS
        return self.now


def feed(sw: Switch, input_id: str, packets: list[bytes], now: float) -> list[Send]:
    out: list[Send] = []
    for p in packets:
        out += sw.on_rtp(input_id, p, now)
    return out


def assert_continuous(packets: list[RtpPacket], ssrc: int) -> None:
    assert packets
    assert {p.ssrc for p in packets} == {ssrc}
    for prev, cur in itertools.pairwise(packets):
        assert seq_distance(cur.sequence_number, prev.sequence_number) == 1, (prev, cur)
        d = (cur.timestamp - prev.timestamp) & 0xFFFFFFFF
        assert d < 0x80000000, ("timestamp went back", prev, cur)


def test_new_output_gets_the_cached_gop_first_then_live() -> None:
    sw, clock, cam = make(), Clock(), Camera("a", 0xA)
    feed(sw, "a", cam.frame(key=True), clock.frame())
    for _ in range(4):
        feed(sw, "a", cam.frame(), clock.frame())
    snap = sw.snapshot().inputs["a"]
    assert (snap.gop_packets, snap.keyframes) == (15, 1)

    out = rtp_to(sw.route("o1", "a", clock.now), "o1")
    assert [tag(p.serialize()) for p in out] == [f"a:{f}:{i}" for f in range(5) for i in range(3)]
    live = rtp_to(feed(sw, "a", cam.frame(), clock.frame()), "o1")
    assert [tag(p.serialize()) for p in live] == ["a:5:0", "a:5:1", "a:5:2"]
    assert_continuous(out + live, 0x1111)
    # Replayed frames are stamped one tick apart; live frames keep the source's spacing.
    assert [p.timestamp - out[0].timestamp for p in out[::3]] == [0, 1, 2, 3, 4]
    assert (live[0].timestamp - out[-1].timestamp) & 0xFFFFFFFF == TICKS
    assert sw.snapshot().outputs["o1"].replayed == 15


def test_cache_restarts_at_each_keyframe_and_is_bounded() -> None:
    sw, clock, cam = make(SwitchConfig(gop_max_packets=20)), Clock(), Camera("a", 0xA)
    feed(sw, "a", cam.frame(key=True), clock.frame())
    feed(sw, "a", cam.frame(), clock.frame())
    feed(sw, "a", cam.frame(key=True), clock.frame())
    assert sw.snapshot().inputs["a"].gop_packets == 3
    out = rtp_to(sw.route("o1", "a", clock.now), "o1")
    assert [tag(p.serialize()) for p in out] == ["a:2:0", "a:2:1", "a:2:2"]
    sw.unroute("o1")

    for _ in range(6):  # 3 + 18 packets > 20: the cache is dropped
        feed(sw, "a", cam.frame(), clock.frame())
    snap = sw.snapshot().inputs["a"]
    assert (snap.gop_packets, snap.gop_overflows) == (0, 1)
    assert sw.route("o1", "a", clock.now) == []
    # No decodable start: delta frames are not sent, the next keyframe is.
    assert rtp_to(feed(sw, "a", cam.frame(), clock.frame()), "o1") == []
    got = rtp_to(feed(sw, "a", cam.frame(key=True), clock.frame()), "o1")
    assert [tag(p.serialize()) for p in got] == ["a:10:0", "a:10:1", "a:10:2"]


def test_keyframe_found_after_an_access_unit_delimiter_starts_the_gop_at_the_frame() -> None:
    sw, clock = make(), Clock()
    t = clock.frame()
    aud = RtpPacket(96, 10, 5000, 0xA, payload=b"\x09\x10#a:0:aud").serialize()
    idr = RtpPacket(96, 11, 5000, 0xA, True, payload=b"\x65\x88#a:0:idr").serialize()
    sw.on_rtp("a", RtpPacket(96, 9, 1400, 0xA, True, payload=b"\x41#a:p").serialize(), t)
    sw.on_rtp("a", aud, t)
    sw.on_rtp("a", idr, t)
    out = rtp_to(sw.route("o1", "a", t), "o1")
    assert [tag(p.serialize()) for p in out] == ["a:0:aud", "a:0:idr"]


def test_without_gop_cache_output_waits_for_a_keyframe_and_requests_one() -> None:
    sw = make(SwitchConfig(gop_cache=False), kf=KeyframeRequest.pli)
    clock, cam = Clock(), Camera("a", 0xA)
    feed(sw, "a", cam.frame(key=True), clock.frame())
    feed(sw, "a", cam.frame(), clock.frame())
    sends = sw.route("o1", "a", clock.now)
    assert rtp_to(sends, "o1") == []
    (req,) = [s for s in sends if s.dest == "cam-a-rtcp"]
    rr, pli = parse_compound(req.data)
    assert isinstance(rr, RtcpReceiverReport)
    assert isinstance(pli, RtcpPli) and pli.media_ssrc == 0xA
    assert rtp_to(feed(sw, "a", cam.frame(), clock.frame()), "o1") == []
    got = rtp_to(feed(sw, "a", cam.frame(key=True), clock.frame()), "o1")
    assert [tag(p.serialize()) for p in got] == ["a:3:0", "a:3:1", "a:3:2"]
    assert sw.snapshot().outputs["o1"].replayed == 1  # the keyframe's first packet, then live


def test_splice_keeps_one_ssrc_continuous_numbers_and_waits_for_the_frame_end() -> None:
    sw, clock = make(), Clock()
    a, b = Camera("a", 0xA, seq=65530, ts=0xFFFFFFFF - 5 * TICKS), Camera("b", 0xB, seq=7)
    t = clock.frame()
    feed(sw, "a", a.frame(key=True), t)
    feed(sw, "b", b.frame(key=True), t)
    seen = rtp_to(sw.route("o1", "a", t), "o1")
    for _ in range(3):
        t = clock.frame()
        seen += rtp_to(feed(sw, "a", a.frame(), t), "o1")
        feed(sw, "b", b.frame(), t)
    t = clock.frame()
    frame_a = a.frame()
    seen += rtp_to(sw.on_rtp("a", frame_a[0], t), "o1")  # output is in the middle of a frame
    assert sw.route("o1", "b", t) == []
    assert sw.snapshot().outputs["o1"].pending_input == "b"
    seen += rtp_to(feed(sw, "a", frame_a[1:], t), "o1")  # frame completes, then b's GOP
    seen += rtp_to(feed(sw, "b", b.frame(), t), "o1")
    tags = [tag(p.serialize()) for p in seen]
    assert tags[: 3 * 5] == [f"a:{f}:{i}" for f in range(5) for i in range(3)]
    assert tags[15:] == [f"b:{f}:{i}" for f in range(5) for i in range(3)]
    assert_continuous(seen, 0x1111)
    snap = sw.snapshot().outputs["o1"]
    assert (snap.input, snap.pending_input, snap.splices) == ("b", None, 1)
    # Late packets of b from before the splice would reuse numbers a already used: dropped.
    late = RtpPacket(96, 6, 0, 0xB, payload=b"\x5c\x01#b:late").serialize()
    assert rtp_to(sw.on_rtp("b", late, t), "o1") == []
    assert sw.snapshot().outputs["o1"].dropped == 1


def test_splice_timestamp_follows_the_wall_clock() -> None:
    sw, clock = make(), Clock()
    a, b = Camera("a", 0xA), Camera("b", 0xB, ts=123_456_789)
    t = clock.frame()
    feed(sw, "b", b.frame(key=True), t)
    sw.route("o1", "a", t)
    last_a = rtp_to(feed(sw, "a", a.frame(key=True), t), "o1")[-1]
    first_b = rtp_to(sw.route("o1", "b", t + 2.0), "o1")[0]
    assert (first_b.timestamp - last_a.timestamp) & 0xFFFFFFFF == 2 * 90000
    # A splice right after the last packet advances by the time that passed (at least a tick),
    # not by a frame: a frame per splice would run the output's clock ahead of the wall clock.
    last_b = rtp_to(feed(sw, "b", b.frame(), t + 2.0), "o1")[-1]
    feed(sw, "a", a.frame(key=True), t + 2.0)
    first_a = rtp_to(sw.route("o1", "a", t + 2.0), "o1")[0]
    assert (first_a.timestamp - last_b.timestamp) & 0xFFFFFFFF == 1


def test_roll_calls_keep_the_output_clock_with_the_wall_clock() -> None:
    """Forty keyframe splices (a roll call each: the cached keyframe at once, live from the
    source's next keyframe, asked for): the output's timestamps stay with the wall clock. They
    ran a frame ahead per splice (a receiver's jitter buffer then held every frame ~40 ms longer
    per roll call)."""
    sw, clock = make(kf=KeyframeRequest.pli), Clock()
    cams = {"a": Camera("a", 0xA), "b": Camera("b", 0xB, ts=77_000)}
    asked = {"a": True, "b": True}
    out: list[tuple[float, int]] = []
    current = "a"
    sw.route("o1", "a", clock.now)
    for n in range(800):
        t = clock.frame()
        for name, cam in cams.items():
            sends = feed(sw, name, cam.frame(key=asked[name]), t + (0.002 if name == "b" else 0))
            asked[name] = False
            out += [(t, p.timestamp) for p in rtp_to(sends, "o1")]
            for s in sends:
                if s.dest in ("cam-a-rtcp", "cam-b-rtcp"):
                    asked[s.dest[4]] = True
        if n % 20 == 10:
            current = "b" if current == "a" else "a"
            sends = sw.route("o1", current, t + 0.003, replay=Replay.keyframe)
            out += [(t + 0.003, p.timestamp) for p in rtp_to(sends, "o1")]
            for s in sends:
                if s.dest in ("cam-a-rtcp", "cam-b-rtcp"):
                    asked[s.dest[4]] = True
    assert sw.snapshot().outputs["o1"].splices == 40
    (t0, ts0), (t1, ts1) = out[0], out[-1]
    ahead = ((ts1 - ts0) & 0xFFFFFFFF) / 90000 - (t1 - t0)
    assert abs(ahead) < 2 / FPS, f"the output's clock is {ahead * 1000:.0f} ms off the wall clock"


def test_a_splice_moves_the_output_clock_at_most_a_frame_beyond_the_time_passed() -> None:
    """A source whose capture clock ran slow (its frames 2 % closer together than the wall
    clock's 40 ms, for 50 s: 1 s behind): the next splice does not jump the output's clock the
    whole second forward (a receiver would hold every frame that long); one frame more than
    the time passed, and each later splice another frame."""
    sw, clock = make(), Clock()
    a, b = Camera("a", 0xA), Camera("b", 0xB)
    sw.route("o1", "a", clock.now)
    for _ in range(1250):
        t = clock.frame()
        a.ts = (a.ts - round(TICKS * 0.02)) & 0xFFFFFFFF  # this frame 2 % early
        last_a = rtp_to(feed(sw, "a", a.frame(key=True), t), "o1")[-1]
        feed(sw, "b", b.frame(key=True), t)
    first_b = rtp_to(sw.route("o1", "b", t + 0.010), "o1")[0]
    step = (first_b.timestamp - last_a.timestamp) & 0xFFFFFFFF
    assert step == round(0.010 * 90000) + TICKS, step


def test_splice_without_cache_keeps_the_old_picture_until_the_new_keyframe() -> None:
    sw, clock = make(kf=KeyframeRequest.fir), Clock()
    a, b = Camera("a", 0xA), Camera("b", 0xB)
    t = clock.frame()
    feed(sw, "a", a.frame(key=True), t)
    feed(sw, "b", b.frame(), t)  # b has no keyframe yet
    sw.route("o1", "a", t)
    sends = sw.route("o1", "b", t)
    (fir,) = [p for s in sends if s.dest == "cam-b-rtcp" for p in parse_compound(s.data)][1:]
    assert isinstance(fir, RtcpFir) and fir.entries == ((0xB, 1),)
    t = clock.frame()
    seen = rtp_to(feed(sw, "a", a.frame(), t) + feed(sw, "b", b.frame(), t), "o1")
    assert [tag(p.serialize()) for p in seen] == ["a:1:0", "a:1:1", "a:1:2"]
    t = clock.frame()
    seen += rtp_to(feed(sw, "b", b.frame(key=True), t), "o1")
    assert [tag(p.serialize()) for p in seen][3:] == ["b:2:0", "b:2:1", "b:2:2"]
    assert_continuous(seen, 0x1111)


def test_fan_out_each_output_has_its_own_ssrc_and_numbers() -> None:
    sw, clock, cam = make(), Clock(), Camera("a", 0xA)
    for i in range(2, 5):
        sw.add_output(OutputSpec(f"o{i}", Codec.h264, ssrc=0x1000 + i, dest=f"o{i}"))
    for i in range(1, 5):
        sw.route(f"o{i}", "a", clock.now)
    sends = feed(sw, "a", cam.frame(key=True), clock.frame())
    for i in range(1, 5):
        got = rtp_to(sends, f"o{i}")
        assert [tag(p.serialize()) for p in got] == ["a:0:0", "a:0:1", "a:0:2"]
        assert_continuous(got, 0x1111 if i == 1 else 0x1000 + i)
    assert sw.snapshot().inputs["a"].outputs == 4


def test_loss_reorder_and_sequence_wrap_are_counted() -> None:
    sw, clock, cam = make(), Clock(), Camera("a", 0xA, seq=65533, per_frame=4)
    t = clock.frame()
    key = cam.frame(key=True)  # seqs 65533..0
    feed(sw, "a", key, t)
    frame = cam.frame()  # 1..4
    sw.on_rtp("a", frame[0], t)
    sw.on_rtp("a", frame[3], t)  # 2 and 3 missing
    assert sw.snapshot().inputs["a"].lost == 2
    sw.on_rtp("a", frame[1], t)  # arrives late
    assert sw.snapshot().inputs["a"].lost == 1
    snap = sw.snapshot().inputs["a"]
    assert (snap.packets, snap.bytes) == (7, sum(len(p) for p in key + frame) - len(frame[2]))


def test_interarrival_jitter() -> None:
    sw, cam = make(), Camera("a", 0xA, per_frame=1)
    t0 = 1000.0
    for i in range(50):
        sw.on_rtp("a", cam.frame(key=i == 0)[0], t0 + i / FPS)
    assert sw.snapshot().inputs["a"].jitter == 0.0
    # Every other frame 10 ms late: |D| = 10 ms for each pair, the estimate converges on it.
    for i in range(50, 400):
        sw.on_rtp("a", cam.frame()[0], t0 + i / FPS + (0.010 if i % 2 else 0.0))
    assert sw.snapshot().inputs["a"].jitter == pytest.approx(0.010, rel=1e-3)


def test_keyframe_requests_from_receivers_are_relayed_and_rate_limited() -> None:
    sw, clock, cam = make(kf=KeyframeRequest.pli), Clock(), Camera("a", 0xA)
    t = clock.frame()
    feed(sw, "a", cam.frame(key=True), t)
    sw.route("o1", "a", t)
    pli = RtcpPli(sender_ssrc=99, media_ssrc=0x1111).serialize()

    def to_cam(sends: list[Send]) -> list[object]:
        """The keyframe requests among what goes to the camera (periodic RRs go there too)."""
        found = [parse_compound(s.data) for s in sends if s.dest == "cam-a-rtcp"]
        return [p for c in found if any(isinstance(x, RtcpPli) for x in c) for p in c]

    assert [type(p) for p in to_cam(sw.on_rtcp("o1", pli, t))] == [RtcpReceiverReport, RtcpPli]
    assert to_cam(sw.on_rtcp("o1", pli, t + 0.1)) == []  # held
    assert to_cam(sw.on_rtcp("o1", pli, t + 0.2)) == []
    assert to_cam(sw.tick(t + 0.3)) == []
    assert [type(p) for p in to_cam(sw.tick(t + 0.5))] == [RtcpReceiverReport, RtcpPli]
    # A held request is dropped when a keyframe arrives before the interval ends.
    sw.on_rtcp("o1", pli, t + 0.6)
    feed(sw, "a", cam.frame(key=True), t + 0.7)
    assert to_cam(sw.tick(t + 1.2)) == []
    snap = sw.snapshot()
    assert snap.outputs["o1"].plis == 4
    assert snap.inputs["a"].keyframe_requests_sent == 2
    # A PLI about another SSRC is not ours to act on.
    other = RtcpPli(99, 0x2222).serialize()
    assert to_cam(sw.on_rtcp("o1", other, t + 5)) == []


def test_nack_is_answered_from_history_or_becomes_a_keyframe_request() -> None:
    sw, clock, cam = make(kf=KeyframeRequest.pli), Clock(), Camera("a", 0xA)
    sw.add_output(OutputSpec("n", Codec.h264, ssrc=0x3333, dest="n", nack_history=4))
    t = clock.frame()
    feed(sw, "a", cam.frame(key=True), t)
    sent = rtp_to(sw.route("n", "a", t), "n")
    sent += rtp_to(feed(sw, "a", cam.frame(), t), "n")
    seqs = [p.sequence_number for p in sent]
    nack = RtcpNack(99, 0x3333, (seqs[-1], seqs[-2])).serialize()
    resent = sw.on_rtcp("n", nack, t)
    assert sorted(s.data for s in resent) == sorted(p.serialize() for p in sent[-2:])
    too_old = RtcpNack(99, 0x3333, (seqs[0],)).serialize()
    (req,) = sw.on_rtcp("n", too_old, t)
    assert req.dest == "cam-a-rtcp"
    snap = sw.snapshot().outputs["n"]
    assert (snap.nacks, snap.retransmitted) == (2, 2)


def test_malformed_datagrams_are_counted_and_the_switch_goes_on() -> None:
    sw, clock, cam = make(), Clock(), Camera("a", 0xA)
    sw.route("o1", "a", clock.now)
    for junk in (b"", b"\x00" * 40, b"\x80\x60\x00", bytes([0x8F]) + bytes(20)):
        assert sw.on_rtp("a", junk, clock.now) == []
    for junk in (b"\x80", b"\x81\xce\x00\x09abcd"):
        assert sw.on_rtcp("o1", junk, clock.now) == []
    assert sw.on_input_rtcp("a", b"\xff\xff\xff\xff", clock.now) == []
    got = rtp_to(feed(sw, "a", cam.frame(key=True), clock.frame()), "o1")
    assert len(got) == 3
    snap = sw.snapshot()
    assert snap.inputs["a"].malformed == 5
    assert snap.outputs["o1"].rtcp_malformed == 2


def test_sender_reports_for_outputs_and_receiver_reports_for_sources() -> None:
    sw, clock, cam = make(kf=KeyframeRequest.pli), Clock(), Camera("a", 0xA)
    t = clock.frame()
    sw.route("o1", "a", t)
    assert sw.tick(t) == []  # nothing sent yet: no SR; no source SSRC yet: no RR
    sent = rtp_to(feed(sw, "a", cam.frame(key=True), t), "o1")
    lost = cam.frame()
    feed(sw, "a", [lost[0], lost[2]], t + 0.04)
    src_sr = RtcpSenderReport(0xA, 0x1234_5678_9ABC_0000, 0, 5, 500).serialize()
    sw.on_input_rtcp("a", src_sr, t + 0.05)
    # Ticks every 50 ms: the first SR and RR come within half an RTCP interval (RFC 3550 §6.2).
    by_dest: dict[Hashable, tuple[float, list[object]]] = {}
    for k in range(1, 12):
        for s in sw.tick(t + 0.05 * k):
            assert s.dest not in by_dest, "a second report within half an interval"
            by_dest[s.dest] = (t + 0.05 * k, parse_compound(s.data))
    sr, sdes = by_dest["o1-rtcp"][1]
    assert isinstance(sr, RtcpSenderReport) and isinstance(sdes, RtcpSdes)
    assert sr.ssrc == 0x1111 and sr.packet_count == 5
    forwarded = [*sent, parse_rtp(lost[0]), parse_rtp(lost[2])]
    assert sr.octet_count == sum(len(p.payload) for p in forwarded)
    assert sdes.chunks[0].cname == "vmesh-switch"
    rr_at, (rr, *_) = by_dest["cam-a-rtcp"]
    assert isinstance(rr, RtcpReceiverReport)
    (block,) = rr.reports
    assert (block.ssrc, block.cumulative_lost, block.fraction_lost) == (0xA, 1, 256 // 6)
    assert block.lsr == 0x5678_9ABC and block.dlsr == round((rr_at - t - 0.05) * 65536)
    # The receiver's report about our output is kept.
    block_back = ReportBlock(0x1111, 128, 3, 1000, 900)
    sw.on_rtcp("o1", serialize_compound([RtcpReceiverReport(42, (block_back,))]), t + 0.6)
    out = sw.snapshot().outputs["o1"]
    assert (out.receiver_fraction_lost, out.receiver_lost, out.receiver_jitter) == (0.5, 3, 0.01)


def test_reports_of_many_outputs_are_spread_over_ticks_and_each_keeps_its_rate() -> None:
    """RFC 3550 §6.3 randomised intervals: a hundred outputs routed at once report in many
    different ticks (a tick never makes all hundred SRs at once, which would hold up the packets
    behind it), and each output still reports about once per interval, with its own counts."""
    sw, clock, cam = Switch(rng=random.Random(5)), Clock(), Camera("a", 0xA)
    sw.add_input(InputSpec("a", Codec.h264))
    for i in range(100):
        sw.add_output(OutputSpec(f"o{i}", Codec.h264, ssrc=i + 1, dest=i, rtcp_dest=f"r{i}"))
        sw.route(f"o{i}", "a", clock.now)
    per_tick: list[int] = []
    srs: dict[Hashable, list[RtcpSenderReport]] = {}
    for k in range(500):  # 20 s: a frame every 40 ms, a tick after each
        now = clock.frame()
        feed(sw, "a", cam.frame(key=k % 25 == 0), now)
        sends = sw.tick(now)
        per_tick.append(len(sends))
        for s in sends:
            sr = parse_compound(s.data)[0]
            assert isinstance(sr, RtcpSenderReport)
            srs.setdefault(s.dest, []).append(sr)
    assert max(per_tick) < 40  # spread: all 100 in one tick was the old behaviour
    assert sum(1 for n in per_tick if n) > 250
    assert sorted(srs) == sorted(f"r{i}" for i in range(100))
    for dest, got in srs.items():
        assert 13 <= len(got) <= 40, (dest, len(got))  # once per 0.5-1.5 s over 20 s
        assert [sr.packet_count for sr in got] == sorted(sr.packet_count for sr in got)
    snap = sw.snapshot()
    assert {o.packets for o in snap.outputs.values()} == {snap.inputs["a"].packets}


def test_source_restart_with_new_ssrc_waits_for_its_keyframe() -> None:
    sw, clock = make(), Clock()
    cam = Camera("a", 0xA)
    t = clock.frame()
    sw.route("o1", "a", t)
    seen = rtp_to(feed(sw, "a", cam.frame(key=True), t), "o1")
    restarted = Camera("a2", 0xAA, seq=40000, ts=777)
    t = clock.frame()
    assert rtp_to(feed(sw, "a", restarted.frame(), t), "o1") == []
    seen += rtp_to(feed(sw, "a", restarted.frame(key=True), clock.frame()), "o1")
    assert [tag(p.serialize()) for p in seen][3:] == ["a2:1:0", "a2:1:1", "a2:1:2"]
    assert_continuous(seen, 0x1111)
    assert sw.snapshot().inputs["a"].restarts == 1


def test_audio_routes_at_once_and_splices_without_a_gap() -> None:
    sw, clock = Switch(rng=random.Random(1)), Clock()
    for name in ("m1", "m2"):
        sw.add_input(InputSpec(name, Codec.opus))
    sw.add_output(OutputSpec("mix", Codec.opus, ssrc=5, dest="mix", payload_type=111))

    def opus(ssrc: int, seq: int, ts: int) -> bytes:
        return RtpPacket(100, seq, ts, ssrc, payload=b"\xfc\x00").serialize()

    assert sw.route("mix", "m1", clock.now) == []
    seen: list[RtpPacket] = []
    for i in range(5):
        t = clock.now + i * 0.02
        seen += rtp_to(sw.on_rtp("m1", opus(1, 100 + i, 960 * i), t), "mix")
        sw.on_rtp("m2", opus(2, 5000 + i, 48000 + 960 * i), t)
    sw.route("mix", "m2", clock.now + 0.1)
    seen += rtp_to(sw.on_rtp("m2", opus(2, 5005, 48000 + 960 * 5), clock.now + 0.1), "mix")
    assert_continuous(seen, 5)
    assert {p.payload_type for p in seen} == {111}
    assert seen[-1].timestamp - seen[-2].timestamp == 960  # 20 ms of wall clock at 48 kHz


def test_configuration_errors_name_the_field() -> None:
    sw = make()
    sw.add_input(InputSpec("mic", Codec.pcmu))
    with pytest.raises(InvalidInput) as e:
        sw.route("o1", "mic", 0.0)
    assert e.value.errors[0].field == "input_id"
    with pytest.raises(NotFound):
        sw.route("o1", "nope", 0.0)
    with pytest.raises(NotFound):
        sw.on_rtp("nope", b"", 0.0)
    with pytest.raises(Conflict):
        sw.add_output(OutputSpec("o9", Codec.h264, ssrc=0x1111, dest="x"))
    with pytest.raises(InvalidInput) as e:
        sw.add_input(InputSpec("c", Codec.h264, keyframe_request=KeyframeRequest.pli))
    assert e.value.errors[0].field == "rtcp_dest"
    with pytest.raises(InvalidInput) as e:
        sw.add_output(OutputSpec("o9", Codec.h264, ssrc=0, dest="x"))
    assert e.value.errors[0].field == "ssrc"


def test_unroute_and_route_again_keeps_the_channel_continuous() -> None:
    sw, clock, cam = make(), Clock(), Camera("a", 0xA)
    t = clock.frame()
    sw.route("o1", "a", t)
    seen = rtp_to(feed(sw, "a", cam.frame(key=True), t), "o1")
    sw.unroute("o1")
    assert rtp_to(feed(sw, "a", cam.frame(), clock.frame()), "o1") == []
    seen += rtp_to(sw.route("o1", "a", clock.now), "o1")  # replay of the GOP from frame 0
    assert_continuous(seen, 0x1111)
    assert sw.snapshot().outputs["o1"].splices == 1
    bye = sw.remove_output("o1")
    assert bye and bye[0].dest == "o1-rtcp"
