"""Loss repair on a node link, receiver side: which packets to ask again for. Sans-IO, no clock.

``NackRequester`` watches the sequence numbers of one RTP stream arriving over a link. A gap
(up to ``max_gap`` packets) makes the missing numbers wanted: they are asked for at once (a generic
NACK, RFC 4585 §6.2.1, to the upstream node's output, which answers from its history), again every
``retry_interval`` seconds while still missing, at most ``max_tries`` times, then given up (the
downstream switch's own keyframe logic takes over). A packet that arrives is no longer wanted.

``on_rtp(data, now)`` and ``tick(now)`` return the RTCP datagram to send, or ``None``.

Public: ``NackRequester``, ``NackStats``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from vmesh.switch.rtcp import RtcpNack, RtcpReceiverReport, serialize_compound


@dataclass(frozen=True)
class NackStats:
    packets: int
    bytes: int
    gaps: int
    requested: int  # sequence numbers asked for (each try counted)
    recovered: int  # asked-for packets that arrived
    given_up: int


class NackRequester:
    def __init__(
        self,
        *,
        max_gap: int = 200,
        retry_interval: float = 0.05,
        max_tries: int = 3,
        sender_ssrc: int | None = None,
    ) -> None:
        self.max_gap = max_gap
        self.retry_interval = retry_interval
        self.max_tries = max_tries
        self.sender_ssrc = sender_ssrc or random.getrandbits(31) + 1
        self.media_ssrc: int | None = None
        self.highest: int | None = None
        self._missing: dict[int, tuple[float, int]] = {}  # seq -> (last asked at, tries)
        self.packets = 0
        self.bytes = 0
        self.gaps = 0
        self.requested = 0
        self.recovered = 0
        self.given_up = 0

    def on_rtp(self, data: bytes, now: float) -> bytes | None:
        if len(data) < 12:
            return None
        seq = int.from_bytes(data[2:4], "big")
        ssrc = int.from_bytes(data[8:12], "big")
        self.packets += 1
        self.bytes += len(data)
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
                for k in range(1, delta):
                    self._missing[(self.highest + k) & 0xFFFF] = (now, 1)
                self.highest = seq
                return self._nack(sorted(self._missing_asked_at(now)))
            self.highest = seq
            return None
        if self._missing.pop(seq, None) is not None:  # older: a retransmission (or reordering)
            self.recovered += 1
        return None

    def _missing_asked_at(self, now: float) -> list[int]:
        return [s for s, (at, _) in self._missing.items() if at == now]

    def tick(self, now: float) -> bytes | None:
        again = []
        for s, (at, tries) in list(self._missing.items()):
            if now - at < self.retry_interval:
                continue
            if tries >= self.max_tries:
                del self._missing[s]
                self.given_up += 1
                continue
            self._missing[s] = (now, tries + 1)
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
            self.packets, self.bytes, self.gaps, self.requested, self.recovered, self.given_up
        )
