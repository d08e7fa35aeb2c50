"""What the HTTP API and the cross-node RPC (``vmesh.recording.remote``) both answer about one of
this node's cameras: its plan (read, and written with its audit row), its timeline, and a range of
it as one MP4 (``range_mp4``, audited). One implementation, two callers: a request from a user of
this node, or one relayed by a viewer's node for one of its users. Also a JPEG of the camera's live
picture (``snapshot_jpeg``), for the same two callers.

Public: ``plan_body``, ``save_plan``, ``timeline_body``, ``alarm_marks``, ``serve_range``,
``snapshot_jpeg``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from sqlalchemy import select

from vmesh.audit.log import Actor
from vmesh.auth.principal import Principal
from vmesh.errors import Conflict
from vmesh.gb28181.alarms import AlarmRow
from vmesh.node.context import NodeContext
from vmesh.recording import timeline
from vmesh.recording.models import RecordingPlan
from vmesh.recording.plans import DEFAULT_POST_ALARM_SECONDS, parse_plan
from vmesh.recording.playback import RangeMp4, range_mp4, segments_in


def _state(ctx: NodeContext, code: str) -> str:
    svc = getattr(ctx, "recording", None)
    return svc.state_of(code) if svc is not None else "disabled"


async def plan_body(ctx: NodeContext, code: str) -> dict[str, Any]:
    """The camera's plan (``off`` with the default retention when it has none) and its state."""
    async with ctx.db.sessions() as s:
        p = await s.get(RecordingPlan, code)
    if p is None:
        days = ctx.config.recording.retention_days
        return {"camera_code": code, "mode": "off", "retention_days": days, "schedule": [],
                "state": _state(ctx, code)}  # fmt: skip
    return {"camera_code": code, "mode": p.mode, "retention_days": p.retention_days,
            "schedule": json.loads(p.schedule or "[]"), "state": _state(ctx, code),
            "post_alarm_seconds": p.post_alarm_seconds or DEFAULT_POST_ALARM_SECONDS}  # fmt: skip


async def save_plan(
    ctx: NodeContext, who: Principal | Actor, code: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Validate and store ``code``'s plan (``InvalidInput`` naming every wrong field, nothing
    written), audited ``recording.plan`` with before/after in the same transaction."""
    plan = parse_plan(code, body, ctx.config.recording.retention_days)
    async with ctx.audit.transaction() as s:
        row = await s.get(RecordingPlan, code)
        before = None if row is None else {"mode": row.mode, "retention_days": row.retention_days}
        if row is None:
            row = RecordingPlan(camera_code=code)
            s.add(row)
        row.mode = plan.mode
        row.retention_days = plan.retention_days
        row.schedule = json.dumps(plan.schedule_json())
        row.post_alarm_seconds = plan.post_alarm_seconds
        row.updated_by = who.username
        row.updated_at = time.time()
        ctx.audit.record(s, who, "recording.plan", code, "ok",
                         {"before": before, "after": plan.as_dict()})  # fmt: skip
    svc = getattr(ctx, "recording", None)
    if svc is not None:
        svc.poke()
    return plan.as_dict()


async def timeline_body(ctx: NodeContext, code: str, t0: float, t1: float) -> dict[str, Any]:
    """Spans, gaps, recorded seconds per hour and alarm marks of ``[t0, t1)``."""
    segs = await segments_in(ctx.db, code, t0, t1)
    merged = timeline.spans([(a, b) for a, b, _ in segs])
    return {
        "camera_code": code,
        **timeline.body(merged, t0, t1),
        "segments": len(segs),
        "alarms": await alarm_marks(ctx, code, t0, t1),
    }


async def alarm_marks(ctx: NodeContext, code: str, t0: float, t1: float) -> list[dict[str, Any]]:
    """The camera's GB/T 28181 alarms received in ``[t0, t1)`` (``vmesh.gb28181.alarms``): the
    timeline's alarm marks."""
    async with ctx.db.sessions() as s:
        rows = await s.execute(
            select(AlarmRow.id, AlarmRow.received_at, AlarmRow.priority, AlarmRow.description)
            .where(
                AlarmRow.channel_code == code,
                AlarmRow.received_at >= t0,
                AlarmRow.received_at < t1,
            )
            .order_by(AlarmRow.received_at)
        )
        return [{"id": i, "at": at, "priority": p, "description": d} for i, at, p, d in rows.all()]


async def serve_range(
    ctx: NodeContext,
    who: Principal | Actor,
    code: str,
    t0: float,
    t1: float,
    action: str,
    detail: dict[str, Any],
) -> RangeMp4:
    """``[t0, t1)`` of this node's camera ``code`` as one MP4, audited ``action`` with the range,
    the segments and ``detail`` (grant, purpose, viewer node)."""
    svc = getattr(ctx, "recording", None)
    if svc is None:
        raise Conflict("recording is not enabled on this node ([recording] enabled)")
    mp4 = await range_mp4(ctx.db, svc.folder, code, t0, t1, svc.ffmpeg)
    full = {"start": t0, "end": t1, "segments": mp4.segments} | detail
    await ctx.audit.write(who, action, code, "ok", full)
    return mp4


async def snapshot_jpeg(ctx: NodeContext, code: str, name: str, attrs: str) -> bytes:
    """A JPEG of camera ``code``'s live picture: its source is held (``SNAPSHOT_HOLDER``) until
    the switch has cached a GOP, which PyAV decodes; then the source lingers out as after a
    viewer. ``Conflict`` when video is off on this node or the camera sends no picture."""
    from vmesh.media.remote import attrs_of
    from vmesh.media.sources import source_from_attrs
    from vmesh.recording.snapshot import SNAPSHOT_HOLDER, jpeg_from_gop

    media = ctx.media
    if media is None:
        raise Conflict("live video is not enabled on this node ([media] enabled)")
    spec = source_from_attrs(code, name, attrs_of(attrs))
    input_id = await media.hold(code, spec, SNAPSHOT_HOLDER)
    try:
        undecodable: Conflict | None = None
        for _ in range(100):  # a readiness bound: a decodable GOP, at most ~10 s
            gop = media.transport.switch.gop(input_id)
            if gop:
                codec = media.transport.switch.snapshot().inputs[input_id].codec.value.lower()
                try:
                    return await asyncio.to_thread(jpeg_from_gop, gop, codec)
                except Conflict as e:  # e.g. the keyframe's packets not all in yet: try again
                    undecodable = e
            await asyncio.sleep(0.1)
        raise undecodable or Conflict(f"camera {code} sends no picture (no signal)")
    finally:
        media.unhold(code, SNAPSHOT_HOLDER)
