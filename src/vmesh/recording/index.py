"""The segment index: complete MP4 files on disk and their rows, kept consistent.

Layout under the recordings folder::

    <folder>/<camera>/.incoming/<YYYYmmddTHHMMSS>.mp4     ffmpeg writes here (not yet indexed)
    <folder>/<camera>/<YYYY-MM-DD>/<HH>/<YYYYmmddTHHMMSS>.mp4   complete and indexed

A segment is indexed only once ffmpeg has moved on to the next one and ``ffprobe`` reads its
duration: then it is renamed into the dated folder and its row (camera, start, end, duration,
bytes, path) inserted. Its end is the file's modification time (ffmpeg writes the MP4 index when it
closes the segment, i.e. at its end in wall-clock time) and its start the end minus the duration.

``reconcile`` runs at start-up, before any recorder: files in ``.incoming`` that ffprobe reads are
indexed (complete segments a crash kept from being indexed), the others (the segment being written
when the node died: an MP4 without its index) are deleted; dated files without a row are indexed
the same way; rows whose file is gone are removed.

Public: ``probe_duration``, ``finalize``, ``reconcile``, ``ReconcileReport``, ``INCOMING``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

from vmesh.recording.models import Segment
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

INCOMING = ".incoming"


async def probe_duration(path: Path, ffprobe: str = "ffprobe") -> float | None:
    """The file's duration in seconds as ffprobe reads it; None when it cannot (partial file)."""
    proc = await asyncio.create_subprocess_exec(
        ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        return None
    try:
        d = float(out.decode().strip())
    except ValueError:
        return None
    return d if d > 0 else None


def dated_path(folder: Path, camera: str, name: str, end: float) -> Path:
    t = time.localtime(end)
    return folder / camera / time.strftime("%Y-%m-%d", t) / time.strftime("%H", t) / name


async def finalize(
    db: Database, folder: Path, camera: str, src: Path, ffprobe: str = "ffprobe"
) -> Segment | None:
    """Index one complete file (rename into place, insert its row); delete it when unreadable."""
    duration = await probe_duration(src, ffprobe)
    if duration is None:
        log.warning("recording camera=%s segment=%s unreadable: deleted", camera, src.name)
        src.unlink(missing_ok=True)  # noqa: ASYNC240 (local disk, small)
        return None
    st = src.stat()  # noqa: ASYNC240 (local disk, small)
    end = st.st_mtime
    dest = src if src.parent.name != INCOMING else dated_path(folder, camera, src.name, end)
    dest.parent.mkdir(parents=True, exist_ok=True)
    rel = str(dest.relative_to(folder))
    seg = Segment(
        camera_code=camera,
        start_at=end - duration,
        end_at=end,
        duration=duration,
        bytes=st.st_size,
        path=rel,
    )
    async with db.transaction() as s:
        if (await s.execute(select(Segment.id).where(Segment.path == rel))).first() is None:
            s.add(seg)
            # Renamed inside the transaction: if the rename fails nothing is inserted; if the
            # commit fails the dated file has no row and the next reconcile indexes it.
            if dest != src:
                os.replace(src, dest)
    return seg


@dataclass
class ReconcileReport:
    indexed: int = 0
    deleted_files: int = 0
    removed_rows: int = 0


async def reconcile(db: Database, folder: Path, ffprobe: str = "ffprobe") -> ReconcileReport:
    """Make disk and index agree (see the module docstring). No recorder may be running."""
    report = ReconcileReport()
    async with db.sessions() as s:
        rows = (await s.execute(select(Segment.id, Segment.path))).all()
    known = {path: id_ for id_, path in rows}
    missing = [id_ for path, id_ in known.items() if not (folder / path).is_file()]
    if missing:
        async with db.transaction() as s:
            for i in range(0, len(missing), 500):
                await s.execute(delete(Segment).where(Segment.id.in_(missing[i : i + 500])))
        report.removed_rows = len(missing)
    if folder.is_dir():  # noqa: ASYNC240 (local disk, small)
        for cam_dir in sorted(p for p in folder.iterdir() if p.is_dir()):  # noqa: ASYNC240 (local disk, small)
            camera = cam_dir.name
            for f in sorted(cam_dir.rglob("*")):
                if f.is_dir():
                    continue
                if f.suffix != ".mp4":
                    f.unlink(missing_ok=True)  # ffmpeg's temporaries, stray files
                    report.deleted_files += 1
                    continue
                rel = str(f.relative_to(folder))
                if rel in known:
                    continue
                seg = await finalize(db, folder, camera, f, ffprobe)
                if seg is None:
                    report.deleted_files += 1
                else:
                    report.indexed += 1
    log.info(
        "recording reconcile indexed=%d deleted_files=%d removed_rows=%d",
        report.indexed, report.deleted_files, report.removed_rows,
    )  # fmt: skip
    return report
