"""Conference HTTP API under ``/api/conferences`` and the venue/chair WebSocket.

Creating needs role ``chair`` (or ``admin``); starting, ending and chair actions need to be one of
the conference's chairs (or an admin); reading needs to chair it or to have one of its venues in
scope (otherwise 404, as the directory answers). Every change is audited (``conference.create``,
``conference.start``, ``conference.end``, ``conference.<action>``), refusals too.

    POST /api/conferences {title, main, venues[], chairs[], starts_at?, layout?, recording?}
                                                       -> 201 ConferenceOut
    GET  /api/conferences?status=active                -> Page[ConferenceOut]
    GET  /api/conferences/{id}                         -> ConferenceOut (+ live state)
    POST /api/conferences/{id}/start | /end            -> ConferenceOut
    POST /api/conferences/{id}/actions {action, venue?, venues?, seconds?, layout?, locked?}
                                                       -> the live state
    GET  /api/conferences/{id}/attendance              -> [AttendanceOut]
    GET  /api/conferences/{id}/recordings              -> [RecordingOut] (the programme's MP4s)
    GET  /api/conferences/{id}/recordings/{name}       -> video/mp4 (range requests), audited
    WS   /api/conferences/{id}/ws[?host=<node>]   (another host: relayed, vmesh.conference.relay)

Actions: ``broadcast`` / ``roll_call`` (``venue``, null to stop), ``discussion`` (``venues``, empty
to stop), ``polling`` (``venues``, ``seconds``), ``mute`` / ``unmute`` (``venue``, null: all),
``approve`` / ``lower_hand`` (``venue``), ``remove`` (``venue``), ``layout`` (``layout``),
``lock`` (``locked``).

WebSocket (authenticated like ``/api/live/ws``, same-origin only). The first message says what the
page is::

    -> {"type": "venue", "code": "<venue>"}      a venue's screen
    <- {"type": "layout", "layout": "1+1", "mode": "roll_call", "video": [{tile, code, name}],
        "audio": [{tile, code, name}], "content": {tile: "c", code, name} | null, "muted": false,
        "hand": false, "removed": false, ...}      on every change
    -> publish / unpublish / candidate            tile "pub" (camera) or "content" (screen), as on
                                                  /api/live/ws
    -> {"type": "watch", "tile": "v0" | "a0" | "c"} ... answer / candidate / stop: as on
                                                  /api/live/ws; the node routes the tile
    -> {"type": "hand", "raised": true}           申请发言
    -> {"type": "level", "value": 0.42}           the page's microphone level, shown to chairs

    -> {"type": "chair"}                          a chair's page
    <- {"type": "state", "floor": {...}, "venues": [{code, name, status, muted, hand, level,
        audio_kbps, ...}]}                        on every change and every second
    -> {"type": "watch", "tile": "thumb-0", "code": "<venue>"}   an on-demand thumbnail

Public: ``router``, ``service_of``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from vmesh.api.pagination import Page, PageParams, page_params
from vmesh.api.ws import JsonSocket, ws_principal
from vmesh.auth.deps import current_principal, require_roles
from vmesh.auth.principal import Principal
from vmesh.conference import core
from vmesh.conference.programme import SEGMENT_NAME
from vmesh.conference.relay import RelayedConference, admit_conference_streams, relay
from vmesh.conference.service import (
    ChairPage,
    ConferencePublish,
    ConferenceService,
    LiveConference,
    VenuePage,
)
from vmesh.conference.store import Conference, ConferenceSpec, ConferenceStore
from vmesh.errors import InvalidInput, NotFound, VmeshError
from vmesh.media.publish import mark_presence
from vmesh.media.viewer import Camera, LiveSession
from vmesh.node.context import NodeContext

log = logging.getLogger(__name__)

router = APIRouter(prefix="/conferences", tags=["conferences"])
_NODE_CODE = re.compile(r"^\d{20}$")

Reader = Annotated[Principal, Depends(current_principal)]
Creator = Annotated[Principal, Depends(require_roles("chair"))]


def service_of(ctx: NodeContext) -> ConferenceService:
    """The node's conference service (made on first use; stopped with the node's services)."""
    svc = getattr(ctx, "conferences", None)
    if svc is None:
        store = ConferenceStore(ctx.db, ctx.audit, ctx.config.node.code)
        svc = ConferenceService(store, ctx.audit, ctx.media)
        ctx.conferences = svc
        admit_conference_streams(ctx, svc)  # venues' streams to the other venues' nodes
        bus = ctx.federation.bus if ctx.federation is not None else None
        svc.bus = bus  # hosts push layouts to their venues' nodes
        if bus is not None:  # venues of other nodes report here (ConferenceService.on_rpc)
            svc.rpc = asyncio.get_running_loop().create_task(bus.serve("conference", svc.on_rpc))
    return cast(ConferenceService, svc)


async def _svc(request: Request) -> ConferenceService:  # async: service_of needs the loop
    return service_of(request.app.state.ctx)


Svc = Annotated[ConferenceService, Depends(_svc)]


class ConferenceIn(BaseModel):
    title: str = Field(examples=["全省防汛视频调度会"])
    main: str = Field(examples=["33000000004000000001"], description="the main venue's code")
    venues: list[str] = Field(description="sub-venues' codes (conference terminals, rooms)")
    chairs: list[str] = Field(default=[], description="usernames; empty: the creator")
    starts_at: datetime | None = Field(default=None, description="later: a scheduled conference")
    layout: str = "1+1"
    recording: bool = False


class VenueOut(BaseModel):
    code: str
    name: str
    kind: str
    role: str
    status: str | None = None


class ConferenceOut(BaseModel):
    id: int
    title: str
    host_node: str
    status: str
    main: str
    venues: list[VenueOut]
    chairs: list[str]
    starts_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    recording: bool
    created_by: str
    live: dict[str, Any] | None = None


class ActionIn(BaseModel):
    action: Literal[
        "broadcast",
        "roll_call",
        "discussion",
        "polling",
        "mute",
        "unmute",
        "approve",
        "lower_hand",
        "remove",
        "layout",
        "lock",
    ]
    venue: str | None = None
    venues: list[str] = []
    seconds: float = 10.0
    layout: str | None = None
    locked: bool | None = None


class AttendanceOut(BaseModel):
    venue: str
    joined_at: datetime
    left_at: datetime | None
    reason: str


def _out(c: Conference, lc: LiveConference | None) -> ConferenceOut:
    live = lc.snapshot() if lc is not None else None
    status = {v["code"]: v["status"] for v in live["venues"]} if live else {}
    return ConferenceOut(
        id=c.id,
        title=c.title,
        host_node=c.host_node,
        status=c.status,
        main=c.main,
        venues=[
            VenueOut(code=v.code, name=v.name, kind=v.kind, role=v.role, status=status.get(v.code))
            for v in c.venues
        ],
        chairs=c.chairs,
        starts_at=c.starts_at,
        started_at=c.started_at,
        ended_at=c.ended_at,
        recording=c.recording,
        created_by=c.created_by,
        live=live,
    )


@router.post("", status_code=201, response_model=ConferenceOut)
async def create(body: ConferenceIn, who: Creator, svc: Svc) -> ConferenceOut:
    spec = ConferenceSpec(
        title=body.title,
        main=body.main,
        venues=body.venues,
        chairs=body.chairs or [who.username],
        starts_at=body.starts_at,
        recording=body.recording,
        layout=body.layout,
    )
    c = await svc.store.create(who, spec)
    return _out(c, None)


@router.get("", response_model=Page[ConferenceOut])
async def list_conferences(
    who: Reader,
    svc: Svc,
    page: Annotated[PageParams, Depends(page_params)],
    status: Annotated[Literal["scheduled", "active", "ended"] | None, Query()] = None,
) -> Page[ConferenceOut]:
    items, total = await svc.store.list(who, status, page.offset, page.limit)
    return Page[ConferenceOut](
        items=[_out(c, svc.running_or_none(c.id)) for c in items],
        total=total,
        offset=page.offset,
        limit=page.limit,
    )


@router.get("/{conf_id}", response_model=ConferenceOut)
async def get_conference(conf_id: int, who: Reader, svc: Svc) -> ConferenceOut:
    c = await svc.store.visible(who, conf_id)
    lc = svc.running_or_none(conf_id)
    if lc is None and c.status == "active" and svc.media is not None:
        lc = await svc.live(conf_id)
    return _out(c, lc)


async def _chair_of(svc: ConferenceService, who: Principal, conf_id: int) -> Conference:
    c = await svc.store.visible(who, conf_id)
    if not c.is_chair(who):
        await svc.audit.write(who, "conference.control", c.main, "denied", {"conference": conf_id})
        from vmesh.errors import Forbidden

        raise Forbidden(f"only the chairs of conference {conf_id} may do this")
    return c


@router.post("/{conf_id}/start", response_model=ConferenceOut)
async def start(conf_id: int, who: Reader, svc: Svc) -> ConferenceOut:
    await _chair_of(svc, who, conf_id)
    c = await svc.store.set_status(who, conf_id, "active")
    return _out(c, None)


@router.post("/{conf_id}/end", response_model=ConferenceOut)
async def end(conf_id: int, who: Reader, svc: Svc) -> ConferenceOut:
    await _chair_of(svc, who, conf_id)
    c = await svc.store.set_status(who, conf_id, "ended")
    await svc.end(conf_id, "the chair ended the conference")
    return _out(c, None)


def _event(a: ActionIn) -> tuple[core.Event, str]:
    """The floor event of a chair's action, and the audit target."""
    match a.action:
        case "broadcast":
            return core.Broadcast(a.venue), a.venue or ""
        case "roll_call":
            return core.RollCall(a.venue), a.venue or ""
        case "discussion":
            return core.Discuss(tuple(a.venues)), ""
        case "polling":
            return core.Poll(tuple(a.venues), a.seconds), ""
        case "mute":
            return core.Mute(a.venue), a.venue or ""
        case "unmute":
            return core.Unmute(a.venue), a.venue or ""
        case "approve" | "lower_hand" | "remove":
            if a.venue is None:
                raise InvalidInput.one("venue", f"{a.action} needs a venue")
            ev = {"approve": core.Approve, "lower_hand": core.LowerHand, "remove": core.Remove}
            return ev[a.action](a.venue), a.venue
        case "layout":
            if a.layout is None:
                raise InvalidInput.one("layout", f"must be one of {', '.join(core.LAYOUTS)}")
            return core.SetLayout(a.layout), ""
        case "lock":
            if a.locked is None:
                raise InvalidInput.one("locked", "must be true or false")
            return core.Lock(a.locked), ""
    raise InvalidInput.one("action", "unknown action", a.action)  # pragma: no cover


@router.post("/{conf_id}/actions")
async def act(conf_id: int, body: ActionIn, who: Reader, svc: Svc) -> dict[str, Any]:
    await _chair_of(svc, who, conf_id)
    lc = await svc.live(conf_id)
    ev, target = _event(body)
    detail = body.model_dump(exclude_none=True, exclude_defaults=True)
    await lc.act(who, body.action, ev, target, detail)
    if isinstance(ev, core.Remove):
        page = lc.pages.get(ev.venue)
        if page is not None:
            await page.send(lc.layout_of(ev.venue))
            await page.publishing.close()
            await page.live.close()
    return lc.snapshot()


class RecordingOut(BaseModel):
    name: str = Field(examples=["20261129T130210.mp4"])
    bytes: int
    complete: bool


@router.get("/{conf_id}/recordings", response_model=list[RecordingOut])
async def recordings(conf_id: int, who: Reader, svc: Svc) -> list[RecordingOut]:
    """The programme's MP4 segments (while the conference runs, the newest is incomplete)."""
    await svc.store.visible(who, conf_id)
    return [
        RecordingOut(name=f.name, bytes=f.stat().st_size, complete=done)
        for f, done in _segments(svc, conf_id)
    ]


@router.get("/{conf_id}/recordings/{name}")
async def recording_file(conf_id: int, name: str, who: Reader, svc: Svc) -> FileResponse:
    """One segment of the programme (``video/mp4``, range requests for seeking)."""
    await svc.store.visible(who, conf_id)
    if not SEGMENT_NAME.match(name):
        raise InvalidInput.one("name", "must be a segment name like 20261129T130210.mp4", name)
    for f, _ in _segments(svc, conf_id):
        if f.name == name:
            await svc.audit.write(
                who, "conference.playback", "", "ok", {"conference": conf_id, "segment": name}
            )
            return FileResponse(f, media_type="video/mp4")
    raise NotFound(f"no segment {name} in conference {conf_id}")


def _segments(svc: ConferenceService, conf_id: int) -> list[tuple[Path, bool]]:
    lc = svc.running_or_none(conf_id)
    if lc is not None and lc.recorder is not None:
        return lc.recorder.segments()
    if svc.media is None:
        return []
    folder = svc.media.data_dir / "conferences" / str(conf_id)
    with contextlib.suppress(FileNotFoundError):
        return [(f, True) for f in sorted(folder.iterdir()) if SEGMENT_NAME.match(f.name)]
    return []


@router.get("/{conf_id}/attendance", response_model=list[AttendanceOut])
async def attendance(conf_id: int, who: Reader, svc: Svc) -> list[AttendanceOut]:
    await svc.store.visible(who, conf_id)
    return [
        AttendanceOut(venue=a.venue_code, joined_at=a.joined_at, left_at=a.left_at, reason=a.reason)
        for a in await svc.store.attendance(conf_id)
    ]


# --- the WebSocket ------------------------------------------------------------------------------


@router.websocket("/{conf_id}/ws")
async def conference_ws(ws: WebSocket, conf_id: int) -> None:
    ctx: NodeContext = ws.app.state.ctx
    principal = await ws_principal(ws)
    if principal is None:
        return
    svc = service_of(ctx)
    host = ws.query_params.get("host") or ctx.config.node.code
    lc: LiveConference | RelayedConference
    if not _NODE_CODE.match(host):
        await ws.close(code=4422, reason=f"host: {host[:40]!r} is not a 20-digit node code")
        return
    if host != ctx.config.node.code:  # hosted elsewhere: this node relays its venue pages
        lc = relay(ctx, host, conf_id)
    else:
        try:
            await svc.store.visible(principal, conf_id)
            lc = await svc.live(conf_id)
        except VmeshError as e:
            await ws.close(code=4404 if e.status == 404 else 4409, reason=e.detail[:120])
            return
    await ws.accept()
    sock = JsonSocket(ws, "conference-ws")
    conn = _Connection(ctx, lc, principal, sock.send)
    await sock.serve(conn.handle, conn.close)


class _Connection:
    """One page on the conference WebSocket: a venue's screen or a chair's console."""

    def __init__(
        self, ctx: NodeContext, lc: LiveConference | RelayedConference, who: Principal, send: Any
    ) -> None:
        self.ctx = ctx
        self.lc = lc
        self.who = who
        self.send = send
        self.venue: VenuePage | None = None
        self.chair: ChairPage | None = None
        self._lock = asyncio.Lock()

    def _live_session(self) -> LiveSession:
        assert self.ctx.media is not None

        async def lookup(code: str) -> Camera | None:
            return None  # conference tiles are routed by the conference, never looked up

        async def audit(who: Principal, code: str, result: str, detail: dict[str, Any]) -> None:
            await self.ctx.audit.write(who, "live.view", code, result, detail)

        return LiveSession(self.who, self.ctx.media, lookup, audit, self.send)

    async def handle(self, raw: str) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            await self.send(
                {"type": "error", "field": "", "reason": "a message must be a JSON object"}
            )
            return
        kind = msg.get("type")
        try:
            if kind == "venue":
                async with self._lock:
                    await self._join_venue(msg)
            elif kind == "chair":
                async with self._lock:
                    await self._join_chair()
            elif self.venue is not None or self.chair is not None or self._lock.locked():
                async with self._lock:  # a join still in progress finishes first
                    pass
                if self.venue is not None:
                    await self._venue_message(self.venue, kind, msg, raw)
                elif self.chair is not None:
                    await self._chair_message(self.chair, kind, msg, raw)
                else:
                    raise InvalidInput.one("type", "the page could not join", kind)
            else:
                raise InvalidInput.one("type", "send venue or chair first", kind)
        except VmeshError as e:
            reason = e.errors[0].reason if len(e.errors) == 1 else e.detail
            fieldname = e.errors[0].field if len(e.errors) == 1 else ""
            await self.send(
                {"type": "error", "field": fieldname, "reason": reason, "tile": msg.get("tile")}
            )
        except Exception as e:
            log.exception("conference ws message %s failed", kind)
            await self.send({"type": "error", "field": "", "reason": f"internal error: {e}"})

    async def _join_venue(self, msg: dict[str, Any]) -> None:
        if self.venue is not None or self.chair is not None:
            raise InvalidInput.one("type", "this page has joined already")
        ep = await self.lc.endpoint(self.who, msg.get("code"))
        assert self.ctx.media is not None

        async def audit(
            who: Principal, action: str, code: str, result: str, detail: dict[str, Any]
        ) -> None:
            await self.ctx.audit.write(who, action, code, result, detail)

        async def lookup(code: str) -> Any:
            return ep

        publishing = ConferencePublish(
            ep, self.who, self.ctx.media, lookup, audit, mark_presence(self.ctx.db), self.send
        )
        self.venue = VenuePage(ep.code, self.who, self._live_session(), publishing, self.send)
        await self.lc.add_page(self.venue)

    async def _join_chair(self) -> None:
        if self.venue is not None or self.chair is not None:
            raise InvalidInput.one("type", "this page has joined already")
        self.lc.check_chair(self.who)
        self.chair = ChairPage(self.who, self._live_session(), self.send)
        await self.lc.add_chair(self.chair)

    async def _venue_message(
        self, page: VenuePage, kind: object, msg: dict[str, Any], raw: str
    ) -> None:
        if page.publishing.wants(msg):
            await page.publishing.handle(msg)
        elif kind == "watch":
            await self.lc.open_tile(page, str(msg.get("tile")))
        elif kind == "stop":
            await self.lc.close_tile(page, str(msg.get("tile")))
            await page.live.handle(raw)
        elif kind in ("answer", "candidate"):
            await page.live.handle(raw)
        elif kind == "hand":
            raised = bool(msg.get("raised", True))
            ev: core.Event = core.RaiseHand(page.code) if raised else core.LowerHand(page.code)
            await self.lc.act(self.who, "hand" if raised else "lower_hand", ev, page.code)
        elif kind == "level":
            v = msg.get("value")
            if not isinstance(v, int | float) or not 0 <= v <= 1:
                raise InvalidInput.one("value", "must be a number from 0 to 1", v)
            page.level = float(v)
        else:
            raise InvalidInput.one(
                "type",
                "must be publish, unpublish, watch, answer, candidate, stop, hand or level",
                kind,
            )

    async def _chair_message(
        self, chair: ChairPage, kind: object, msg: dict[str, Any], raw: str
    ) -> None:
        if kind == "watch":
            await self.lc.open_thumb(chair, str(msg.get("tile")), msg.get("code"))
        elif kind == "stop":
            chair.thumbs.pop(str(msg.get("tile")), None)
            await chair.live.handle(raw)
        elif kind in ("answer", "candidate"):
            await chair.live.handle(raw)
        else:
            raise InvalidInput.one("type", "must be watch, answer, candidate or stop", kind)

    async def close(self) -> None:
        if self.venue is not None:
            page = self.venue
            await self.lc.remove_page(page)
            await page.live.close()
            await page.publishing.close()
        if self.chair is not None:
            self.lc.remove_chair(self.chair)
            await self.chair.live.close()
