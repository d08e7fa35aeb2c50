"""``/api/live/ws``: the console's live-video signalling WebSocket (one per console page).

The upgrade is authenticated like every API call (the ``vmesh_session`` cookie, or a bearer
token) and refused before it is accepted (HTTP 403) when the caller is not logged in, when the
``Origin`` is another site's (cross-site WebSocket hijacking), or when live video is off on this
node. The messages are those of ``vmesh.media.viewer.LiveSession``; replies are sent in order by
one writer task.

Public: ``router``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, cast
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from sqlalchemy import select

from vmesh.auth.deps import current_principal
from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import VmeshError
from vmesh.media.publish import Endpoint, PublishSession, mark_presence
from vmesh.media.publish import parse as parse_message
from vmesh.media.remote import attrs_of, remote_camera
from vmesh.media.viewer import Camera, LiveSession
from vmesh.node.context import NodeContext

log = logging.getLogger(__name__)

router = APIRouter(tags=["live"])


def _same_origin(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    if not origin:
        return True  # not a browser (browsers always send Origin on WebSocket upgrades)
    return urlsplit(origin).netloc.lower() == ws.headers.get("host", "").lower()


@router.websocket("/live/ws")
async def live_ws(ws: WebSocket) -> None:
    ctx: NodeContext = ws.app.state.ctx
    if not _same_origin(ws):
        log.warning(
            "live ws refused: origin=%s host=%s", ws.headers.get("origin"), ws.headers.get("host")
        )
        await ws.close(code=4403, reason="cross-origin WebSocket refused")
        return
    try:
        principal = await current_principal(cast(Request, ws))
    except VmeshError as e:
        await ws.close(code=4401, reason=e.detail[:120])
        return
    media = getattr(ctx, "media", None)
    if media is None:
        await ws.close(code=4503, reason="live video is not enabled on this node ([media] enabled)")
        return
    await ws.accept()
    out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def send(msg: dict[str, Any]) -> None:
        out.put_nowait(msg)

    async def writer() -> None:
        while (msg := await out.get()) is not None:
            await ws.send_text(json.dumps(msg, ensure_ascii=False))

    async def lookup(code: str) -> Camera | None:
        async with ctx.db.sessions() as s:
            e = (await s.execute(select(Entry).where(Entry.code == code))).scalar_one_or_none()
        if e is None:
            r = await remote_camera(ctx.db, code, ctx.config.node.code)
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

    session = LiveSession(principal, media, lookup, audit, send, getattr(ctx, "grants", None))
    publishing = _publish_session(ctx, principal, media, send)
    writer_task = asyncio.create_task(writer(), name="live-ws-writer")
    handlers: set[asyncio.Task[None]] = set()
    try:
        while True:
            raw = await ws.receive_text()
            msg = parse_message(raw)
            if msg is not None and publishing.wants(msg):
                task = asyncio.create_task(publishing.handle(msg))
            else:
                task = asyncio.create_task(session.handle(raw))
            handlers.add(task)
            task.add_done_callback(handlers.discard)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for t in list(handlers):
            t.cancel()
        for t in list(handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await session.close()
        await publishing.close()
        out.put_nowait(None)
        writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer_task


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
