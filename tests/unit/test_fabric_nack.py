"""Receiver-side NACKs on a node link: gaps asked for at once, retried at the measured repair
round trip (bounded), recovered, given up; duplicates recognised; the NACK is one the switch's
output answers from its history (real switch core)."""

from __future__ import annotations

import struct

import pytest

from vmesh.fabric.nack import NackRequester
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, OutputSpec, Switch
from vmesh.switch.rtcp import RtcpNack, parse_compound

pytestmark = pytest.mark.unit


def rtp(seq: int, ssrc: int = 0xABC, ts: int = 0, nal: int = 0x41) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, ts, ssrc) + bytes([nal]) + bytes(20)


def lost_in(datagram: bytes | None) -> list[int]:
    assert datagram is not None
    nacks = [p for p in parse_compound(datagram) if isinstance(p, RtcpNack)]
    assert len(nacks) == 1
    return sorted(nacks[0].lost)


def test_a_gap_is_asked_for_at_once_and_recovered() -> None:
    n = NackRequester()
    assert n.on_rtp(rtp(10), 0.0) is None
    assert n.on_rtp(rtp(11), 0.0) is None
    assert lost_in(n.on_rtp(rtp(15), 0.01)) == [12, 13, 14]
    assert n.on_rtp(rtp(13), 0.02) is None
    assert n.missing == [12, 14]
    assert n.stats().recovered == 1


def test_missing_packets_are_asked_again_then_given_up() -> None:
    n = NackRequester(initial_rtt=0.05, max_tries=3)
    n.on_rtp(rtp(0xFFFE), 0.0)
    assert lost_in(n.on_rtp(rtp(1), 0.0)) == [0, 0xFFFF]  # across the wrap
    assert n.tick(0.01) is None  # not yet
    assert lost_in(n.tick(0.06)) == [0, 0xFFFF]
    assert lost_in(n.tick(0.12)) == [0, 0xFFFF]
    assert n.tick(0.2) is None  # third try was the last
    assert n.missing == []
    assert n.stats().given_up == 2


def test_a_new_sender_or_a_big_jump_is_not_loss() -> None:
    n = NackRequester(max_gap=100)
    n.on_rtp(rtp(5), 0.0)
    assert n.on_rtp(rtp(900), 0.0) is None
    assert n.on_rtp(rtp(3, ssrc=0xDEF), 0.0) is None
    assert n.missing == []


def test_the_upstream_switch_answers_the_nack_with_the_lost_packets() -> None:
    sw = Switch()
    sw.add_input(InputSpec("cam", Codec.h264))
    sw.add_output(OutputSpec("link", Codec.h264, ssrc=0x77, dest="down", nack_history=64))
    sw.route("link", "cam", 0.0)
    sent = []
    for i in range(6):
        sent += [
            s.data
            for s in sw.on_rtp("cam", rtp(100 + i, ts=i * 3600, nal=0x65 if i == 0 else 0x41), 0.0)
        ]
    n = NackRequester()
    req = None
    for i, data in enumerate(sent):
        if i in (2, 3):
            continue  # lost on the link
        req = n.on_rtp(data, 0.0) or req
    answers = [s.data for s in sw.on_rtcp("link", lost_in_request(req), 0.0)]
    assert answers == [sent[2], sent[3]]
    for a in answers:
        n.on_rtp(a, 0.01)
    assert n.missing == []
    assert n.stats().recovered == 2


def lost_in_request(req: bytes | None) -> bytes:
    assert req is not None
    return req


def _recover(n: NackRequester, seq: int, asked_at: float, rtt: float) -> None:
    """Packet ``seq`` lost at ``asked_at`` and its retransmission back ``rtt`` later."""
    assert n.on_rtp(rtp(seq + 1), asked_at) is not None
    assert n.on_rtp(rtp(seq), asked_at + rtt) is None


def test_the_retry_interval_follows_the_measured_round_trip() -> None:
    n = NackRequester(initial_rtt=0.05)
    n.on_rtp(rtp(1), 0.0)
    assert n.retry_interval == pytest.approx(0.05)
    t = 0.0
    for seq in range(2, 200, 2):  # every other packet lost, answered 150 ms after the NACK
        t += 0.2
        _recover(n, seq, t, 0.15)
    assert n.stats().rtt_ms == pytest.approx(150, abs=1)
    # Steady samples: the variance decays and the interval settles just above the round trip,
    # so a retry never goes out before the first answer could come back.
    assert 0.15 < n.retry_interval < 0.2
    n.on_rtp(rtp(201), 100.0)  # 200 lost
    assert n.tick(100.1) is None  # asked 100 ms ago: its answer may still be on the way
    assert lost_in(n.tick(100.2)) == [200]
    assert n.missing == [200]


def test_the_retry_interval_is_bounded() -> None:
    slow = NackRequester(initial_rtt=0.05, max_interval=0.5)
    slow.on_rtp(rtp(0), 0.0)
    _recover(slow, 1, 1.0, 3.0)  # a 3 s answer (a link in trouble)
    assert slow.retry_interval == 0.5
    fast = NackRequester(initial_rtt=0.05, min_interval=0.02)
    fast.on_rtp(rtp(1), 0.0)
    for seq in range(2, 100, 2):
        _recover(fast, seq, float(seq), 0.0005)  # a LAN
    assert fast.retry_interval == 0.02


def test_an_answer_to_a_retry_is_not_a_round_trip_sample() -> None:
    n = NackRequester(initial_rtt=0.05)
    n.on_rtp(rtp(0), 0.0)
    n.on_rtp(rtp(2), 0.0)  # 1 asked at 0
    assert lost_in(n.tick(0.06)) == [1]  # asked again
    n.on_rtp(rtp(1), 0.07)  # whose answer? ambiguous (Karn): no sample
    assert n.srtt is None
    assert n.stats().recovered == 1


def test_a_packet_that_already_came_is_a_duplicate() -> None:
    n = NackRequester(initial_rtt=0.05)
    for seq in (10, 11, 13):
        assert not n.duplicate(rtp(seq))
        n.on_rtp(rtp(seq), 0.0)
    assert n.duplicate(rtp(11))  # came already
    assert not n.duplicate(rtp(12))  # wanted: the retransmission goes through
    n.on_rtp(rtp(12), 0.1)
    assert n.duplicate(rtp(12))  # the answer to a second NACK: dropped
    assert not n.duplicate(rtp(14))  # newer
    assert not n.duplicate(rtp(12, ssrc=0xDEF))  # another sender
    assert n.stats().duplicates == 2
