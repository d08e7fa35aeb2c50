"""The conference splice (``Replay.keyframe``): a roll call shows the new speaker's cached keyframe
at once (a few packets, not the whole GOP), asks the speaker for a keyframe, holds the picture
and goes live at that keyframe; never a delta frame whose reference was skipped. A speaker that
sends no keyframe within ``keyframe_wait`` gets the ordinary GOP replay; ordinary routes
(``Replay.gop``) are unchanged. The sans-IO switch with hand-built H.264 (``test_switch_core``'s
camera) and a simulated clock."""

from __future__ import annotations

import random

import pytest
from test_switch_core import Camera, Clock, assert_continuous, feed, rtp_to, tag

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
from vmesh.switch.rtcp import RtcpPli, parse_compound

pytestmark = pytest.mark.unit


def venues(n: int, config: SwitchConfig | None = None) -> Switch:
    """The main venue ``m`` (no keyframe requests) and speaker ``s`` (PLI), ``n`` venue outputs."""
    sw = Switch(config, rng=random.Random(3))
    sw.add_input(InputSpec("m", Codec.h264))
    sw.add_input(
        InputSpec("s", Codec.h264, keyframe_request=KeyframeRequest.pli, rtcp_dest="s-rtcp")
    )
    for i in range(n):
        sw.add_output(OutputSpec(f"v{i}", Codec.h264, ssrc=0x100 + i, dest=f"v{i}"))
    return sw


def plis(sends: list[Send]) -> list[RtcpPli]:
    return [
        p for s in sends if s.dest == "s-rtcp" for p in parse_compound(s.data) if type(p) is RtcpPli
    ]


def start(sw: Switch, clock: Clock, n: int) -> tuple[Camera, Camera, list[list[str]]]:
    """Every venue watching the main venue; the speaker ten frames into its GOP."""
    m, s = Camera("m", 0xA), Camera("s", 0xB, seq=40000)
    t = clock.frame()
    feed(sw, "m", m.frame(key=True), t)
    feed(sw, "s", s.frame(key=True), t)
    seen: list[list[str]] = [[] for _ in range(n)]
    for i in range(n):
        sw.route(f"v{i}", "m", t)
    for _ in range(10):
        t = clock.frame()
        feed(sw, "m", m.frame(), t)
        feed(sw, "s", s.frame(), t)
    return m, s, seen


def tags_of(sends: list[Send], dest: str) -> list[str]:
    return [tag(p.serialize()) for p in rtp_to(sends, dest)]


def test_a_roll_call_shows_the_keyframe_at_once_then_goes_live_at_the_requested_keyframe() -> None:
    sw, clock = venues(3), Clock()
    m, s, _ = start(sw, clock, 3)
    t = clock.now
    sends: list[Send] = []
    for i in range(3):  # the roll call: one route per venue tile
        sends += sw.route(f"v{i}", "s", t, Replay.keyframe)
    for i in range(3):  # only the keyframe's packets, not the eleven frames of the GOP
        assert tags_of(sends, f"v{i}") == ["s:0:0", "s:0:1", "s:0:2"]
    assert len(plis(sends)) == 1 and plis(sends)[0].media_ssrc == 0xB  # once per speaker
    shown = rtp_to(sends, "v0")

    # until the keyframe comes: the venues hold that picture (no delta frame, nothing of m)
    t = clock.frame()
    held = feed(sw, "s", s.frame(), t) + feed(sw, "m", m.frame(), t)
    assert [x for x in held if x.dest in ("v0", "v1", "v2")] == []

    # the speaker's keyframe (the PLI's answer): every venue goes live there
    t = clock.frame()
    live = feed(sw, "s", s.frame(key=True), t) + feed(sw, "s", s.frame(), clock.frame())
    for i in range(3):
        assert tags_of(live, f"v{i}") == [
            "s:12:0",
            "s:12:1",
            "s:12:2",
            "s:13:0",
            "s:13:1",
            "s:13:2",
        ]
    assert_continuous(shown + rtp_to(live, "v0"), 0x100)
    out = sw.snapshot().outputs["v0"]
    # replayed: m's GOP at the start, s's keyframe, the first packet of s's new keyframe
    assert (out.input, out.pending_input, out.splices, out.replayed) == ("s", None, 1, 3 + 3 + 1)


def test_the_ordinary_gop_splice_is_unchanged() -> None:
    sw, clock = venues(1), Clock()
    _, _, _ = start(sw, clock, 1)
    sends = sw.route("v0", "s", clock.now)
    assert tags_of(sends, "v0") == [f"s:{f}:{i}" for f in range(11) for i in range(3)]
    assert plis(sends) == []


def test_a_speaker_that_sends_no_keyframe_gets_the_gop_replay_after_keyframe_wait() -> None:
    sw, clock = venues(1, SwitchConfig(keyframe_wait=0.5)), Clock()
    _, s, _ = start(sw, clock, 1)
    t0 = clock.now
    first = sw.route("v0", "s", t0, Replay.keyframe)
    assert tags_of(first, "v0") == ["s:0:0", "s:0:1", "s:0:2"]
    t = clock.frame()
    assert rtp_to(feed(sw, "s", s.frame(), t), "v0") == []  # frame 11: held
    late = sw.tick(t0 + 0.6)  # no keyframe within keyframe_wait: the GOP after all
    assert tags_of(late, "v0") == [f"s:{f}:{i}" for f in range(12) for i in range(3)]
    live = feed(sw, "s", s.frame(), clock.frame())
    assert tags_of(live, "v0") == ["s:12:0", "s:12:1", "s:12:2"]
    assert_continuous(rtp_to(first + late + live, "v0"), 0x100)


def test_a_roll_call_moved_on_before_the_keyframe_follows_the_new_route() -> None:
    sw, clock = venues(1), Clock()
    m, s, _ = start(sw, clock, 1)
    t = clock.now
    sw.route("v0", "s", t, Replay.keyframe)
    back = sw.route("v0", "m", t, Replay.keyframe)  # the chair went back to the main venue
    assert tags_of(back, "v0") == ["m:0:0", "m:0:1", "m:0:2"]
    t = clock.frame()
    nothing = feed(sw, "s", s.frame(key=True), t) + feed(sw, "m", m.frame(), t)
    assert rtp_to(nothing, "v0") == []  # neither s's keyframe nor m's delta frame
    live = feed(sw, "m", m.frame(key=True), clock.frame())
    assert tags_of(live, "v0") == ["m:12:0", "m:12:1", "m:12:2"]
    assert sw.snapshot().outputs["v0"].input == "m"
    sw.unroute("v0")
    assert rtp_to(feed(sw, "m", m.frame(key=True), clock.frame()), "v0") == []
