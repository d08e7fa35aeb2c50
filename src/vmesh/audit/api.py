"""HTTP routes of the audit log: query, CSV export and chain verification.

::

    GET /api/audit?since=&until=&username=&target=&action=&result=&offset=&limit=
        -> Page[{seq, at, username, roles, action, target_code, client_addr, result, detail}]
           newest first                                             (role admin or operator)
    GET /api/audit/export?format=csv&<same filters>  -> text/csv, oldest first, every match
    GET /api/audit/verify  -> {ok, checked, problem, seq}                      (role admin)

Filters: ``since`` (inclusive) and ``until`` (exclusive) are ISO 8601 times (no offset means UTC);
``username`` is exact; ``target`` is a code prefix; ``action`` matches itself and its sub-actions
(``auth`` matches ``auth.login`` and ``auth.token.create``); ``result`` is one of ok, failed,
denied, error.

Who sees what: a row is visible to its own actor, and to callers whose scope contains the row's
target (a directory code; user events carry the user's scope code). Admins also see rows whose
target is not in the directory (logins of unknown names, CLI actions). Exports are audited.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, exists, func, or_, select

from vmesh.api.pagination import Page, PageParams, page_params
from vmesh.audit.models import AuditRecord
from vmesh.auth.deps import node_context, require_roles
from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import InvalidInput
from vmesh.node.context import NodeContext

router = APIRouter(tags=["audit"])

Ctx = Annotated[NodeContext, Depends(node_context)]
Reader = Annotated[Principal, Depends(require_roles("operator"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]

RESULTS = ("ok", "failed", "denied", "error")
# Counting every matching row of a long log is slow; beyond this the total is reported as capped.
COUNT_CAP = 10_000
EXPORT_BATCH = 2_000
CSV_COLUMNS = (
    "seq", "at", "username", "roles", "action", "target_code", "client_addr", "result", "detail",
)  # fmt: skip


class AuditRow(BaseModel):
    seq: int | None
    at: datetime
    username: str
    roles: list[str]
    action: str
    target_code: str
    client_addr: str
    result: str
    detail: dict[str, Any]


class VerifyReport(BaseModel):
    ok: bool
    checked: int
    problem: str
    seq: int | None


class AuditFilter(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    username: str = ""
    target: str = ""
    action: str = ""
    result: str = ""


def audit_filter(
    since: Annotated[datetime | None, Query(description="from this time (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="before this time (exclusive)")] = None,
    username: Annotated[str, Query(max_length=64)] = "",
    target: Annotated[str, Query(max_length=64, description="target code prefix")] = "",
    action: Annotated[str, Query(max_length=64, description="action or its prefix")] = "",
    result: Annotated[str, Query(description="ok, failed, denied or error")] = "",
) -> AuditFilter:
    if result and result not in RESULTS:
        raise InvalidInput.one("result", "must be one of " + ", ".join(RESULTS), result)
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and until <= since:
        raise InvalidInput.one("until", "must be later than since", until.isoformat())
    return AuditFilter(
        since=since,
        until=until,
        username=username.strip(),
        target=target.strip(),
        action=action.strip(),
        result=result,
    )


Filter = Annotated[AuditFilter, Depends(audit_filter)]


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _conditions(f: AuditFilter, p: Principal) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if f.since is not None:
        conds.append(AuditRecord.at >= f.since)
    if f.until is not None:
        conds.append(AuditRecord.at < f.until)
    if f.username:
        conds.append(AuditRecord.username == f.username)
    if f.target:
        conds.append(AuditRecord.target_code.startswith(f.target, autoescape=True))
    if f.action:
        conds.append(
            or_(
                AuditRecord.action == f.action,
                AuditRecord.action.startswith(f.action.rstrip(".") + ".", autoescape=True),
            )
        )
    if f.result:
        conds.append(AuditRecord.result == f.result)
    conds.append(_visible(p))
    return conds


def _visible(p: Principal) -> ColumnElement[bool]:
    in_scope = exists().where(
        Entry.code == AuditRecord.target_code,
        Entry.path.startswith(p.scope_path, autoescape=True),
    )
    visible = [AuditRecord.username == p.username, in_scope]
    if p.has("admin"):
        visible.append(~exists().where(Entry.code == AuditRecord.target_code))
    return or_(*visible)


def _row(r: AuditRecord) -> AuditRow:
    try:
        detail = json.loads(r.detail or "{}")
    except ValueError:
        detail = {"raw": r.detail}
    if not isinstance(detail, dict):
        detail = {"value": detail}
    at = r.at if r.at.tzinfo is not None else r.at.replace(tzinfo=UTC)
    return AuditRow(
        seq=r.seq,
        at=at,
        username=r.username,
        roles=r.roles.split(),
        action=r.action,
        target_code=r.target_code,
        client_addr=r.client_addr,
        result=r.result,
        detail=detail,
    )


@router.get("/audit", summary="Audit rows, newest first (admin or operator)")
async def list_audit(
    p: Reader, ctx: Ctx, f: Filter, page: Annotated[PageParams, Depends(page_params)]
) -> Page[AuditRow]:
    return Page[AuditRow](**await audit_page(ctx, _conditions(f, p), page, _row))


async def audit_page(
    ctx: NodeContext,
    conds: list[ColumnElement[bool]],
    page: PageParams,
    item: Callable[[AuditRecord], Any],
) -> dict[str, Any]:
    """One page of the audit rows matching ``conds``, newest first, as ``Page`` fields:
    ``item(row)`` per row, and the total counted up to ``COUNT_CAP`` (``total_capped`` beyond).
    Shared with the grants' access report (vmesh.grants.api)."""
    where = and_(*conds)
    async with ctx.db.sessions() as s:
        capped = select(AuditRecord.id).where(where).limit(COUNT_CAP + 1).subquery()
        total = await s.scalar(select(func.count()).select_from(capped)) or 0
        rows = (
            await s.scalars(
                select(AuditRecord)
                .where(where)
                .order_by(AuditRecord.id.desc())
                .offset(page.offset)
                .limit(page.limit)
            )
        ).all()
    return {
        "items": [item(r) for r in rows],
        "total": min(total, COUNT_CAP),
        "total_capped": total > COUNT_CAP,
        "offset": page.offset,
        "limit": page.limit,
    }


@router.get(
    "/audit/export",
    summary="Every matching audit row as CSV, oldest first (admin or operator)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_audit(
    p: Reader, ctx: Ctx, f: Filter, format: Literal["csv"] = "csv"
) -> StreamingResponse:
    await ctx.audit.write(p, "audit.export", "", "ok", {"format": format} | _filter_detail(f))

    def render(r: AuditRecord) -> list[Any]:
        row = _row(r)
        return [
            "" if row.seq is None else row.seq,
            row.at.isoformat(),
            row.username,
            " ".join(row.roles),
            row.action,
            row.target_code,
            row.client_addr,
            row.result,
            r.detail,
        ]

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        csv_rows(ctx, _conditions(f, p), CSV_COLUMNS, render),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'},
    )


async def csv_rows(
    ctx: NodeContext,
    conds: list[ColumnElement[bool]],
    columns: tuple[str, ...],
    render: Callable[[AuditRecord], list[Any]],
) -> AsyncIterator[bytes]:
    """Every audit row matching ``conds``, oldest first, as CSV: a BOM (spreadsheets then read
    UTF-8) and ``columns``, then ``render(row)`` per row, read in batches of ``EXPORT_BATCH``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    yield ("\ufeff" + buf.getvalue()).encode("utf-8")
    after = 0
    while True:
        async with ctx.db.sessions() as s:
            chunk = (
                await s.scalars(
                    select(AuditRecord)
                    .where(AuditRecord.id > after, *conds)
                    .order_by(AuditRecord.id)
                    .limit(EXPORT_BATCH)
                )
            ).all()
        if not chunk:
            return
        buf.seek(0)
        buf.truncate()
        for r in chunk:
            writer.writerow(render(r))
        yield buf.getvalue().encode("utf-8")
        after = chunk[-1].id


def _filter_detail(f: AuditFilter) -> dict[str, Any]:
    d = f.model_dump(exclude_defaults=True)
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in d.items()}


@router.get("/audit/verify", summary="Check the audit hash chain and its head anchor (admin)")
async def verify_audit(p: Admin, ctx: Ctx) -> VerifyReport:
    report = await ctx.audit.verify()
    return VerifyReport(
        ok=report.ok, checked=report.checked, problem=report.problem, seq=report.seq
    )
