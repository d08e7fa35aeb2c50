"""The timeline (pure): a camera's segments merged into spans, the gaps between them, and the
recorded seconds per hour, for the console's day/hour view and the playback API.

Two segments belong to one span when the second starts at most ``tolerance`` seconds after the
first ends (segment boundaries are not exact to the millisecond: a segment's start is its end
minus its duration). Anything longer is a gap: the camera had no signal, no plan, or the node
was down.

``body`` is the timeline API's answer (also the GB/T 28181 device recordings', so the console draws
both with the same strips).

Public: ``Span``, ``spans``, ``gaps``, ``hours``, ``covering``, ``body``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Span:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def spans(segments: Iterable[tuple[float, float]], tolerance: float = 1.5) -> list[Span]:
    """``(start, end)`` pairs (any order) merged into sorted, non-overlapping spans."""
    out: list[Span] = []
    for start, end in sorted(segments):
        if out and start <= out[-1].end + tolerance:
            if end > out[-1].end:
                out[-1] = Span(out[-1].start, end)
        else:
            out.append(Span(start, end))
    return out


def gaps(merged: Sequence[Span], start: float, end: float) -> list[Span]:
    """What of ``[start, end)`` the spans do not cover."""
    out: list[Span] = []
    at = start
    for s in merged:
        if s.end <= at:
            continue
        if s.start >= end:
            break
        if s.start > at:
            out.append(Span(at, s.start))
        at = max(at, s.end)
    if at < end:
        out.append(Span(at, end))
    return out


def hours(merged: Sequence[Span], start: float, end: float) -> list[tuple[float, float]]:
    """Recorded seconds per hour of ``[start, end)``: ``(hour start, seconds)``; hours are counted
    from ``start`` (the caller passes the local midnight of the day)."""
    n = max(0, math.ceil((end - start) / 3600))
    out = []
    for i in range(n):
        h0, h1 = start + i * 3600, min(start + (i + 1) * 3600, end)
        covered = sum(max(0.0, min(s.end, h1) - max(s.start, h0)) for s in merged)
        out.append((h0, covered))
    return out


def covering(segments: Sequence[tuple[float, float]], start: float, end: float) -> list[int]:
    """Indexes of the segments (sorted by start) that overlap ``[start, end)``."""
    return [i for i, (s, e) in enumerate(segments) if e > start and s < end]


def body(merged: Sequence[Span], start: float, end: float) -> dict[str, Any]:
    """The spans clipped to ``[start, end)``, the gaps, the recorded seconds per hour and in all."""
    clipped = [Span(max(s.start, start), min(s.end, end)) for s in merged]
    clipped = [s for s in clipped if s.end > s.start]
    return {
        "start": start,
        "end": end,
        "spans": [{"start": s.start, "end": s.end} for s in clipped],
        "gaps": [{"start": g.start, "end": g.end} for g in gaps(clipped, start, end)],
        "hours": [{"start": h, "seconds": round(sec, 1)} for h, sec in hours(clipped, start, end)],
        "recorded_seconds": round(sum(s.seconds for s in clipped), 1),
    }
