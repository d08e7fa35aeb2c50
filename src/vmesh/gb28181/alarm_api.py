"""HTTP API of GB/T 28181 alarms received by this node (``vmesh.gb28181.alarms``).

    GET /api/gb28181/alarms?since=&until=&device=&channel=&priority=&method=&type=&offset=&limit=
        -> Page[alarm], newest first
    GET /api/gb28181/alarms/{id} -> alarm

An alarm: ``{id, device, channel, channel_name, sn, priority, method, method_name, type,
alarm_time, description, lon, lat, received_at, incident, recording}``; ``recording`` (alarm
plans) is ``{start, end, play, segments: [{start, end}]}`` — ``play`` the range's MP4 under
``/api/recordings`` — or null. ``since``/``until`` are UNIX seconds or ISO 8601 (of
``received_at``). Any logged-in user sees the alarms of channels in their scope (admins also those
of channels not in the directory); an alarm outside it is a 404 as if it did not exist.

Public: ``router``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import ColumnElement, and_, func, or_, select

from vmesh.api.pagination import Page, PageParams, page_params
from vmesh.auth.deps import current_principal, node_context
from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import InvalidInput, NotFound
from vmesh.gb28181.alarms import METHODS, AlarmRow
from vmesh.gb28181.message import ascii_digits
from vmesh.node.context import NodeContext
from vmesh.recording.playback import segments_in

router = APIRouter(prefix="/gb28181", tags=["gb28181"])

Ctx = Annotated[NodeContext, Depends(node_context)]
Anyone = Annotated[Principal, Depends(current_principal)]


def _time(name: str, v: str | None) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise InvalidInput.one(name, "must be UNIX seconds or an ISO 8601 time", v) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _code(name: str, v: str) -> str:
    v = v.strip()
    if v and not (len(v) == 20 and ascii_digits(v)):
        raise InvalidInput.one(name, "must be a 20-digit code", v)
    return v


def _scoped(p: Principal) -> ColumnElement[bool]:
    in_scope = Entry.path.startswith(p.scope_path)
    return or_(in_scope, Entry.id.is_(None)) if p.has("admin") else in_scope


async def _item(ctx: NodeContext, r: AlarmRow, name: str | None) -> dict[str, Any]:
    rec = None
    if r.record_from is not None and r.record_until is not None:
        segs = await segments_in(ctx.db, r.channel_code, r.record_from, r.record_until)
        rec = {
            "start": r.record_from,
            "end": r.record_until,
            "play": f"/api/recordings/{r.channel_code}/play.mp4"
            f"?start={r.record_from:.0f}&end={r.record_until:.0f}",
            "segments": [{"start": a, "end": b} for a, b, _ in segs],
        }
    return {
        "id": r.id,
        "device": r.device_code,
        "channel": r.channel_code,
        "channel_name": name,
        "sn": r.sn,
        "priority": r.priority,
        "method": r.method,
        "method_name": METHODS.get(r.method, ""),
        "type": r.alarm_type,
        "alarm_time": r.alarm_time,
        "description": r.description,
        "lon": r.lon,
        "lat": r.lat,
        "received_at": r.received_at,
        "incident": r.incident_id,
        "recording": rec,
    }


def _base() -> Any:
    return select(AlarmRow, Entry.name).outerjoin(Entry, Entry.code == AlarmRow.channel_code)


@router.get("/alarms", response_model=Page[dict[str, Any]])
async def list_alarms(
    p: Anyone,
    ctx: Ctx,
    page: Annotated[PageParams, Depends(page_params)],
    since: Annotated[str | None, Query(description="received from (UNIX s or ISO 8601)")] = None,
    until: Annotated[str | None, Query(description="received before (exclusive)")] = None,
    device: Annotated[str, Query(max_length=20)] = "",
    channel: Annotated[str, Query(max_length=20)] = "",
    priority: Annotated[int | None, Query(ge=1, le=4)] = None,
    method: Annotated[int | None, Query(ge=1, le=7)] = None,
    type: Annotated[str, Query(max_length=8, description="Info.AlarmType")] = "",
) -> dict[str, Any]:
    t0, t1 = _time("since", since), _time("until", until)
    if t0 is not None and t1 is not None and t1 <= t0:
        raise InvalidInput.one("until", "must be later than since", until)
    conds = [_scoped(p)]
    if t0 is not None:
        conds.append(AlarmRow.received_at >= t0)
    if t1 is not None:
        conds.append(AlarmRow.received_at < t1)
    if d := _code("device", device):
        conds.append(AlarmRow.device_code == d)
    if c := _code("channel", channel):
        conds.append(AlarmRow.channel_code == c)
    if priority is not None:
        conds.append(AlarmRow.priority == priority)
    if method is not None:
        conds.append(AlarmRow.method == method)
    if type:
        conds.append(AlarmRow.alarm_type == type)
    where = and_(*conds)
    async with ctx.db.sessions() as s:
        total = await s.scalar(
            select(func.count())
            .select_from(AlarmRow)
            .outerjoin(Entry, Entry.code == AlarmRow.channel_code)
            .where(where)
        )
        rows = (
            await s.execute(
                _base()
                .where(where)
                .order_by(AlarmRow.received_at.desc(), AlarmRow.id.desc())
                .offset(page.offset)
                .limit(page.limit)
            )
        ).all()
    return {
        "items": [await _item(ctx, r, name) for r, name in rows],
        "total": total or 0,
        "offset": page.offset,
        "limit": page.limit,
    }


@router.get("/alarms/{alarm_id}")
async def get_alarm(alarm_id: int, p: Anyone, ctx: Ctx) -> dict[str, Any]:
    async with ctx.db.sessions() as s:
        found = (await s.execute(_base().where(AlarmRow.id == alarm_id, _scoped(p)))).first()
    if found is None:
        raise NotFound(f"no alarm {alarm_id}")
    return await _item(ctx, found[0], found[1])
