"""The console's WebSockets (live video, conference, service desk): who may open one, and the
ordered JSON exchange on an accepted one.

``ws_principal(ws)`` authenticates an upgrade like every API call (the ``vmesh_session`` cookie or
a bearer token) and refuses it before it is accepted — close 4403 when the ``Origin`` is another
site's (cross-site WebSocket hijacking), 4401 when the caller is not logged in — returning None
then. ``JsonSocket`` is an accepted socket's exchange: ``send`` queues a message and one writer
task sends them in order; ``serve(handle, close)`` runs each received text in its own task until
the page goes, then cancels the handlers still running, calls ``close`` and ends the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast
from urllib.parse import urlsplit

from fastapi import Request, WebSocket, WebSocketDisconnect

from vmesh.auth.deps import current_principal
from vmesh.auth.principal import Principal
from vmesh.errors import VmeshError

log = logging.getLogger(__name__)


def same_origin(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    if not origin:
        return True  # not a browser (browsers always send Origin on WebSocket upgrades)
    return urlsplit(origin).netloc.lower() == ws.headers.get("host", "").lower()


async def ws_principal(ws: WebSocket) -> Principal | None:
    """The caller of a WebSocket upgrade, or None after refusing it (4403 / 4401)."""
    if not same_origin(ws):
        log.warning(
            "ws %s refused: origin=%s host=%s",
            ws.url.path,
            ws.headers.get("origin"),
            ws.headers.get("host"),
        )
        await ws.close(code=4403, reason="cross-origin WebSocket refused")
        return None
    try:
        return await current_principal(cast(Request, ws))
    except VmeshError as e:
        await ws.close(code=4401, reason=e.detail[:120])
        return None


class JsonSocket:
    """An accepted WebSocket's JSON messages: sent in order by one writer, received into tasks."""

    def __init__(self, ws: WebSocket, name: str) -> None:
        self.ws = ws
        self.name = name
        self._out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def send(self, msg: dict[str, Any]) -> None:
        self._out.put_nowait(msg)

    async def _write(self) -> None:
        while (msg := await self._out.get()) is not None:
            await self.ws.send_text(json.dumps(msg, ensure_ascii=False))

    async def serve(
        self,
        handle: Callable[[str], Coroutine[Any, Any, None]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        """Hand every received text to ``handle`` (a task each) until the page goes; then cancel
        the handlers still running, ``close()``, and end the writer."""
        writer = asyncio.create_task(self._write(), name=f"{self.name}-writer")
        handlers: set[asyncio.Task[None]] = set()
        try:
            while True:
                raw = await self.ws.receive_text()
                task = asyncio.create_task(handle(raw))
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
            await close()
            self._out.put_nowait(None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
