"""Loss repair on a node link, receiver side: which packets to ask again for, how soon, and which
arrivals are duplicates. Sans-IO, no clock.

``NackRequester`` watches the sequence numbers of one RTP stream arriving over a link. A gap
(up to ``max_gap`` packets) makes the missing numbers wanted: they are asked for at once (a generic
NACK, RFC 4585 §6.2.1, to the upstream node's output, which answers from its history), again every
``retry_interval`` seconds while still missing, at most ``max_tries`` times, then given up (the
downstream switch's own keyframe logic takes over). A packet that arrives is no longer wanted.

The retry interval follows the link's repair round trip, measured on the data path itself: the
time from a NACK to the retransmission it asked for (only packets asked for once, Karn's rule, so a
retry's answer is never taken for the first's). It is smoothed as TCP does (RFC 6298: ``srtt``,
``rttvar``, interval = ``srtt + 4·rttvar``) and bounded to ``[min_interval, max_interval]``;
before the first sample it is ``initial_rtt``. A fixed interval shorter than the round trip asks
again before the answer can arrive: the upstream then sends the packet two or three times.

Duplicates: ``duplicate(data)`` says whether a packet was already received (a second
retransmission, or one the network doubled); the link drops those rather than forwarding them to
the switch, whose channel would otherwise send (and count) them twice.

``on_rtp(data, now)`` and ``tick(now)`` return the RTCP datagram to send, or ``None``.

Public: ``NackRequester``, ``NackStats``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from vmesh.switch.rtcp import RtcpNack, RtcpReceiverReport, serialize_compound

_SEEN = 1024  # received sequence numbers remembered for duplicate detection (a power of two)


@dataclass(frozen=True)
class NackStats:
    packets: int
    bytes: int
    gaps: int
    requested: int  # sequence numbers asked for (each try counted)
    recovered: int  # asked-for packets that arrived
    given_up: int
    duplicates: int  # packets that had already arrived (see ``duplicate``)
    rtt_ms: float | None  # smoothed NACK → retransmission time, None before the first sample
    retry_ms: float  # the current retry interval


@dataclass
class _Wanted:
    first_asked: float
    last_asked: float
    tries: int


class NackRequester:
    def __init__(
        self,
        *,
        max_gap: int = 200,
        initial_rtt: float = 0.1,
        min_interval: float = 0.02,
        max_interval: float = 0.5,
        max_tries: int = 3,
        sender_ssrc: int | None = None,
    ) -> None:
        self.max_gap = max_gap
        self.initial_rtt = initial_rtt
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.max_tries = max_tries
        self.sender_ssrc = sender_ssrc or random.getrandbits(31) + 1
        self.media_ssrc: int | None = None
        self.highest: int | None = None
        self.srtt: float | None = None
        self.rttvar = 0.0
        self._missing: dict[int, _Wanted] = {}
        self._seen = [-1] * _SEEN
        self.packets = 0
        self.bytes = 0
        self.gaps = 0
        self.requested = 0
        self.recovered = 0
        self.given_up = 0
        self.duplicates = 0

    # --- round trip ---------------------------------------------------------------------------

    @property
    def retry_interval(self) -> float:
        """Seconds to wait for a retransmission before asking again (bounded)."""
        rto = self.initial_rtt if self.srtt is None else self.srtt + 4 * self.rttvar
        return min(self.max_interval, max(self.min_interval, rto))

    def _sample(self, rtt: float) -> None:
        if rtt < 0:
            return
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    # --- packets ------------------------------------------------------------------------------

    def duplicate(self, data: bytes) -> bool:
        """Whether this packet (same sender, not newer than the highest) already arrived."""
        if len(data) < 12 or self.highest is None:
            return False
        if int.from_bytes(data[8:12], "big") != self.media_ssrc:
            return False
        seq = int.from_bytes(data[2:4], "big")
        delta = (seq - self.highest) & 0xFFFF
        if 0 < delta < 0x8000:
            return False
        if self._seen[seq % _SEEN] != seq:
            return False
        self.duplicates += 1
        return True

    def on_rtp(self, data: bytes, now: float) -> bytes | None:
        if len(data) < 12:
            return None
        seq = int.from_bytes(data[2:4], "big")
        ssrc = int.from_bytes(data[8:12], "big")
        self.packets += 1
        self.bytes += len(data)
        self._seen[seq % _SEEN] = seq
        if ssrc != self.media_ssrc:  # a new sender: nothing before it can be asked for
            self.media_ssrc = ssrc
            self.highest = seq
            self._missing.clear()
            return None
        assert self.highest is not None
        delta = (seq - self.highest) & 0xFFFF
        if delta == 0:
            return None
        if delta < 0x8000:  # newer
            if delta > self.max_gap:
                self._missing.clear()  # a jump, not loss: a restart upstream
            elif delta > 1:
                self.gaps += 1
                new = [(self.highest + k) & 0xFFFF for k in range(1, delta)]
                for s in new:
                    self._missing[s] = _Wanted(now, now, 1)
                self.highest = seq
                return self._nack(sorted(new))
            self.highest = seq
            return None
        wanted = self._missing.pop(seq, None)  # older: a retransmission (or reordering)
        if wanted is not None:
            self.recovered += 1
            if wanted.tries == 1:
                self._sample(now - wanted.first_asked)
        return None

    def tick(self, now: float) -> bytes | None:
        interval = self.retry_interval
        again = []
        for s, w in list(self._missing.items()):
            if now - w.last_asked < interval:
                continue
            if w.tries >= self.max_tries:
                del self._missing[s]
                self.given_up += 1
                continue
            w.last_asked, w.tries = now, w.tries + 1
            again.append(s)
        return self._nack(sorted(again)) if again else None

    def _nack(self, seqs: list[int]) -> bytes | None:
        if not seqs or self.media_ssrc is None:
            return None
        self.requested += len(seqs)
        return serialize_compound(
            [
                RtcpReceiverReport(self.sender_ssrc),
                RtcpNack(self.sender_ssrc, self.media_ssrc, tuple(seqs)),
            ]
        )

    @property
    def missing(self) -> list[int]:
        return sorted(self._missing)

    def stats(self) -> NackStats:
        return NackStats(
            self.packets,
            self.bytes,
            self.gaps,
            self.requested,
            self.recovered,
            self.given_up,
            self.duplicates,
            None if self.srtt is None else round(self.srtt * 1000, 3),
            round(self.retry_interval * 1000, 3),
        )
