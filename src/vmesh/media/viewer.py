"""One console page's live session: its tiles, their channels and Janus viewer handles.

``LiveSession`` is what the WebSocket route (``vmesh.media.api``) drives. It owns no socket: it is
given the authenticated ``Principal``, a way to look cameras up and audit views, the
``MediaService`` and a ``send`` callable, and it handles the browser's messages (JSON objects):

    -> {"type": "watch", "tile": "0", "code": "33010601001326000101"}
    <- {"type": "status", "tile": "0", "state": "connecting", "code": "...", "name": "..."}
    <- {"type": "offer", "tile": "0", "jsep": {"type": "offer", "sdp": "..."}}
    -> {"type": "answer", "tile": "0", "jsep": {"type": "answer", "sdp": "..."}}
    -> {"type": "candidate", "tile": "0", "candidate": {"candidate": "...", "sdpMid": "v",
        "sdpMLineIndex": 0}}                       (null candidate: end of candidates)
    <- {"type": "candidate", "tile": "0", "candidate": {...}}        (Janus's own, trickled)
    -> {"type": "switch", "tile": "0", "code": "..."}   same channel, same RTCPeerConnection
    -> {"type": "stop", "tile": "0"}
    <- {"type": "status", "tile": "0", "state": "playing" | "no_signal" | "error" | "stopped",
        "reason": "...", "code": "...", "name": "...", "retry": false}
    <- {"type": "error", "field": "code", "reason": "..."}          (a malformed message)

A camera of another node (in the catalogue, not the directory) is authorised by division
(``vmesh.media.remote.covers_remote``) and played through the fabric. Its offer comes while the
fabric still opens the path and says so (``"routing": true``); the page answers at once (its
answer and candidates reach Janus meanwhile), and a status follows when the path is open — or an
``error`` status naming why it could not be opened.

Every ``watch`` and ``switch`` is authorised by the user's scope (``Principal.covers``) and audited
as ``live.view`` with the camera's code (``denied`` when refused: a camera outside the scope is
answered as not found, as the directory API does). States are pushed whenever they change.
``retry: true`` on an ``error`` means the tile's connection failed (Janus hung it up — ICE failed,
DTLS timed out — or the page's Janus session was lost) while the view itself is still allowed: the
page should ``watch`` the tile again (``static/js/views/live.js`` does, with back-off). Refusals
and ended grants carry ``retry: false``.
A camera outside the scope may be watched by an active grant (``grants``: ``vmesh.grants``); its
``live.view`` row then carries ``grant`` and ``purpose``, and the tile stops (state ``error`` with
the reason) once the grant is revoked or expires.

Public: ``LiveSession``, ``CameraLookup``, ``Camera``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vmesh.auth.principal import Principal
from vmesh.edge.janus import JanusError, JanusHandle, JanusSession
from vmesh.edge.streaming import STREAMING
from vmesh.errors import InvalidInput, VmeshError
from vmesh.media.channels import Channel
from vmesh.media.publish import PUBLISHABLE_KINDS, BrowserSpec
from vmesh.media.remote import RemoteSpec, covers_remote
from vmesh.media.service import MediaService
from vmesh.media.sources import SourceSpec, source_from_attrs

log = logging.getLogger(__name__)

Json = dict[str, Any]
_CODE = re.compile(r"^\d{20}$")
_TILE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MONITOR_INTERVAL = 0.5


@dataclass(frozen=True)
class Camera:
    code: str
    name: str
    kind: str
    path: str
    attrs: dict[str, Any]
    # Set for a camera of another node (found in the catalogue): played through the fabric.
    origin_node: str | None = None


class CameraLookup(Protocol):
    async def __call__(self, code: str) -> Camera | None: ...


Audit = Callable[[Principal, str, str, dict[str, Any]], Awaitable[None]]


@dataclass
class _Tile:
    id: str
    channel: Channel
    code: str
    name: str
    handle: JanusHandle | None = None
    webrtc_up: bool = False
    error: str = ""
    retry: bool = False  # the error is the connection's: watching again may bring it back
    pump: asyncio.Task[None] | None = None
    last_sent: tuple[str, str, str] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    grant: Any = None  # the vmesh.grants.GrantUse the view relies on (outside the user's scope)


class LiveSession:
    def __init__(
        self,
        principal: Principal,
        media: MediaService,
        lookup: CameraLookup,
        audit: Audit,
        send: Callable[[Json], Awaitable[None]],
        grants: Any = None,
    ) -> None:
        self.principal = principal
        # vmesh.grants.GrantService: views outside the scope by grant; None: scope only.
        self.grants = grants
        self._uses: dict[str, Any] = {}
        self.media = media
        self.lookup = lookup
        self.audit = audit
        self.send = send
        self.tiles: dict[str, _Tile] = {}
        self._tile_locks: dict[str, asyncio.Lock] = {}
        self._signal_locks: dict[str, asyncio.Lock] = {}
        # tiles released since the page last watched them: a late answer or candidate of their
        # closed connection is not the page's mistake (nothing is said)
        self._gone: set[str] = set()
        # tiles whose offer went out while the fabric opens their camera's path
        self._routing: set[str] = set()
        self._janus: JanusSession | None = None
        self._janus_lock = asyncio.Lock()
        self._monitor: asyncio.Task[None] | None = None
        self.owner = f"{principal.username}@{id(self):x}"

    # --- messages ---------------------------------------------------------------------------------

    async def handle(self, raw: str) -> None:
        """Handle one text message from the browser; errors go back as messages, never raise."""
        try:
            msg = json.loads(raw)
        except ValueError:
            await self._error("", "not JSON")
            return
        if not isinstance(msg, dict):
            await self._error("", "a message must be a JSON object")
            return
        kind = msg.get("type")
        handler = {
            "watch": self._on_watch,
            "switch": self._on_switch,
            "stop": self._on_stop,
            "answer": self._on_answer,
            "candidate": self._on_candidate,
        }.get(kind if isinstance(kind, str) else "")
        if handler is None:
            await self._error("type", "must be one of watch, switch, stop, answer, candidate", kind)
            return
        tile = msg.get("tile")
        if isinstance(tile, int) and not isinstance(tile, bool):
            tile = str(tile)
        if not isinstance(tile, str) or not _TILE.match(tile):
            await self._error("tile", "must be 1-32 letters, digits, - or _", tile)
            return
        # The page's answer and candidates act on the tile's Janus handle only: they take a lock
        # of their own (their order kept), so that they reach Janus while a watch of another
        # node's camera still waits for the fabric (the offer is sent before: ``_on_watch``).
        signal = kind in ("answer", "candidate") and tile in self._routing
        locks = self._signal_locks if signal else self._tile_locks
        lock = locks.setdefault(tile, asyncio.Lock())
        async with lock:
            try:
                await handler(tile, msg)
            except VmeshError as e:
                await self._status_error(
                    tile, e.errors[0].reason if len(e.errors) == 1 else e.detail
                )
            except Exception as e:  # a tile's failure must not end the page's session
                log.exception("live tile=%s %s failed", tile, kind)
                await self._status_error(tile, f"internal error: {e}")

    async def close(self) -> None:
        """The page went away: release every tile and the Janus session."""
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for tile in list(self.tiles.values()):
            await self._release(tile, detach=False)
        if self._janus is not None:
            with contextlib.suppress(Exception):
                await self._janus.destroy()
            self._janus = None

    # --- handlers ---------------------------------------------------------------------------------

    async def _authorise(self, tile: str, msg: Json) -> tuple[Camera, SourceSpec]:
        code = msg.get("code")
        if not isinstance(code, str) or not _CODE.match(code):
            raise InvalidInput.one("code", "must be a 20-digit camera code", code)
        cam = await self.lookup(code)
        if cam is not None and cam.origin_node is not None:
            # In the user's division, or vouched for by the lookup with the user's own scope
            # path (vmesh.servicedesk: the seat of the agent of another node serving a kiosk).
            covered = (
                covers_remote(self.principal, cam.code) or cam.path == self.principal.scope_path
            )
        else:
            covered = cam is not None and self.principal.covers(cam.path)
        use = None
        if cam is not None and not covered and self.grants is not None:
            try:
                use = await self.grants.authorise(self.principal, cam)
            except VmeshError as e:  # a grant exists but cannot be used: say why
                await self.audit(self.principal, code, "denied", {"tile": tile, "reason": e.detail})
                raise
            covered = use is not None
        self._uses[tile] = use
        if cam is None or not covered:
            why = "not in the directory" if cam is None else "outside the user's scope"
            await self.audit(self.principal, code, "denied", {"tile": tile, "reason": why})
            raise InvalidInput.one("code", f"camera {code} not found", code)
        if cam.kind in PUBLISHABLE_KINDS and cam.origin_node is not None:  # through the fabric
            return cam, RemoteSpec(code, cam.origin_node, audio=True)  # type: ignore[return-value]
        if cam.kind in PUBLISHABLE_KINDS:  # a browser camera (vmesh.media.publish)
            return cam, BrowserSpec(code)  # type: ignore[return-value]
        if cam.kind != "camera":
            raise InvalidInput.one("code", f"{cam.name} ({code}) is a {cam.kind}, not a camera")
        if cam.origin_node is not None:  # another node's camera: through the fabric
            return cam, RemoteSpec(code, cam.origin_node)  # type: ignore[return-value]
        try:
            spec = source_from_attrs(code, cam.name, cam.attrs)
        except InvalidInput as e:
            reasons = "; ".join(f"{x.field}: {x.reason}" for x in e.errors) or e.detail
            raise InvalidInput.one("code", f"{cam.name}: {reasons}", code) from None
        return cam, spec

    async def _on_watch(self, tile: str, msg: Json) -> None:
        cam, spec = await self._authorise(tile, msg)
        old = self.tiles.get(tile)
        if old is not None:
            await self._release(old)
        channel = self.media.lend(self.owner)
        t = _Tile(tile, channel, cam.code, cam.name)
        self.tiles[tile] = t
        self._gone.discard(tile)
        try:
            await self.audit(
                self.principal,
                cam.code,
                "ok",
                {"tile": tile, "channel": channel.index} | self._grant_detail(t),
            )
            await self._push(t, force=True)
            # Janus's offer is made while the camera is routed. For another node's camera the
            # fabric opens its path meanwhile, hop by hop (~30 ms at four hops), and the offer
            # goes to the page at once: the browser's negotiation (answer, ICE, DTLS) overlaps
            # the path's opening instead of following it; if the path fails, the tile says why
            # and the handle is let go. A camera of this node is routed in a moment: the offer
            # follows the route, so a camera that cannot play never gets one.
            early = isinstance(spec, RemoteSpec)

            async def offer() -> Json:
                jsep = await self._watch(t)
                if early:
                    self._routing.add(tile)
                    await self._send_offer(t, jsep, routing=True)
                return jsep

            watch = asyncio.create_task(offer(), name=f"live-watch-{t.id}")
            try:
                await self.media.play(channel, cam.code, spec, user=self.principal.username)
            except BaseException:
                watch.cancel()
                with contextlib.suppress(BaseException):
                    await watch
                raise
            finally:
                self._routing.discard(tile)
            jsep = await watch
            if early:
                await self._push(t, force=True)  # the path is open
            else:
                await self._send_offer(t, jsep)
        except BaseException:
            await self._release(t)
            raise
        self._ensure_monitor()

    async def open_channel(self, tile: str, channel: Channel, code: str, name: str) -> None:
        """Show ``channel`` on ``tile``: a channel lent and routed by its caller (a conference,
        ``vmesh.conference``), which re-routes it at will; released with the tile like any."""
        old = self.tiles.get(tile)
        if old is not None:
            # The caller gave the old channel back before lending this one, which may be the
            # same channel again: giving it back once more would free it under the new tile.
            await self._release(old, give_back=old.channel is not channel)
        t = _Tile(tile, channel, code, name)
        self.tiles[tile] = t
        self._gone.discard(tile)
        try:
            await self._push(t, force=True)
            await self._offer(t)
        except BaseException:
            await self._release(t)
            raise
        self._ensure_monitor()

    async def relabel(self, tile: str, code: str, name: str) -> None:
        """The caller re-routed ``tile``'s channel to ``code``: report it."""
        t = self.tiles.get(tile)
        if t is not None and (t.code, t.name) != (code, name):
            t.code, t.name, t.error, t.retry = code, name, "", False
            await self._push(t, force=True)

    async def _offer(self, t: _Tile) -> None:
        """Watch the tile's mountpoint on a new Janus handle and send Janus's offer."""
        await self._send_offer(t, await self._watch(t))

    async def _watch(self, t: _Tile) -> Json:
        """Janus's offer for the tile's mountpoint, on a new handle (with its event pump)."""
        session = await self._session()
        t.handle = await session.attach(STREAMING, opaque_id=self.owner)
        t.pump = asyncio.create_task(self._pump(t), name=f"live-pump-{t.id}")
        reply = await t.handle.request({"request": "watch", "id": t.channel.mountpoint_id})
        if not reply.jsep:
            raise JanusError("watch", None, "Janus sent no offer")
        return reply.jsep

    async def _send_offer(self, t: _Tile, jsep: Json, routing: bool = False) -> None:
        msg: Json = {"type": "offer", "tile": t.id, "jsep": jsep}
        if routing:
            msg["routing"] = True
        await self.send(msg)

    async def _on_switch(self, tile: str, msg: Json) -> None:
        t = self._tile(tile)
        cam, spec = await self._authorise(tile, msg)
        await self.audit(
            self.principal,
            cam.code,
            "ok",
            {"tile": tile, "channel": t.channel.index, "switch": True} | self._grant_detail(t),
        )
        await self.media.play(t.channel, cam.code, spec, user=self.principal.username)
        t.code, t.name, t.error, t.retry = cam.code, cam.name, "", False
        await self._push(t, force=True)

    async def _on_stop(self, tile: str, msg: Json) -> None:
        t = self.tiles.get(tile)
        if t is not None:
            await self._release(t)
        await self.send({"type": "status", "tile": tile, "state": "stopped", "reason": ""})

    def _signalled(self, tile: str) -> _Tile | None:
        """The tile an answer or candidate is for; None for one released meanwhile (or not yet
        offered again: a late message of its previous connection)."""
        if tile in self._gone:
            return None
        t = self._tile(tile)
        return t if t.handle is not None else None

    async def _on_answer(self, tile: str, msg: Json) -> None:
        t = self._signalled(tile)
        if t is None:
            return
        jsep = msg.get("jsep")
        if (
            not isinstance(jsep, dict)
            or jsep.get("type") != "answer"
            or not isinstance(jsep.get("sdp"), str)
        ):
            raise InvalidInput.one("jsep", "must be {type: answer, sdp}")
        assert t.handle is not None
        try:
            answer = {"type": "answer", "sdp": jsep["sdp"]}
            await t.handle.request({"request": "start"}, jsep=answer)
        except JanusError:
            if self.tiles.get(tile) is t:
                raise  # else the tile was released while Janus was asked: nothing to say

    async def _on_candidate(self, tile: str, msg: Json) -> None:
        t = self._signalled(tile)
        if t is None:
            return
        cand = msg.get("candidate")
        if cand is None or cand == {} or (isinstance(cand, dict) and not cand.get("candidate")):
            candidate: Json = {"completed": True}
        elif isinstance(cand, dict) and isinstance(cand.get("candidate"), str):
            candidate = {
                "candidate": cand["candidate"],
                "sdpMid": cand.get("sdpMid"),
                "sdpMLineIndex": cand.get("sdpMLineIndex"),
            }
        else:
            raise InvalidInput.one("candidate", "must be an ICE candidate object or null")
        assert t.handle is not None
        try:
            await t.handle.trickle(candidate)
        except JanusError as e:  # one unusable candidate is not the tile's failure
            log.info("live tile=%s candidate refused: %s", tile, e.detail)

    # --- internals --------------------------------------------------------------------------------

    def _tile(self, tile: str) -> _Tile:
        t = self.tiles.get(tile)
        if t is None:
            raise InvalidInput.one(
                "tile", "nothing is playing on this tile; send watch first", tile
            )
        return t

    async def _session(self) -> JanusSession:
        async with self._janus_lock:
            self._janus = await self.media.page_session(self._janus)
            return self._janus

    async def _pump(self, t: _Tile) -> None:
        """Janus's events about this tile's viewer handle: candidates, webrtcup, hangup."""
        assert t.handle is not None
        while True:
            ev = await t.handle.events.get()
            kind = ev.get("janus")
            if kind == "trickle":
                cand = ev.get("candidate") or {}
                if cand.get("completed"):
                    cand = None
                await self.send({"type": "candidate", "tile": t.id, "candidate": cand})
            elif kind == "webrtcup":
                t.webrtc_up = True
                await self._push(t)
            elif kind == "hangup":
                t.webrtc_up = False
                t.error = f"connection closed by the video edge ({ev.get('reason', 'hangup')})"
                t.retry = True
                await self._push(t)
            elif kind == "event":
                data = (ev.get("plugindata") or {}).get("data") or {}
                if "error" in data:
                    t.error = f"video edge: {data.get('error')}"
                    await self._push(t)

    async def _release(self, t: _Tile, detach: bool = True, give_back: bool = True) -> None:
        if self.tiles.get(t.id) is t:
            del self.tiles[t.id]
            self._gone.add(t.id)
        # First, before any await: a stop cancelled by the page closing must not leak the channel
        # (and the camera's source or fabric lease behind it).
        if give_back:
            self.media.give_back(t.channel)
        if t.pump is not None:
            t.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t.pump
        if t.handle is not None and detach:
            with contextlib.suppress(Exception):
                await t.handle.detach()

    def _state(self, t: _Tile) -> tuple[str, str, bool]:
        """State, reason, and whether the error is the connection's (watching again may cure
        it: Janus hung up, or the page's Janus session was lost)."""
        if t.error:
            return "error", t.error, t.retry
        if self._janus is not None and self._janus.closed.is_set():
            return "error", f"video edge session {self._janus.close_reason}; watch again", True
        sig = self.media.signal_of(t.code)
        if sig.state in ("error", "no_signal"):
            return sig.state, sig.reason, False
        if not t.webrtc_up:
            return "connecting", "", False
        return sig.state, sig.reason, False

    async def _push(self, t: _Tile, force: bool = False) -> None:
        state, reason, retry = self._state(t)
        key = (state, reason, t.code)
        if not force and key == t.last_sent:
            return
        t.last_sent = key
        await self.send(
            {
                "type": "status",
                "tile": t.id,
                "state": state,
                "reason": reason,
                "code": t.code,
                "name": t.name,
                "channel": t.channel.index,
                "retry": retry,
            }
        )

    def _ensure_monitor(self) -> None:
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.create_task(self._monitor_loop(), name="live-monitor")

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            for t in list(self.tiles.values()):
                try:
                    if t.grant is not None and (why := self.grants.ended(t.grant.grant)):
                        await self._stop_by_grant(t, why)
                        continue
                    await self._push(t)
                except Exception:
                    log.debug("live status push failed tile=%s", t.id, exc_info=True)

    def _grant_detail(self, t: _Tile) -> dict[str, Any]:
        """The grant (and purpose) the tile's view relies on, and the user's department."""
        t.grant = self._uses.pop(t.id, None)
        d: dict[str, Any] = t.grant.as_detail() if t.grant is not None else {}
        if self.principal.department_code:
            d["department"] = self.principal.department_code
        return d

    async def _stop_by_grant(self, t: _Tile, why: str) -> None:
        """The grant the tile relied on was revoked or expired: stop it, saying so."""
        await self._release(t)
        detail = {"tile": t.id, "reason": why, "stopped": True} | t.grant.as_detail()
        await self.audit(self.principal, t.code, "denied", detail)
        await self.send(
            {"type": "status", "tile": t.id, "state": "error", "reason": why, "code": t.code}
        )

    async def _error(self, fieldname: str, reason: str, value: object = None) -> None:
        msg: Json = {"type": "error", "field": fieldname, "reason": reason}
        if value is not None:
            msg["value"] = str(value)[:100]
        await self.send(msg)

    async def _status_error(self, tile: str, reason: str) -> None:
        t = self.tiles.get(tile)
        if t is not None:
            t.error, t.retry = reason, False
            await self._push(t, force=True)
        else:
            await self.send({"type": "status", "tile": tile, "state": "error", "reason": reason})
