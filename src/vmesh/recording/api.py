"""HTTP API of recording, playback, snapshots and camera health.

    GET  /api/recordings                              plans of cameras in scope, with state
    GET  /api/recordings/{code}/plan                  {"camera_code","mode","retention_days",
                                                       "schedule":[{"days":[0..6],"start":"HH:MM",
                                                       "end":"HH:MM"}], "state"}
    PUT  /api/recordings/{code}/plan                  admin/operator in scope; audited
                                                      ``recording.plan``
    GET  /api/recordings/{code}/timeline?start=&end=  {"spans":[{"start","end"}],"gaps":[...],
                                                       "hours":[{"start","seconds"}],
                                                       "recorded_seconds"}
    GET  /api/recordings/{code}/play.mp4?start=&end=  the range as one MP4 (range requests);
                                                      header X-Vmesh-Start: its first second
    GET  /api/recordings/{code}/clip.mp4?start=&end=  the same as a download (audited
                                                      ``recording.clip``)
    POST /api/recordings/retention                    admin: one retention pass now
    GET  /api/cameras/{code}/snapshot.jpg             a JPEG of the live picture
    GET  /api/camera-health/online-rate?kind=region|department&class=&start=&end=&format=csv
    POST /api/camera-health/sample                    admin: sample the online rate now

Times are Unix seconds or ISO 8601. Every request is authorised by
``vmesh.recording.access.authorise_playback`` (scope today, grants later) and playbacks, clips
and snapshots are audited with the camera code and range.

Public: ``router``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import select

from vmesh.auth.deps import current_principal, require_roles
from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import Conflict, InvalidInput
from vmesh.node.context import NodeContext
from vmesh.recording import timeline
from vmesh.recording.access import Playable, authorise_playback
from vmesh.recording.health import CLASSES, as_csv, online_rate, sample_health
from vmesh.recording.models import RecordingPlan
from vmesh.recording.plans import parse_plan
from vmesh.recording.playback import check_range, parse_time, range_mp4, segments_in
from vmesh.recording.snapshot import SNAPSHOT_HOLDER, jpeg_from_gop

router = APIRouter(tags=["recording"])
_WRITE = require_roles("operator")
_ADMIN = require_roles("admin")


def _ctx(request: Request) -> NodeContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _service(ctx: NodeContext) -> Any:
    svc = getattr(ctx, "recording", None)
    if svc is None:
        raise Conflict("recording is not enabled on this node ([recording] enabled)")
    return svc


def _local(cam: Playable) -> None:
    if cam.origin_node is not None:
        raise Conflict(
            f"camera {cam.code} is recorded at node {cam.origin_node}; "
            "playback across nodes is not available yet"
        )


@router.get("/recordings")
async def list_plans(request: Request, who: Principal = Depends(current_principal)) -> Any:  # noqa: B008
    ctx = _ctx(request)
    async with ctx.db.sessions() as s:
        rows = (
            await s.execute(
                select(RecordingPlan, Entry.name, Entry.path).join(
                    Entry, Entry.code == RecordingPlan.camera_code
                )
            )
        ).all()
    svc = getattr(ctx, "recording", None)
    out = []
    for p, name, path in rows:
        if not who.covers(path):
            continue
        out.append(
            {
                "camera_code": p.camera_code,
                "name": name,
                "mode": p.mode,
                "retention_days": p.retention_days,
                "schedule": json.loads(p.schedule or "[]"),
                "state": svc.state_of(p.camera_code) if svc is not None else "disabled",
            }
        )
    return {"items": out}


@router.get("/recordings/{code}/plan")
async def get_plan(code: str, request: Request, who: Principal = Depends(current_principal)) -> Any:  # noqa: B008
    ctx = _ctx(request)
    cam = await authorise_playback(ctx, who, code, "recording.plan")
    _local(cam)
    async with ctx.db.sessions() as s:
        p = await s.get(RecordingPlan, code)
    svc = getattr(ctx, "recording", None)
    state = svc.state_of(code) if svc is not None else "disabled"
    if p is None:
        days = ctx.config.recording.retention_days
        return {"camera_code": code, "mode": "off", "retention_days": days, "schedule": [],
                "state": state}  # fmt: skip
    return {"camera_code": code, "mode": p.mode, "retention_days": p.retention_days,
            "schedule": json.loads(p.schedule or "[]"), "state": state}  # fmt: skip


@router.put("/recordings/{code}/plan")
async def put_plan(
    code: str,
    request: Request,
    body: dict[str, Any] = Body(...),  # noqa: B008
    who: Principal = Depends(_WRITE),  # noqa: B008
) -> Any:
    ctx = _ctx(request)
    cam = await authorise_playback(ctx, who, code, "recording.plan")
    _local(cam)
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
        row.updated_by = who.username
        row.updated_at = time.time()
        ctx.audit.record(s, who, "recording.plan", code, "ok",
                         {"before": before, "after": plan.as_dict()})  # fmt: skip
    svc = getattr(ctx, "recording", None)
    if svc is not None:
        svc.poke()
    return plan.as_dict()


@router.get("/recordings/{code}/timeline")
async def get_timeline(
    code: str,
    request: Request,
    start: str | None = None,
    end: str | None = None,
    who: Principal = Depends(current_principal),  # noqa: B008
) -> Any:
    ctx = _ctx(request)
    t0, t1 = parse_time("start", start), parse_time("end", end)
    check_range(t0, t1, limit=31 * 86400)
    cam = await authorise_playback(ctx, who, code)
    _local(cam)
    segs = await segments_in(ctx.db, code, t0, t1)
    merged = timeline.spans([(a, b) for a, b, _ in segs])
    clipped = [timeline.Span(max(s.start, t0), min(s.end, t1)) for s in merged]
    return {
        "camera_code": code,
        "start": t0,
        "end": t1,
        "spans": [{"start": s.start, "end": s.end} for s in clipped],
        "gaps": [{"start": g.start, "end": g.end} for g in timeline.gaps(clipped, t0, t1)],
        "hours": [
            {"start": h, "seconds": round(sec, 1)} for h, sec in timeline.hours(clipped, t0, t1)
        ],
        "recorded_seconds": round(sum(s.seconds for s in clipped), 1),
        "segments": len(segs),
    }


async def _range_file(
    request: Request, code: str, start: str | None, end: str | None, who: Principal, action: str
) -> tuple[Any, Any]:
    ctx = _ctx(request)
    t0, t1 = parse_time("start", start), parse_time("end", end)
    check_range(t0, t1)
    cam = await authorise_playback(ctx, who, code, action)
    _local(cam)
    svc = _service(ctx)
    mp4 = await range_mp4(ctx.db, svc.folder, code, t0, t1, svc.ffmpeg)
    detail: dict[str, Any] = {"start": t0, "end": t1, "segments": mp4.segments}
    if cam.grant is not None:
        detail.update(grant=cam.grant, purpose=cam.purpose)
    await ctx.audit.write(who, action, code, "ok", detail)
    return cam, mp4


@router.get("/recordings/{code}/play.mp4")
async def play_mp4(
    code: str,
    request: Request,
    start: str | None = None,
    end: str | None = None,
    who: Principal = Depends(current_principal),  # noqa: B008
) -> Any:
    _, mp4 = await _range_file(request, code, start, end, who, "recording.playback")
    return FileResponse(
        mp4.path,
        media_type="video/mp4",
        headers={
            "X-Vmesh-Start": f"{mp4.start:.3f}",
            "X-Vmesh-End": f"{mp4.end:.3f}",
            "Cache-Control": "private, max-age=60",
        },
    )


@router.get("/recordings/{code}/clip.mp4")
async def clip_mp4(
    code: str,
    request: Request,
    start: str | None = None,
    end: str | None = None,
    who: Principal = Depends(current_principal),  # noqa: B008
) -> Any:
    _, mp4 = await _range_file(request, code, start, end, who, "recording.clip")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(mp4.start))
    return FileResponse(
        mp4.path,
        media_type="video/mp4",
        filename=f"{code}-{stamp}.mp4",
        headers={"X-Vmesh-Start": f"{mp4.start:.3f}", "X-Vmesh-End": f"{mp4.end:.3f}"},
    )


@router.post("/recordings/retention")
async def run_retention(request: Request, who: Principal = Depends(_ADMIN)) -> Any:  # noqa: B008
    svc = _service(_ctx(request))
    return {"deleted": await svc.apply_retention(), "used_bytes": await svc.used_bytes()}


@router.get("/cameras/{code}/snapshot.jpg")
async def snapshot(code: str, request: Request, who: Principal = Depends(current_principal)) -> Any:  # noqa: B008
    ctx = _ctx(request)
    cam = await authorise_playback(ctx, who, code, "camera.snapshot")
    _local(cam)
    media = ctx.media
    if media is None:
        raise Conflict("live video is not enabled on this node ([media] enabled)")
    from vmesh.media.remote import attrs_of
    from vmesh.media.sources import source_from_attrs

    spec = source_from_attrs(code, cam.name, attrs_of(cam.attrs))
    input_id = await media.hold(code, spec, SNAPSHOT_HOLDER)
    try:
        gop: list[bytes] = []
        for _ in range(100):  # a readiness bound: the source's first GOP, at most ~10 s
            gop = media.transport.switch.gop(input_id)
            if gop:
                break
            await asyncio.sleep(0.1)
        if not gop:
            raise Conflict(f"camera {code} sends no picture (no signal)")
        codec = media.transport.switch.snapshot().inputs[input_id].codec.value.lower()
        jpeg = await asyncio.to_thread(jpeg_from_gop, gop, codec)
    finally:
        media.unhold(code, SNAPSHOT_HOLDER)
    await ctx.audit.write(who, "camera.snapshot", code, "ok", {"bytes": len(jpeg)})
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/camera-health/online-rate")
async def get_online_rate(
    request: Request,
    kind: str | None = None,
    camera_class: str = "*",
    start: str | None = None,
    end: str | None = None,
    format: str = "json",
    who: Principal = Depends(current_principal),  # noqa: B008
) -> Any:
    ctx = _ctx(request)
    if kind not in (None, "region", "department"):
        raise InvalidInput.one("kind", "must be region or department", kind)
    if camera_class not in ("*", *CLASSES):
        raise InvalidInput.one("camera_class", "must be *, I, II or III", camera_class)
    if format not in ("json", "csv"):
        raise InvalidInput.one("format", "must be json or csv", format)
    t1 = parse_time("end", end) if end else time.time()
    t0 = parse_time("start", start) if start else t1 - 7 * 86400
    async with ctx.db.sessions() as s:
        orgs = (
            await s.execute(
                select(Entry.code, Entry.path).where(Entry.kind.in_(("region", "department")))
            )
        ).all()
    codes = [c for c, p in orgs if who.covers(p)]
    rows = await online_rate(
        ctx.db, org_kind=kind, org_codes=codes, camera_class=camera_class, start=t0, end=t1
    )
    if format == "csv":
        return Response(
            as_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="online-rate.csv"'},
        )
    return {"items": rows}


@router.post("/camera-health/sample")
async def post_sample(request: Request, who: Principal = Depends(_ADMIN)) -> Any:  # noqa: B008
    return {"rows": await sample_health(_ctx(request).db)}
