"""``RecordingService``: the node's recorders, segment index, retention and health sampling.

Start order (``start``): ``reconcile`` the recordings folder with the index (nothing half-written
survives a crash), then one task that, every second, starts a ``Recorder`` for each camera of this
node's directory whose plan says it records now and stops the others, and indexes the segments
they completed; every ``retention_interval_seconds`` it applies retention (by age, then by disk
pressure: ``vmesh.recording.retention``), deleting files and rows and writing one audit row
``recording.retention`` summarising what went; every ``health_sample_seconds`` it samples the
online rate (``vmesh.recording.health``). ``stop`` stops the recorders (each closes and indexes
its last segment). ``on_alarm`` (a GB/T 28181 alarm, ``vmesh.gb28181.alarms``) opens a camera's
alarm window when its plan is ``alarm``: it records until the window ends (at least the plan's
post-alarm seconds after its recorder started), then stops.

May call: ``vmesh.media.service.MediaService`` (hold/unhold sources, switch outputs), the
database, the audit log. Public: ``RecordingService``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from vmesh.audit.log import Actor, AuditLog
from vmesh.config import RecordingConfig
from vmesh.directory.models import Entry
from vmesh.media.remote import attrs_of
from vmesh.media.sources import source_from_attrs
from vmesh.node.wakeup import woken
from vmesh.recording import retention
from vmesh.recording.health import sample_health
from vmesh.recording.index import reconcile
from vmesh.recording.models import RecordingPlan, Segment
from vmesh.recording.plans import Plan, alarm_window, plan_from_row
from vmesh.recording.recorder import Recorder
from vmesh.storage.db import Database

if TYPE_CHECKING:
    from vmesh.media.service import MediaService

log = logging.getLogger(__name__)

SYSTEM = Actor("system:recording")
# An alarm's recording is linked from this many seconds before it (the GOP replayed at start).
ALARM_LOOKBACK_SECONDS = 10.0


class RecordingService:
    """See the module docstring."""

    def __init__(
        self,
        config: RecordingConfig,
        data_dir: Path,
        db: Database,
        audit: AuditLog,
        media: MediaService | None,
        *,
        ffmpeg: str = "ffmpeg",
        ffprobe: str = "ffprobe",
    ) -> None:
        self.config = config
        self.folder = (Path(config.folder) if config.folder else data_dir / "recordings").resolve()
        self.db = db
        self.audit = audit
        self.media = media
        self.ffmpeg = ffmpeg
        self.ffprobe = ffprobe
        self.recorders: dict[str, Recorder] = {}
        self.failures: dict[str, str] = {}
        # Alarm plans: camera → UNIX time its alarm window ends (``on_alarm``).
        self.alarm_until: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / ".playback").mkdir(exist_ok=True)
        for old in (self.folder / ".playback").iterdir():
            old.unlink(missing_ok=True)
        await reconcile(self.db, self.folder, self.ffprobe)
        self._task = asyncio.create_task(self._run(), name="recording")
        log.info("recording started folder=%s", self.folder)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for rec in list(self.recorders.values()):
            await rec.stop()
        self.recorders.clear()
        log.info("recording stopped")

    def poke(self) -> None:
        """Re-read the plans now (after a plan was changed)."""
        self._wake.set()

    async def _run(self) -> None:
        next_retention = time.monotonic() + self.config.retention_interval_seconds
        next_health = time.monotonic() + min(5.0, self.config.health_sample_seconds)
        while True:
            try:
                await self._apply_plans()
                for rec in list(self.recorders.values()):
                    await rec.collect()
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + self.config.retention_interval_seconds
                    await self.apply_retention()
                if time.monotonic() >= next_health:
                    next_health = time.monotonic() + self.config.health_sample_seconds
                    await sample_health(self.db)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording pass failed")
            self._wake.clear()
            await woken(self._wake, 1.0)

    # --- plans ----------------------------------------------------------------------------------

    async def plans(self) -> dict[str, Plan]:
        async with self.db.sessions() as s:
            rows = (await s.execute(select(RecordingPlan))).scalars().all()
        return {
            r.camera_code: plan_from_row(
                r.camera_code, r.mode, json.loads(r.schedule or "[]"), r.retention_days,
                r.post_alarm_seconds,
            )
            for r in rows
        }  # fmt: skip

    async def on_alarm(self, code: str, at: float) -> tuple[float, float] | None:
        """An alarm on camera ``code`` at ``at`` (UNIX seconds): with an alarm plan, record it
        until ``at`` + the plan's post-alarm seconds (a later alarm extends the window); the
        span to link to the alarm (from the GOP's seconds before it), else None."""
        until = alarm_window((await self.plans()).get(code), at, self.alarm_until.get(code))
        if until is None:
            return None
        self.alarm_until[code] = until
        self.poke()
        log.info("recording camera=%s alarm: recording until %.0f", code, until)
        return at - ALARM_LOOKBACK_SECONDS, until

    async def _apply_plans(self) -> None:
        if self.media is None:
            return
        now = datetime.now()
        plans = await self.plans()
        wanted = {c for c, p in plans.items() if p.records_at(now)}
        for c, until in list(self.alarm_until.items()):  # alarm plans: inside an alarm's window
            if until <= time.time() or c not in plans or plans[c].mode != "alarm":
                del self.alarm_until[c]
            else:
                wanted.add(c)
        for code in list(self.recorders):
            if code not in wanted:
                # stopped before it leaves the dict: if the node stops meanwhile, stop() finishes it
                await self.recorders[code].stop()
                del self.recorders[code]
        missing = wanted - set(self.recorders)
        if not missing:
            return
        async with self.db.sessions() as s:
            rows = (
                await s.execute(
                    select(Entry.code, Entry.name, Entry.kind, Entry.attrs).where(
                        Entry.code.in_(sorted(missing))
                    )
                )
            ).all()
        for code, name, kind, raw in rows:
            if kind != "camera":
                continue
            try:
                spec = source_from_attrs(code, name, attrs_of(raw))
                rec = Recorder(
                    code, spec, self.media, self.db, self.folder,
                    segment_seconds=self.config.segment_seconds,
                    stall_seconds=self.config.stall_seconds,
                    ffmpeg=self.ffmpeg, ffprobe=self.ffprobe,
                )  # fmt: skip
                await rec.start()
            except Exception as e:
                if self.failures.get(code) != str(e):
                    log.warning("recording camera=%s not started: %s", code, e)
                self.failures[code] = str(e)
                continue
            self.failures.pop(code, None)
            self.recorders[code] = rec
            if code in self.alarm_until:  # the post-alarm seconds count from the recorder's start
                post = plans[code].post_alarm_seconds
                self.alarm_until[code] = max(self.alarm_until[code], time.time() + post)

    def state_of(self, code: str) -> str:
        rec = self.recorders.get(code)
        if rec is not None:
            return rec.state
        if code in self.failures:
            return f"error: {self.failures[code]}"
        return "idle"

    # --- retention ------------------------------------------------------------------------------

    async def apply_retention(self, now: float | None = None) -> dict[str, Any]:
        """One retention pass; returns (and audits, when anything went) what was deleted."""
        now = time.time() if now is None else now
        days_of = {c: p.retention_days for c, p in (await self.plans()).items()}
        async with self.db.sessions() as s:
            rows = (
                await s.execute(
                    select(
                        Segment.id, Segment.camera_code, Segment.start_at, Segment.end_at,
                        Segment.bytes,
                    ).order_by(Segment.start_at)
                )
            ).all()  # fmt: skip
        segs = [retention.SegmentInfo(*r) for r in rows]
        old = retention.expired(segs, now, days_of, self.config.retention_days)
        gone = {s.id for s in old}
        left = [s for s in segs if s.id not in gone]
        used = sum(s.bytes for s in left)
        du = shutil.disk_usage(self.folder)
        pressure = retention.for_pressure(
            left, used, self.config.max_bytes, du.free, du.total, self.config.min_free_percent
        )
        summary: dict[str, Any] = {}
        for reason, chosen in (("age", old), ("disk", pressure)):
            if not chosen:
                continue
            freed = await self._delete(chosen)
            summary[reason] = {
                "segments": len(chosen),
                "bytes": freed,
                "cameras": sorted({s.camera_code for s in chosen}),
                "oldest": min(s.start_at for s in chosen),
                "newest": max(s.end_at for s in chosen),
            }
        if summary:
            await self.audit.write(SYSTEM, "recording.retention", "", "ok", summary)
            log.info("recording retention %s", summary)
        return summary

    async def _delete(self, chosen: list[retention.SegmentInfo]) -> int:
        """Delete files, then rows (a crash in between leaves rows reconcile removes)."""
        ids = [s.id for s in chosen]
        async with self.db.sessions() as s:
            paths = dict(
                (await s.execute(select(Segment.id, Segment.path).where(Segment.id.in_(ids)))).all()
            )
        freed = 0
        for id_ in ids:
            p = self.folder / paths.get(id_, "")
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                freed += p.stat().st_size
                os.unlink(p)
        async with self.db.transaction() as s:
            for i in range(0, len(ids), 500):
                await s.execute(delete(Segment).where(Segment.id.in_(ids[i : i + 500])))
        return freed

    async def used_bytes(self) -> int:
        async with self.db.sessions() as s:
            return int(
                (await s.execute(select(func.coalesce(func.sum(Segment.bytes), 0)))).scalar()
            )
