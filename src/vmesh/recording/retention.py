"""Retention (pure): which segments to delete, by age and by disk pressure.

- **Age**: a segment whose end is older than its camera's ``retention_days`` (the plan's, else
  ``[recording] retention_days``, 30 by default) goes.
- **Disk pressure**: when the recordings take more than ``max_bytes`` (0: no budget), or the
  filesystem's free space is below ``min_free_percent``, the oldest segments of any camera go
  until the budget holds again with ``headroom`` (a fraction of the budget, so that deletion does
  not run every minute) and the free space is back above ``min_free_percent`` + 1.

Whichever bites first wins; both run in every retention pass (``vmesh.recording.service``).

Public: ``SegmentInfo``, ``expired``, ``for_pressure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentInfo:
    id: int
    camera_code: str
    start_at: float
    end_at: float
    bytes: int


def expired(
    segments: Sequence[SegmentInfo],
    now: float,
    days_of: Mapping[str, int],
    default_days: int,
) -> list[SegmentInfo]:
    """Segments past their camera's retention."""
    out = []
    for s in segments:
        days = days_of.get(s.camera_code, default_days)
        if s.end_at < now - days * 86400:
            out.append(s)
    return out


def for_pressure(
    oldest_first: Sequence[SegmentInfo],
    used_bytes: int,
    max_bytes: int,
    free_bytes: int,
    total_bytes: int,
    min_free_percent: float,
    headroom: float = 0.1,
) -> list[SegmentInfo]:
    """The oldest segments to delete so both the budget and the free-space floor hold."""
    need = 0
    if max_bytes and used_bytes > max_bytes:
        need = used_bytes - int(max_bytes * (1 - headroom))
    if total_bytes and min_free_percent and free_bytes < total_bytes * min_free_percent / 100:
        target_free = total_bytes * (min_free_percent + 1) / 100
        need = max(need, int(target_free - free_bytes))
    out: list[SegmentInfo] = []
    freed = 0
    for s in oldest_first:
        if freed >= need:
            break
        out.append(s)
        freed += s.bytes
    return out
