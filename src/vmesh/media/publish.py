"""Browser cameras as sources: a user's camera and microphone published into Janus's VideoRoom and
``rtp_forward``ed into the switch, so that any console can watch it like a camera.

Owns: the node's one VideoRoom room (created by the node with the plugin ``admin_key`` and a room
secret generated per start; re-created after a Janus restart), each publication's Janus publisher
handle, its forwarders and its pair of switch inputs, and the publishing half of the live
WebSocket's messages. It calls the Janus API (``vmesh.edge.janus``), the switch transport and the
directory (an endpoint's ``status`` while it publishes).

What is published as what: a publication is always **a directory endpoint** of kind
``field_terminal``, ``conference_terminal`` or ``service_room`` (``PUBLISHABLE_KINDS``) in the
user's scope. While it publishes, the endpoint is ``online`` (``last_seen`` now); when it stops it
is ``offline``. A viewer watches it by its code exactly like a camera (``watch``/``switch`` on
``/api/live/ws``), authorised by scope and audited as ``live.view``; publishing is audited as
``live.publish`` (``ok``/``denied``/``failed``) and ``live.unpublish``. Only users with a role in
``PUBLISH_ROLES`` may publish.

Media path: browser --WebRTC--> Janus VideoRoom publisher --rtp_forward (loopback)--> switch inputs
``<code>/video`` (H.264, RTCP on the next port) and ``<code>/audio`` (Opus) --> channels. The
video forwarder is created with an ``rtcp_port``; Janus answers with the forwarder's own RTCP port
(``local_rtcp_port``), which becomes the switch input's RTCP destination with
``KeyframeRequest.pli``: a keyframe request of the switch (a new viewer without a cached GOP, a
viewer's PLI or unanswerable NACK) reaches the browser's encoder as a PLI through Janus.
Unpublishing stops the forwarders, leaves the room, closes the inputs and marks the endpoint
offline; viewers of it see "no signal: the browser stopped publishing", and get the picture again
on the same channel if it publishes anew.

WebSocket messages (in addition to ``vmesh.media.viewer``'s)::

    -> {"type": "publish", "tile": "pub", "code": "<endpoint>", "jsep": {"type": "offer", ...}}
    <- {"type": "status", "tile": "pub", "state": "connecting", "code": "...", "name": "..."}
    <- {"type": "answer", "tile": "pub", "jsep": {"type": "answer", "sdp": "..."}}
    -> {"type": "candidate", "tile": "pub", "candidate": {...} | null}
    <- {"type": "candidate", "tile": "pub", "candidate": {...} | null}
    <- {"type": "status", "tile": "pub", "state": "publishing", ...}
    <- {"type": "status", "tile": "pub", "state": "error", "reason": "...", "retry": true}
       (Janus hung the connection up — ICE failed, DTLS timed out: publish again; the venue,
       kiosk and field pages do, after a short wait. ``retry: false``: a refusal, do not.)
    -> {"type": "unpublish", "tile": "pub"}
    <- {"type": "status", "tile": "pub", "state": "stopped"}

Public: ``BrowserSpec``, ``BrowserSources``, ``BrowserRoom``, ``Forwarding``, ``PublishSession``,
``PUBLISHABLE_KINDS``, ``PUBLISH_ROLES``, ``mark_presence``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import update

from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.edge.janus import JanusError, JanusHandle, JanusPluginError, JanusSession
from vmesh.errors import Forbidden, InvalidInput, VmeshError
from vmesh.media.channels import Channel
from vmesh.media.service import MediaService, SourceSignal
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, KeyframeRequest

log = logging.getLogger(__name__)

Json = dict[str, Any]
VIDEOROOM = "janus.plugin.videoroom"
ROOM_ID = 4100
PUBLISHABLE_KINDS = frozenset({"field_terminal", "conference_terminal", "service_room"})
# Operators and admins at a centre, commanders in the field (emergency command's phones), service
# desk agents (their seat's camera); a village kiosk publishes as its service room.
PUBLISH_ROLES = ("admin", "operator", "commander", "agent")
_CODE = re.compile(r"^\d{20}$")
_TILE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MONITOR_INTERVAL = 0.5
# rtp_forward answered "No such feed" for a publisher just added: asked again this many times in
# all, the n-th pause FORWARD_RETRY_S * n (Room.forward).
FORWARD_ATTEMPTS = 5
FORWARD_RETRY_S = 0.05


@dataclass(frozen=True)
class BrowserSpec:
    """The source behind a publishable endpoint: whatever browser publishes as it."""

    code: str
    kind: Literal["browser"] = "browser"
    has_audio: bool = True


@dataclass
class Forwarding:
    """One publisher's forwarders into a pair of switch inputs."""

    code: str
    publisher_id: int
    base: int  # video RTP port; video RTCP base+1, audio RTP base+2
    stream_ids: list[int] = field(default_factory=list)
    video_rtcp: int | None = None  # Janus's forwarder RTCP port (PLIs go there)
    has_audio: bool = False

    @property
    def video_input(self) -> str:
        return f"{self.code}/video"

    @property
    def audio_input(self) -> str | None:
        return f"{self.code}/audio" if self.has_audio else None


class BrowserRoom:
    """The node's VideoRoom room, created on first use on the media service's Janus session."""

    def __init__(self, media: MediaService, publishers: int = 64) -> None:
        self.media = media
        self.publishers = publishers
        self.secret = secrets.token_urlsafe(24)
        self._handle: JanusHandle | None = None
        self._lock = asyncio.Lock()

    @property
    def admin_key(self) -> str:
        assert self.media.edge is not None
        return self.media.edge.settings.secrets.plugin_admin_key

    async def handle(self) -> JanusHandle:
        """The room-management handle; the room exists when this returns."""
        async with self._lock:
            session = self.media.session
            if session is None or session.closed.is_set():
                raise JanusError("videoroom", None, "live video is not running on this node")
            h = self._handle
            if h is not None and h.session is session:
                return h
            h = await session.attach(VIDEOROOM)
            body = {
                "request": "create",
                "room": ROOM_ID,
                "admin_key": self.admin_key,
                "secret": self.secret,
                "description": "vmesh browser cameras",
                "is_private": True,
                "publishers": self.publishers,
                "videocodec": "h264",
                "h264_profile": "42e01f",
                "audiocodec": "opus",
                "bitrate": 1_000_000,
                "fir_freq": 0,
                "permanent": False,
            }
            try:
                await h.request(body)
            except JanusPluginError as e:
                if e.code != 427:  # "Room already exists": our handle was lost, Janus was not
                    raise
                await h.request(
                    {
                        "request": "edit",
                        "room": ROOM_ID,
                        "secret": self.secret,
                        "admin_key": self.admin_key,
                    }
                )
            self._handle = h
            log.info("publish room=%d created on session=%d", ROOM_ID, session.id)
            return h

    async def forward(self, fw: Forwarding, video_mid: str, audio_mid: str | None) -> None:
        """``rtp_forward`` the publisher's streams to ``fw``'s ports on loopback."""
        h = await self.handle()
        streams: list[Json] = [{"mid": video_mid, "port": fw.base, "rtcp_port": fw.base + 1}]
        if audio_mid is not None:
            streams.append({"mid": audio_mid, "port": fw.base + 2})
        body = {
            "request": "rtp_forward",
            "room": ROOM_ID,
            "publisher_id": fw.publisher_id,
            "secret": self.secret,
            "admin_key": self.admin_key,
            "host": "127.0.0.1",
            "host_family": "ipv4",
            "streams": streams,
        }
        # Janus 1.1.2 can answer 428 "No such feed" for a publisher it has just announced (its
        # participant list shows it a moment later): right after add_remote_publisher, 1 run in
        # 15 of test_media_publish in CI, 4-5 in 20 on a loaded machine (docs/edge.md). Asked
        # again after a pause, up to FORWARD_ATTEMPTS times in all; any other error, or the last
        # 428, is the caller's.
        for attempt in range(1, FORWARD_ATTEMPTS + 1):
            try:
                reply = await h.request(body)
                break
            except JanusPluginError as e:
                if e.code != 428 or attempt == FORWARD_ATTEMPTS:
                    raise
                log.warning(
                    "publish forward code=%s publisher=%d attempt=%d: %s; asking again",
                    fw.code,
                    fw.publisher_id,
                    attempt,
                    e,
                )
                await asyncio.sleep(FORWARD_RETRY_S * attempt)
        for f in reply.data.get("forwarders") or []:
            fw.stream_ids.append(int(f["stream_id"]))
            if f.get("type") == "video" and f.get("local_rtcp_port"):
                fw.video_rtcp = int(f["local_rtcp_port"])
        fw.has_audio = audio_mid is not None
        log.info(
            "publish forward code=%s publisher=%d streams=%s rtcp=%s",
            fw.code,
            fw.publisher_id,
            fw.stream_ids,
            fw.video_rtcp,
        )

    async def stop_forward(self, fw: Forwarding) -> None:
        h = await self.handle()
        for sid in fw.stream_ids:
            with contextlib.suppress(JanusError):
                await h.request(
                    {
                        "request": "stop_rtp_forward",
                        "room": ROOM_ID,
                        "publisher_id": fw.publisher_id,
                        "stream_id": sid,
                        "secret": self.secret,
                        "admin_key": self.admin_key,
                    }
                )
        fw.stream_ids.clear()

    async def forwarders(self) -> dict[int, list[Json]]:
        """``listforwarders``: publisher id -> its forwarders (for tests and diagnostics)."""
        h = await self.handle()
        reply = await h.request(
            {"request": "listforwarders", "room": ROOM_ID, "secret": self.secret}
        )
        return {
            int(p["publisher_id"]): list(p.get("forwarders") or [])
            for p in reply.data.get("publishers") or []
        }


class BrowserSources:
    """Browser publications as switch sources; the media service's ``browser`` hooks."""

    def __init__(self, media: MediaService) -> None:
        self.media = media
        self.room = BrowserRoom(media)
        self.live: dict[str, Forwarding] = {}
        self.stopped: set[str] = set()
        # Called with each publication that goes live (the fabric re-routes its outputs).
        self.on_live: list[Callable[[Forwarding], None]] = []

    @classmethod
    def of(cls, media: MediaService) -> BrowserSources:
        """The service's instance (made and hooked in on first use)."""
        b = media.browser
        if not isinstance(b, BrowserSources):
            b = cls(media)
            media.browser = b
        return b

    # --- hooks of MediaService ----------------------------------------------------------------

    def owns(self, spec: object) -> bool:
        return isinstance(spec, BrowserSpec)

    def play(self, ch: Channel, code: str) -> None:
        fw = self.live.get(code)
        if fw is None:
            raise InvalidInput.one("code", f"{code} is not publishing now", code)
        self._route(ch, fw)
        ch.source = code

    def signal_of(self, code: str) -> SourceSignal | None:
        fw = self.live.get(code)
        if fw is None:
            if code in self.stopped:
                return SourceSignal("no_signal", "the browser stopped publishing")
            return None
        stats = self.media.transport.switch.snapshot().inputs.get(fw.video_input)
        if stats is None or stats.packets == 0:
            return SourceSignal("connecting")
        return SourceSignal("playing")

    # --- publications -------------------------------------------------------------------------

    def _route(self, ch: Channel, fw: Forwarding) -> None:
        t = self.media.transport
        t.route(ch.video_output, fw.video_input)
        if fw.audio_input is not None:
            t.route(ch.audio_output, fw.audio_input)
        else:
            t.unroute(ch.audio_output)

    def reserve(self, code: str, publisher_id: int) -> Forwarding:
        """Ports for a new publication (``InvalidInput`` if ``code`` publishes already)."""
        if code in self.live:
            raise InvalidInput.one("code", f"{code} is already publishing from another page", code)
        m = self.media
        base = m._free_input_base()
        m._used_input_bases.add(base)
        return Forwarding(code, publisher_id, base)

    async def start(self, fw: Forwarding, video_mid: str, audio_mid: str | None) -> None:
        """Forward the publisher into new switch inputs and make it a source."""
        t = self.media.transport
        try:
            await self.room.forward(fw, video_mid, audio_mid)
            if fw.video_rtcp is None:
                raise JanusError("rtp_forward", None, "Janus gave the video forwarder no RTCP port")
            await t.add_input(
                InputSpec(
                    fw.video_input,
                    Codec.h264,
                    keyframe_request=KeyframeRequest.pli,
                    rtcp_dest=("127.0.0.1", fw.video_rtcp),
                ),
                port=fw.base,
            )
            if fw.audio_input is not None:
                await t.add_input(InputSpec(fw.audio_input, Codec.opus), port=fw.base + 2)
        except BaseException:
            await self.stop(fw)
            raise
        self.live[fw.code] = fw
        self.stopped.discard(fw.code)
        for ch in self.media.pool.channels:  # viewers left on it from a previous publication
            if ch.owner is not None and ch.source == fw.code:
                self._route(ch, fw)
        for cb in self.on_live:
            with contextlib.suppress(Exception):
                cb(fw)
        log.info("publish source=%s port=%d live", fw.code, fw.base)

    async def stop(self, fw: Forwarding) -> None:
        """Stop the forwarders and close the inputs; idempotent."""
        if self.live.get(fw.code) is fw:
            del self.live[fw.code]
            self.stopped.add(fw.code)
        with contextlib.suppress(JanusError):
            await self.room.stop_forward(fw)
        t = self.media.transport
        for input_id in (fw.video_input, f"{fw.code}/audio"):
            with contextlib.suppress(VmeshError):
                t.remove_input(input_id)
        self.media._used_input_bases.discard(fw.base)
        log.info("publish source=%s stopped", fw.code)


# --- directory presence -------------------------------------------------------------------------

Presence = Callable[[str, bool], Awaitable[None]]


def mark_presence(db: Any) -> Presence:
    """``presence(code, online)`` writing the endpoint's status and ``last_seen``."""

    async def presence(code: str, online: bool) -> None:
        now = datetime.now(UTC)
        async with db.transaction() as s:
            await s.execute(
                update(Entry)
                .where(Entry.code == code)
                .values(
                    status="online" if online else "offline",
                    last_seen=now,
                    version=Entry.version + 1,
                    updated_at=now,
                )
            )

    return presence


# --- the publishing half of a live WebSocket ----------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    code: str
    name: str
    kind: str
    path: str


Lookup = Callable[[str], Awaitable[Endpoint | None]]
Audit = Callable[[Principal, str, str, str, dict[str, Any]], Awaitable[None]]


@dataclass
class _Pub:
    tile: str
    code: str
    name: str
    handle: JanusHandle | None = None
    fw: Forwarding | None = None
    webrtc_up: bool = False
    error: str = ""
    retry: bool = False  # the error is the connection's: publishing again may bring it back
    pump: asyncio.Task[None] | None = None
    last_sent: tuple[str, str] | None = None


class PublishSession:
    """One console page's publications (normally one), driven by the live WebSocket."""

    TYPES = frozenset({"publish", "unpublish"})

    def __init__(
        self,
        principal: Principal,
        media: MediaService,
        lookup: Lookup,
        audit: Audit,
        presence: Presence,
        send: Callable[[Json], Awaitable[None]],
    ) -> None:
        self.principal = principal
        self.media = media
        self.sources = BrowserSources.of(media)
        self.lookup = lookup
        self.audit = audit
        self.presence = presence
        self.send = send
        self.pubs: dict[str, _Pub] = {}
        self._claimed: set[str] = set()  # tiles this session publishes on
        self._janus: JanusSession | None = None
        self._lock = asyncio.Lock()
        self._monitor: asyncio.Task[None] | None = None

    def wants(self, msg: Json) -> bool:
        """Whether ``msg`` (parsed) is for this session rather than the viewer session."""
        kind = msg.get("type")
        tile = str(msg.get("tile"))
        if kind == "publish":
            # Claimed at once: the browser's candidates follow before the publication exists.
            self._claimed.add(tile)
        if kind in self.TYPES:
            return True
        return kind == "candidate" and tile in self._claimed

    async def handle(self, msg: Json) -> None:
        tile = msg.get("tile")
        if not isinstance(tile, str) or not _TILE.match(tile):
            await self.send(
                {"type": "error", "field": "tile", "reason": "must be 1-32 letters, digits, - or _"}
            )
            return
        async with self._lock:
            try:
                kind = msg.get("type")
                if kind == "publish":
                    await self._on_publish(tile, msg)
                elif kind == "unpublish":
                    await self._on_unpublish(tile)
                else:
                    await self._on_candidate(tile, msg)
            except VmeshError as e:
                reason = e.errors[0].reason if len(e.errors) == 1 else e.detail
                await self._fail(tile, reason)
            except Exception as e:
                log.exception("publish tile=%s failed", tile)
                await self._fail(tile, f"internal error: {e}")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for p in list(self.pubs.values()):
            await self._release(p, reason="page closed")
        if self._janus is not None:
            with contextlib.suppress(Exception):
                await self._janus.destroy()
            self._janus = None

    # --- handlers -----------------------------------------------------------------------------

    async def _authorise(self, tile: str, code: object) -> Endpoint:
        if not isinstance(code, str) or not _CODE.match(code):
            raise InvalidInput.one("code", "must be a 20-digit endpoint code", code)
        ep = await self.lookup(code)
        if ep is None or not self.principal.covers(ep.path):
            why = "not in the directory" if ep is None else "outside the user's scope"
            await self.audit(self.principal, "live.publish", code, "denied", {"reason": why})
            raise InvalidInput.one("code", f"endpoint {code} not found", code)
        if not self.principal.has(*PUBLISH_ROLES):
            await self.audit(
                self.principal, "live.publish", code, "denied", {"reason": "role may not publish"}
            )
            raise Forbidden(f"publishing needs one of the roles {', '.join(PUBLISH_ROLES)}")
        if ep.kind not in PUBLISHABLE_KINDS:
            raise InvalidInput.one(
                "code",
                f"{ep.name} ({code}) is a {ep.kind}; a browser publishes as a "
                + " or ".join(sorted(PUBLISHABLE_KINDS)),
                code,
            )
        return ep

    async def _on_publish(self, tile: str, msg: Json) -> None:
        jsep = msg.get("jsep")
        if (
            not isinstance(jsep, dict)
            or jsep.get("type") != "offer"
            or not isinstance(jsep.get("sdp"), str)
        ):
            raise InvalidInput.one("jsep", "must be {type: offer, sdp}")
        ep = await self._authorise(tile, msg.get("code"))
        old = self.pubs.get(tile)
        if old is not None:
            await self._release(old, reason="published again")
        pub = _Pub(tile, ep.code, ep.name)
        publisher_id = secrets.randbelow(2**52) + 1
        pub.fw = self.sources.reserve(ep.code, publisher_id)
        self.pubs[tile] = pub
        try:
            await self._push(pub, force=True)
            session = await self._session()
            pub.handle = await session.attach(VIDEOROOM, opaque_id=f"publish-{ep.code}")
            pub.pump = asyncio.create_task(self._pump(pub), name=f"publish-pump-{tile}")
            await self.sources.room.handle()  # the room exists
            await pub.handle.request(
                {
                    "request": "join",
                    "ptype": "publisher",
                    "room": ROOM_ID,
                    "id": publisher_id,
                    "display": f"{ep.name} ({self.principal.username})",
                }
            )
            reply = await pub.handle.request(
                {"request": "publish", "audio": True, "video": True},
                jsep={"type": "offer", "sdp": jsep["sdp"]},
            )
            if not reply.jsep:
                raise JanusError("publish", None, "Janus sent no answer")
            video_mid, audio_mid = _mids(reply.data.get("streams"), reply.jsep.get("sdp", ""))
            if video_mid is None:
                raise InvalidInput.one("jsep", "the offer has no H.264 video the room accepts")
            await self.send({"type": "answer", "tile": tile, "jsep": reply.jsep})
            pub.fw.publisher_id = publisher_id
            await self.sources.start(pub.fw, video_mid, audio_mid)
            await self.presence(ep.code, True)
            await self.audit(
                self.principal,
                "live.publish",
                ep.code,
                "ok",
                {"tile": tile, "audio": audio_mid is not None, "publisher": publisher_id},
            )
        except BaseException as e:
            with contextlib.suppress(Exception):
                await self.audit(
                    self.principal, "live.publish", ep.code, "failed", {"reason": str(e)[:200]}
                )
            await self._release(pub, reason="failed", audit=False)
            raise
        self._ensure_monitor()
        await self._push(pub, force=True)

    async def _on_unpublish(self, tile: str) -> None:
        p = self.pubs.get(tile)
        if p is not None:
            await self._release(p, reason="unpublished")
        self._claimed.discard(tile)
        await self.send({"type": "status", "tile": tile, "state": "stopped", "reason": ""})

    async def _on_candidate(self, tile: str, msg: Json) -> None:
        p = self.pubs.get(tile)
        if p is None or p.handle is None:
            return
        cand = msg.get("candidate")
        if not isinstance(cand, dict) or not cand.get("candidate"):
            candidate: Json = {"completed": True}
        else:
            candidate = {
                "candidate": str(cand["candidate"]),
                "sdpMid": cand.get("sdpMid"),
                "sdpMLineIndex": cand.get("sdpMLineIndex"),
            }
        try:
            await p.handle.trickle(candidate)
        except JanusError as e:
            log.info("publish tile=%s candidate refused: %s", tile, e.detail)

    # --- internals ----------------------------------------------------------------------------

    async def _session(self) -> JanusSession:
        self._janus = await self.media.page_session(self._janus)
        return self._janus

    async def _pump(self, p: _Pub) -> None:
        assert p.handle is not None
        while True:
            ev = await p.handle.events.get()
            kind = ev.get("janus")
            if kind == "trickle":
                cand = ev.get("candidate") or {}
                await self.send(
                    {
                        "type": "candidate",
                        "tile": p.tile,
                        "candidate": None if cand.get("completed") else cand,
                    }
                )
            elif kind == "webrtcup":
                p.webrtc_up = True
                await self._push(p)
            elif kind == "hangup":
                p.webrtc_up = False
                p.error = f"connection closed by the video edge ({ev.get('reason', 'hangup')})"
                p.retry = True
                await self._push(p)

    async def _release(self, p: _Pub, reason: str, audit: bool = True) -> None:
        if self.pubs.get(p.tile) is p:
            del self.pubs[p.tile]
        if p.pump is not None:
            p.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await p.pump
        live = p.fw is not None and self.sources.live.get(p.code) is p.fw
        if p.fw is not None:
            await self.sources.stop(p.fw)
        if live:
            with contextlib.suppress(Exception):
                await self.presence(p.code, False)
        if p.handle is not None:
            with contextlib.suppress(Exception):
                await p.handle.request({"request": "leave"})
            with contextlib.suppress(Exception):
                await p.handle.detach()
        if live and audit:
            with contextlib.suppress(Exception):
                await self.audit(self.principal, "live.unpublish", p.code, "ok", {"reason": reason})

    def _state(self, p: _Pub) -> tuple[str, str]:
        if p.error:
            return "error", p.error
        if p.fw is None or self.sources.live.get(p.code) is not p.fw or not p.webrtc_up:
            return "connecting", ""
        stats = self.media.transport.switch.snapshot().inputs.get(p.fw.video_input)
        if stats is None or stats.packets == 0:
            return "connecting", ""
        return "publishing", ""

    async def _push(self, p: _Pub, force: bool = False) -> None:
        state, reason = self._state(p)
        if not force and (state, reason) == p.last_sent:
            return
        p.last_sent = (state, reason)
        await self.send(
            {
                "type": "status",
                "tile": p.tile,
                "state": state,
                "reason": reason,
                "code": p.code,
                "name": p.name,
                "publishing": True,
                "retry": state == "error" and p.retry,
            }
        )

    def _ensure_monitor(self) -> None:
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.create_task(self._monitor_loop(), name="publish-monitor")

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            for p in list(self.pubs.values()):
                with contextlib.suppress(Exception):
                    await self._push(p)

    async def _fail(self, tile: str, reason: str) -> None:
        p = self.pubs.get(tile)
        if p is not None:
            p.error = reason
            await self._push(p, force=True)
        else:
            await self.send(
                {
                    "type": "status",
                    "tile": tile,
                    "state": "error",
                    "reason": reason,
                    "publishing": True,
                }
            )


def _mids(streams: object, answer_sdp: str) -> tuple[str | None, str | None]:
    """The mids of the published H.264 video and Opus audio (from the ``configured`` event's
    ``streams``, or the answer's SDP when Janus sent none)."""
    video = audio = None
    if isinstance(streams, list):
        for s in streams:
            if not isinstance(s, dict) or s.get("disabled"):
                continue
            if s.get("type") == "video" and s.get("codec") == "h264" and video is None:
                video = str(s.get("mid"))
            elif s.get("type") == "audio" and s.get("codec") == "opus" and audio is None:
                audio = str(s.get("mid"))
    if video is None and audio is None:
        kind = mid = None
        for line in answer_sdp.splitlines():
            if line.startswith("m="):
                kind = line[2:].split(" ", 1)[0]
                port = line.split(" ")[1] if len(line.split(" ")) > 1 else "0"
                if port == "0":
                    kind = None
            elif line.startswith("a=mid:") and kind is not None:
                mid = line[6:].strip()
                if kind == "video" and video is None:
                    video = mid
                elif kind == "audio" and audio is None:
                    audio = mid
    return video, audio


def parse(raw: str) -> Json | None:
    """The message as an object, or None (the viewer session reports malformed messages)."""
    try:
        msg = json.loads(raw)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None
