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
``vmesh.recording.access.authorise_playback`` (scope, or a grant) and playbacks, clips and
snapshots are audited with the camera code and range. A camera recorded at another node (the
catalogue's) is played back through that node (``vmesh.recording.remote``): plan, timeline,
play.mp4 and clip.mp4 answer the same, and so does its snapshot (taken at the camera's node).

Public: ``router``.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import select

from vmesh.auth.deps import current_principal, require_roles
from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import Conflict, Forbidden, InvalidInput
from vmesh.node.context import NodeContext
from vmesh.recording import queries
from vmesh.recording.access import Playable, authorise_playback
from vmesh.recording.health import CLASSES, as_csv, online_rate, sample_health
from vmesh.recording.models import RecordingPlan
from vmesh.recording.playback import check_range, parse_time
from vmesh.recording.remote import RemoteRecordings

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


def _remote(ctx: NodeContext) -> RemoteRecordings:
    return RemoteRecordings(ctx)


@router.get("/recordings/{code}/plan")
async def get_plan(code: str, request: Request, who: Principal = Depends(current_principal)) -> Any:  # noqa: B008
    ctx = _ctx(request)
    cam = await authorise_playback(ctx, who, code, "recording.plan")
    if cam.origin_node is not None:
        return await _remote(ctx).call(cam, who, "plan")
    return await queries.plan_body(ctx, code)


@router.put("/recordings/{code}/plan")
async def put_plan(
    code: str,
    request: Request,
    body: dict[str, Any] = Body(...),  # noqa: B008
    who: Principal = Depends(_WRITE),  # noqa: B008
) -> Any:
    ctx = _ctx(request)
    cam = await authorise_playback(ctx, who, code, "recording.plan")
    if cam.grant is not None:
        raise Forbidden(
            f"grant {cam.grant} allows playback of camera {code}, not changing its plan"
        )
    if cam.origin_node is not None:
        return await _remote(ctx).call(cam, who, "set_plan", plan=body)
    return await queries.save_plan(ctx, who, code, body)


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
    if cam.origin_node is not None:
        return await _remote(ctx).call(cam, who, "timeline", start=t0, end=t1)
    return await queries.timeline_body(ctx, code, t0, t1)


def _range_headers(code: str, action: str, start: float, end: float) -> dict[str, str]:
    """The range's bounds, and how the browser keeps it: played (cached a minute) or saved (an
    attachment named after the camera and its start)."""
    headers = {"X-Vmesh-Start": f"{start:.3f}", "X-Vmesh-End": f"{end:.3f}"}
    if action == "recording.clip":
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(start))
        headers["Content-Disposition"] = f'attachment; filename="{code}-{stamp}.mp4"'
    else:
        headers["Cache-Control"] = "private, max-age=60"
    return headers


def _grant_detail(cam: Playable) -> dict[str, Any]:
    """The grant a view relied on and its purpose, for the audit row (empty when in scope)."""
    return {} if cam.grant is None else {"grant": cam.grant, "purpose": cam.purpose}


async def _range_file(
    request: Request, code: str, start: str | None, end: str | None, who: Principal, action: str
) -> Response:
    """The MP4 of the range: a local file, or, for a camera of another node, streamed through
    from there (range requests preserved)."""
    ctx = _ctx(request)
    t0, t1 = parse_time("start", start), parse_time("end", end)
    check_range(t0, t1)
    cam = await authorise_playback(ctx, who, code, action)
    detail = _grant_detail(cam)
    if cam.origin_node is None:
        mp4 = await queries.serve_range(ctx, who, code, t0, t1, action, detail)
        headers = _range_headers(code, action, mp4.start, mp4.end)
        return FileResponse(str(mp4.path), media_type="video/mp4", headers=headers)
    remote = _remote(ctx)
    f = await remote.open(cam, who, t0, t1, action)
    detail.update(node=f.node)
    await ctx.audit.write(who, action, code, "ok",
                          {"start": t0, "end": t1, "segments": f.segments} | detail)  # fmt: skip
    headers = _range_headers(code, action, f.start, f.end)
    return await remote.response(f, request.headers.get("range"), headers)


@router.get("/recordings/{code}/play.mp4")
async def play_mp4(
    code: str,
    request: Request,
    start: str | None = None,
    end: str | None = None,
    who: Principal = Depends(current_principal),  # noqa: B008
) -> Any:
    return await _range_file(request, code, start, end, who, "recording.playback")


@router.get("/recordings/{code}/clip.mp4")
async def clip_mp4(
    code: str,
    request: Request,
    start: str | None = None,
    end: str | None = None,
    who: Principal = Depends(current_principal),  # noqa: B008
) -> Any:
    return await _range_file(request, code, start, end, who, "recording.clip")


@router.post("/recordings/retention")
async def run_retention(request: Request, who: Principal = Depends(_ADMIN)) -> Any:  # noqa: B008
    svc = _service(_ctx(request))
    return {"deleted": await svc.apply_retention(), "used_bytes": await svc.used_bytes()}


@router.get("/cameras/{code}/snapshot.jpg")
async def snapshot(code: str, request: Request, who: Principal = Depends(current_principal)) -> Any:  # noqa: B008
    ctx = _ctx(request)
    cam = await authorise_playback(ctx, who, code, "camera.snapshot")
    detail = _grant_detail(cam)
    if cam.origin_node is not None:
        reply = await _remote(ctx).call(cam, who, "snapshot")
        jpeg = base64.b64decode(reply["jpeg"])
        detail["node"] = cam.origin_node
    else:
        jpeg = await queries.snapshot_jpeg(ctx, code, cam.name, cam.attrs)
    await ctx.audit.write(who, "camera.snapshot", code, "ok", {"bytes": len(jpeg)} | detail)
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
