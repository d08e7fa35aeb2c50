"""``/api/live/ws``: the console's live-video signalling WebSocket (one per console page).

The upgrade is authenticated like every API call (the ``vmesh_session`` cookie, or a bearer
token) and refused before it is accepted (HTTP 403) when the caller is not logged in, when the
``Origin`` is another site's (cross-site WebSocket hijacking), or when live video is off on this
node. The messages are those of ``vmesh.media.viewer.LiveSession``; replies are sent in order by
one writer task.

Public: ``router``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from sqlalchemy import select

from vmesh.api.ws import JsonSocket, ws_principal
from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.gb28181.playback_ws import GbPlaybackPage
from vmesh.media.publish import Endpoint, PublishSession, mark_presence
from vmesh.media.publish import parse as parse_message
from vmesh.media.remote import attrs_of, remote_camera
from vmesh.media.viewer import Camera, LiveSession
from vmesh.node.context import NodeContext

log = logging.getLogger(__name__)

router = APIRouter(tags=["live"])


@router.websocket("/live/ws")
async def live_ws(ws: WebSocket) -> None:
    ctx: NodeContext = ws.app.state.ctx
    principal = await ws_principal(ws)
    if principal is None:
        return
    media = getattr(ctx, "media", None)
    if media is None:
        await ws.close(code=4503, reason="live video is not enabled on this node ([media] enabled)")
        return
    await ws.accept()
    sock = JsonSocket(ws, "live-ws")

    async def lookup(code: str) -> Camera | None:
        async with ctx.db.sessions() as s:
            e = (await s.execute(select(Entry).where(Entry.code == code))).scalar_one_or_none()
        if e is None:
            r = await remote_camera(ctx.db, code, ctx.config.node.code)
            sd = getattr(ws.app.state, "servicedesk", None)
            seat = None if r is not None or sd is None else sd.tiers.remote_seat(principal, code)
            if seat is not None:  # vmesh.servicedesk: the agent of another node serving a kiosk
                return Camera(code, seat[1], "service_room", principal.scope_path, {}, seat[0])
            if r is None:  # maybe known through one of the user's grants (vmesh.grants)
                grants = getattr(ctx, "grants", None)
                return None if grants is None else await grants.find_camera(principal, code)
            return Camera(r.code, r.name, r.kind, "", attrs_of(r.attrs), origin_node=r.origin_node)
        try:
            attrs = json.loads(e.attrs or "{}")
        except ValueError:
            attrs = {}
        path = e.path
        # vmesh.servicedesk: a kiosk in a call sees the seat of the agent serving it.
        desk = getattr(ws.app.state, "servicedesk", None)
        in_call = desk is not None and not principal.covers(path)
        if in_call and await desk.may_watch(principal, code):
            path = principal.scope_path
        return Camera(e.code, e.name, e.kind, path, attrs if isinstance(attrs, dict) else {})

    async def audit(who: Principal, code: str, result: str, detail: dict[str, Any]) -> None:
        await ctx.audit.write(who, "live.view", code, result, detail)

    grants = getattr(ctx, "grants", None)
    session = LiveSession(principal, media, lookup, audit, sock.send, grants)
    publishing = _publish_session(ctx, principal, media, sock.send)
    # GB/T 28181 device recordings played on the page's tiles (vmesh.gb28181.playback_ws).
    gb_playback = GbPlaybackPage(ctx, principal, media, session, sock.send)

    async def handle(raw: str) -> None:
        msg = parse_message(raw)
        if msg is not None and publishing.wants(msg):
            await publishing.handle(msg)
        elif msg is not None and gb_playback.wants(msg):
            await gb_playback.handle(msg)
        else:
            await session.handle(raw)

    async def close() -> None:
        await gb_playback.close()
        await session.close()
        await publishing.close()

    await sock.serve(handle, close)


def _publish_session(
    ctx: NodeContext, principal: Principal, media: Any, send: Any
) -> PublishSession:
    """The publishing half of the page's WebSocket (browser cameras: vmesh.media.publish)."""

    async def lookup(code: str) -> Endpoint | None:
        async with ctx.db.sessions() as s:
            e = (await s.execute(select(Entry).where(Entry.code == code))).scalar_one_or_none()
        return None if e is None else Endpoint(e.code, e.name, e.kind, e.path)

    async def audit(
        who: Principal, action: str, code: str, result: str, detail: dict[str, Any]
    ) -> None:
        await ctx.audit.write(who, action, code, result, detail)

    return PublishSession(principal, media, lookup, audit, mark_presence(ctx.db), send)
