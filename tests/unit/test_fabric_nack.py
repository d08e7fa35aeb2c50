"""Receiver-side NACKs on a node link: gaps asked for at once, retried, recovered, given up;
the NACK is one the switch's output answers from its history (real switch core)."""

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
    n = NackRequester(retry_interval=0.05, max_tries=3)
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
