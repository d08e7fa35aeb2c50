"""Playback: a time range of a camera's segments as one MP4 (ffmpeg concat demuxer, ``-c copy``).

``range_mp4`` picks the indexed segments overlapping ``[start, end)`` (whole segments: the MP4
starts at the first one's start, returned so the player maps wall-clock time to ``currentTime``),
writes a concat list and runs ``ffmpeg -f concat -safe 0 -i list -c copy -movflags +faststart``
into ``<folder>/.playback`` (temporary name, renamed into place; reused while the same segments are
asked for again). The file is served with HTTP range requests, so a plain ``<video>`` seeks in it
and plays at 1×/2×/4× (``playbackRate``); the same file with ``Content-Disposition: attachment``
is the clip download.

Public: ``RangeMp4``, ``range_mp4``, ``segments_in``, ``parse_time``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from vmesh.errors import InvalidInput, NotFound, VmeshError
from vmesh.recording.models import Segment
from vmesh.storage.db import Database

MAX_RANGE_SECONDS = 6 * 3600


@dataclass(frozen=True)
class RangeMp4:
    path: Path
    start: float
    end: float
    segments: int


def parse_time(field: str, value: str | None) -> float:
    """Unix seconds or an ISO 8601 time (with offset; a naive one is the node's local time)."""
    if value is None or value == "":
        raise InvalidInput.one(field, "is required (Unix seconds or ISO 8601)")
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidInput.one(field, "must be Unix seconds or ISO 8601", value) from None


def check_range(start: float, end: float, limit: float = MAX_RANGE_SECONDS) -> None:
    if end <= start:
        raise InvalidInput.one("end", "must be after start", end)
    if end - start > limit:
        raise InvalidInput.one("end", f"a range is at most {limit / 3600:g} hours", end - start)


async def segments_in(
    db: Database, code: str, start: float, end: float
) -> list[tuple[float, float, str]]:
    async with db.sessions() as s:
        rows = (
            await s.execute(
                select(Segment.start_at, Segment.end_at, Segment.path)
                .where(
                    Segment.camera_code == code,
                    Segment.end_at > start,
                    Segment.start_at < end,
                )
                .order_by(Segment.start_at)
            )
        ).all()
    return [(a, b, p) for a, b, p in rows]


async def range_mp4(
    db: Database, folder: Path, code: str, start: float, end: float, ffmpeg: str = "ffmpeg"
) -> RangeMp4:
    check_range(start, end)
    segs = await segments_in(db, code, start, end)
    if not segs:
        raise NotFound(f"camera {code} has no recording between {start:.0f} and {end:.0f}")
    key = hashlib.sha256("\n".join(p for _, _, p in segs).encode()).hexdigest()[:24]
    cache = folder / ".playback"
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{code}-{key}.mp4"
    result = RangeMp4(out, segs[0][0], segs[-1][1], len(segs))
    if out.is_file():
        return result
    listing = cache / f"{code}-{key}.txt"
    listing.write_text(
        "".join(f"file '{(folder / p).as_posix()}'\n" for _, _, p in segs), encoding="utf-8"
    )
    tmp = cache / f".{code}-{key}.{os.getpid()}.tmp.mp4"
    proc = await asyncio.create_subprocess_exec(
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "concat", "-safe", "0", "-i", str(listing),
        "-map", "0", "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(tmp),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    listing.unlink(missing_ok=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise VmeshError(f"joining {len(segs)} segments failed: {err.decode()[-300:]}")
    os.replace(tmp, out)
    _trim_cache(cache)
    return result


def _trim_cache(cache: Path, keep: int = 20) -> None:
    files = sorted(cache.glob("*.mp4"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)
