"""HTTP routes of grants and access reports.

::

    POST /api/grants  {grantee: unit|department, org?, tags?, codes?, purpose, from, until}
         -> 201 grant (sent to the owner node and stored at both ends)      (operator or viewer)
         decider?: owner (default) | province | <node code above the owner>: where it is decided
    POST /api/grants/direct  {grantee: unit|department, grantee_code, org?, tags?, codes?,
                              purpose, from, until}
         -> 201 grant, approved here (admin or operator at the owner or an ancestor of it whose
            scope covers the cameras); delivered to the grantee's node and the owner
    GET  /api/grants?view=mine|queue|active|all&offset=&limit=  -> Page[grant]
         (queue: applications waiting for this node's decision)
    GET  /api/grants/{id}  -> grant
    POST /api/grants/{id}/decision  {decision: approve|reject, reason, from?, until?}
         -> grant                 (admin or operator at the deciding node, cameras in scope)
    POST /api/grants/{id}/revoke  {reason}  -> grant                      (same as decision)
    GET  /api/grants/report?since=&until=&username=&camera=&grant=&department=&offset=&limit=
         -> Page[{at, user, action, camera, node, grant, purpose, department, result, ...}]
    GET  /api/grants/report/export?<same filters>  -> text/csv (audited as grant.report.export)
    GET  /api/grants/outbox  -> [{grant, version, target_node, attempts, last_error}]   (admin)

A grant is shown with ``state`` (applied, rejected, pending, active, expired, revoked) and
``reason`` (why it cannot be used now). The report is built from the audit rows of uses:
``live.view`` (viewer's node), ``fabric.serve`` (camera's node), ``recording.playback``,
``recording.clip`` and ``camera.snapshot`` (``vmesh.recording``) and ``playback.*``, newest
first, visible as the audit log's rows are (``vmesh.audit.api``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import ColumnElement, and_, or_

from vmesh.api.pagination import Page, PageParams, page_params
from vmesh.audit.api import _visible, audit_page, csv_rows
from vmesh.audit.models import AuditRecord
from vmesh.auth.deps import node_context, require_roles
from vmesh.auth.principal import Principal
from vmesh.errors import Conflict, InvalidInput
from vmesh.grants.models import GrantRow
from vmesh.grants.rules import Status, effective
from vmesh.grants.service import GrantService, why_not
from vmesh.grants.store import _utc, to_wire
from vmesh.node.context import NodeContext

router = APIRouter(tags=["grants"])

Ctx = Annotated[NodeContext, Depends(node_context)]
Applicant = Annotated[Principal, Depends(require_roles("operator", "viewer"))]
Decider = Annotated[Principal, Depends(require_roles("operator"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]

# Uses of a camera: live views (viewer's node), streams served (camera's node), recordings.
USE_ACTIONS = (
    "live.view",
    "fabric.serve",
    "recording.playback",
    "recording.clip",
    "camera.snapshot",
)
REPORT_COLUMNS = (
    "at", "user", "action", "camera", "node", "grant", "purpose", "department", "result",
    "viewer_node", "reason",
)  # fmt: skip


def _service(ctx: NodeContext) -> GrantService:
    svc = getattr(ctx, "grants", None)
    if svc is None:
        raise Conflict("grants are not running on this node")
    return svc  # type: ignore[no-any-return]


def _view(g: GrantRow) -> dict[str, Any]:
    now = datetime.now(UTC)
    d = to_wire(g)
    d["state"] = effective(g.status, _utc(g.valid_from), _utc(g.valid_until), now)
    d["reason"] = why_not(g, now) or ""
    d["tags"] = g.sel_tags.split()
    d["codes"] = g.sel_codes.split()
    return d


@router.post("/grants", status_code=201, summary="Apply for a grant to another unit's cameras")
async def apply_grant(
    p: Applicant, ctx: Ctx, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    return _view(await _service(ctx).apply(p, body))


@router.post(
    "/grants/direct", status_code=201, summary="Grant cameras to another unit directly (decider)"
)
async def grant_direct(
    p: Decider, ctx: Ctx, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    return _view(await _service(ctx).grant_direct(p, body))


@router.get("/grants", summary="Grants known at this node")
async def list_grants(
    p: Applicant,
    ctx: Ctx,
    page: Annotated[PageParams, Depends(page_params)],
    view: Literal["mine", "queue", "active", "all"] = "mine",
) -> Page[dict[str, Any]]:
    svc = _service(ctx)
    here = ctx.config.node.code
    mine = or_(
        GrantRow.applicant_user == p.username,
        and_(
            GrantRow.applicant_node == here,
            GrantRow.grantee_code.in_([p.scope_code, p.department_code or p.scope_code]),
        ),
    )
    operator = p.has("admin", "operator")
    where: list[Any]
    if view == "mine":
        where = [mine]
    elif view == "queue":
        where = [GrantRow.decider_node == here, GrantRow.status == Status.applied.value]
    elif view == "active":
        where = [GrantRow.status == Status.approved.value]
        if not operator:
            where.append(mine)
    else:
        where = [] if operator else [mine]
    if view == "queue" and not operator:
        where.append(mine)
    rows, total = await svc.store.page(where=where, offset=page.offset, limit=page.limit)
    return Page[dict[str, Any]](
        items=[_view(g) for g in rows], total=total, offset=page.offset, limit=page.limit
    )


@router.get("/grants/report", summary="Who watched which camera, when, why, under which grant")
async def access_report(
    p: Decider,
    ctx: Ctx,
    page: Annotated[PageParams, Depends(page_params)],
    since: datetime | None = None,
    until: datetime | None = None,
    username: Annotated[str, Query(max_length=64)] = "",
    camera: Annotated[str, Query(max_length=20, description="camera code prefix")] = "",
    grant: Annotated[str, Query(max_length=16)] = "",
    department: Annotated[str, Query(max_length=20)] = "",
) -> Page[dict[str, Any]]:
    conds = _report_conditions(p, since, until, username, camera, grant, department)
    return Page[dict[str, Any]](**await audit_page(ctx, conds, page, _use))


@router.get(
    "/grants/report/export",
    summary="The access report as CSV, oldest first",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_report(
    p: Decider,
    ctx: Ctx,
    since: datetime | None = None,
    until: datetime | None = None,
    username: Annotated[str, Query(max_length=64)] = "",
    camera: Annotated[str, Query(max_length=20)] = "",
    grant: Annotated[str, Query(max_length=16)] = "",
    department: Annotated[str, Query(max_length=20)] = "",
) -> StreamingResponse:
    conds = _report_conditions(p, since, until, username, camera, grant, department)
    filters = {
        k: v
        for k, v in {
            "since": since.isoformat() if since else "",
            "until": until.isoformat() if until else "",
            "username": username,
            "camera": camera,
            "grant": grant,
            "department": department,
        }.items()
        if v
    }
    await ctx.audit.write(p, "grant.report.export", "", "ok", {"format": "csv"} | filters)

    def render(r: AuditRecord) -> list[Any]:
        u = _use(r)
        return [u[c] if u[c] is not None else "" for c in REPORT_COLUMNS]

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        csv_rows(ctx, conds, REPORT_COLUMNS, render),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="access-{stamp}.csv"'},
    )


def _like(key: str, value: str) -> ColumnElement[bool]:
    # detail is json.dumps(sort_keys=True, ensure_ascii=False) with the default separators.
    needle = json.dumps({key: value}, ensure_ascii=False)[1:-1]
    return AuditRecord.detail.contains(needle, autoescape=True)


def _report_conditions(
    p: Principal,
    since: datetime | None,
    until: datetime | None,
    username: str,
    camera: str,
    grant: str,
    department: str,
) -> list[ColumnElement[bool]]:
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and until <= since:
        raise InvalidInput.one("until", "must be later than since", until.isoformat())
    conds: list[ColumnElement[bool]] = [
        or_(AuditRecord.action.in_(USE_ACTIONS), AuditRecord.action.startswith("playback."))
    ]
    if since is not None:
        conds.append(AuditRecord.at >= since)
    if until is not None:
        conds.append(AuditRecord.at < until)
    if username.strip():
        u = username.strip()
        conds.append(or_(AuditRecord.username == u, _like("user", u)))
    if camera.strip():
        conds.append(AuditRecord.target_code.startswith(camera.strip(), autoescape=True))
    if grant.strip():
        conds.append(_like("grant", grant.strip()))
    if department.strip():
        conds.append(_like("department", department.strip()))
    conds.append(_visible(p))
    return conds


def _use(r: AuditRecord) -> dict[str, Any]:
    try:
        d = json.loads(r.detail or "{}")
    except ValueError:
        d = {}
    if not isinstance(d, dict):
        d = {}
    at = r.at if r.at.tzinfo is not None else r.at.replace(tzinfo=UTC)
    return {
        "at": at.isoformat(),
        "user": d.get("user") or r.username,
        "action": r.action,
        "camera": r.target_code,
        "node": d.get("node") or "",
        "grant": d.get("grant") or "",
        "purpose": d.get("purpose") or "",
        "department": d.get("department") or "",
        "result": r.result,
        "viewer_node": d.get("viewer_node") or "",
        "reason": d.get("reason") or "",
    }


@router.get("/grants/outbox", summary="Grant versions not yet delivered to other nodes (admin)")
async def grant_outbox(p: Admin, ctx: Ctx) -> list[dict[str, Any]]:
    rows = await _service(ctx).store.pending()
    return [
        {
            "grant": o.grant_id,
            "version": o.version,
            "target_node": o.target_node,
            "attempts": o.attempts,
            "last_error": o.last_error,
        }
        for o in rows
    ]


@router.get("/grants/{grant_id}", summary="One grant")
async def get_grant(p: Applicant, ctx: Ctx, grant_id: str) -> dict[str, Any]:
    return _view(await _service(ctx).store.get(grant_id))


@router.post("/grants/{grant_id}/decision", summary="Approve or reject (deciding node)")
async def decide_grant(
    p: Decider, ctx: Ctx, grant_id: str, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    return _view(await _service(ctx).decide(p, grant_id, body))


@router.post("/grants/{grant_id}/revoke", summary="Revoke an approved grant (deciding node)")
async def revoke_grant(
    p: Decider, ctx: Ctx, grant_id: str, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    return _view(await _service(ctx).revoke(p, grant_id, body))
