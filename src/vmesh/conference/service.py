"""Running conferences on the host node: the floor applied to the switch, venue and chair pages.

``ConferenceService`` keeps one ``LiveConference`` per active conference (loaded on first use,
from its saved floor state). A ``LiveConference`` owns:

- the ``Floor`` (``vmesh.conference.core``); every chair action goes through ``act``: the event is
  applied (or refused with the reason, nothing changed), the state saved, the action audited as
  ``conference.<action>``, the plan applied and pushed;
- the venue pages (``VenuePage``: one per venue; a page that joins again replaces the old one).
  Each page publishes its camera and microphone as its venue (``ConferencePublish``, the
  browser-camera path of ``vmesh.media.publish``) and possibly a second stream as its content
  (source id ``<code>-content``), and watches the tiles the plan gives it: ``v0``… (video, one per
  tile of the layout), ``a0``…``a3`` (audio slots), ``c`` (content). Each tile is a pooled channel
  (``MediaService.lend``) shown through ``LiveSession.open_channel``; applying a plan re-routes the
  channels' switch outputs (``SwitchTransport.route``): the browser's connection stays, the
  picture changes at once (the switch sends the new source's cached keyframe, asks it for a new
  one and goes live there: ``feed_channel``), the sound at once. Video
  tiles never carry audio, audio slots never carry video;
- the chair pages (``ChairPage``), pushed the state and every venue's status once a second.

Joined and left come from the publications themselves (``BrowserSources.live``): a venue whose
publication is live has joined; one whose publication went away has dropped (its attendance row
gets ``left_at``; its page reconnects and republishes by itself, and the plan routes it again).
Polling advances on the conference's own clock (``poll_seconds``).

Venues at other nodes (``VenueInfo.node``, from the catalogue): their page runs at their own node,
which reports to the host every ``REMOTE_POLL`` s over the bus (``venue_poll``: is the venue's
publication live there, its hand and level) and gets back the venue's layout. Such a venue is
joined while its node reports it live, and **unreachable** when no report came for
``REMOTE_STALE`` s (a cut link, a stopped node); it is joined again with the next report. The
host's own tiles (pages here, chair thumbnails, the programme) take another node's venue through
the fabric (``FabricService.acquire`` of ``<code>`` / ``<code>/audio``, one fabric viewer per
conference and stream: a stream crosses each link once whatever the number of tiles).

Public: ``ConferenceService``, ``LiveConference``, ``VenuePage``, ``ChairPage``,
``ConferencePublish``, ``VENUE_ROLES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vmesh.audit.log import Actor, AuditLog
from vmesh.auth.principal import Principal
from vmesh.conference.core import (
    AUDIO_SLOTS,
    CONTENT_SUFFIX,
    LAYOUTS,
    ContentStarted,
    ContentStopped,
    Event,
    Floor,
    Joined,
    Left,
    LowerHand,
    Mode,
    Plan,
    RaiseHand,
    Tick,
    content_id,
)
from vmesh.conference.programme import ProgrammeRecorder
from vmesh.conference.store import Conference, ConferenceStore
from vmesh.errors import Conflict, Forbidden, InvalidInput, NotFound
from vmesh.media.channels import Channel
from vmesh.media.publish import BrowserSources, Endpoint, PublishSession
from vmesh.media.service import MediaService
from vmesh.media.viewer import LiveSession
from vmesh.switch.core import Replay

log = logging.getLogger(__name__)

Json = dict[str, Any]
Send = Callable[[Json], Awaitable[None]]
# Who may run a venue's page: whoever may publish a camera, and chairs (a chair at the main venue).
VENUE_ROLES = ("admin", "operator", "commander", "chair")
MONITOR_INTERVAL = 0.5
CONTENT_TILE = "c"
REMOTE_POLL = 0.5  # a venue's node reports to the host this often
REMOTE_STALE = 3.0  # no report for this long: the venue is unreachable


@dataclass
class RemoteVenue:
    """What a venue's own node last said (``venue_poll``), on the host's monotonic clock."""

    node: str
    seen_at: float
    live: bool = False
    level: float | None = None
    content: bool = False  # its page shares its screen there (``<venue>-content``)


CREDENTIAL = "conference:"  # the fabric user (and grant field) of a conference's streams


def credential(host: str, conf_id: int) -> str:
    """What a conference's fabric viewers carry: ``conference:<host>:<id>`` (as the fabric's user
    and, through ``credentials``, its ``grant`` field, which travels hop by hop)."""
    return f"{CREDENTIAL}{host}:{conf_id}"


def video_tile(i: int) -> str:
    return f"v{i}"


def audio_tile(i: int) -> str:
    return f"a{i}"


class ConferencePublish(PublishSession):
    """A venue page's publications: its camera as the venue, its screen as ``<venue>-content``.

    The venue was authorised when the page joined (``LiveConference.join_venue``); whatever code
    the page sends, it publishes as that venue (tile ``content``: as its content)."""

    def __init__(self, venue: Endpoint, *args: Any) -> None:
        super().__init__(*args)
        self.venue = venue

    async def _authorise(self, tile: str, code: object) -> Endpoint:
        v = self.venue
        if tile == "content":
            return Endpoint(content_id(v.code), f"{v.name} 双流", v.kind, v.path)
        return v


@dataclass(eq=False)
class VenuePage:
    code: str
    principal: Principal
    live: LiveSession
    publishing: ConferencePublish
    send: Send
    tiles: dict[str, Channel] = field(default_factory=dict)
    level: float | None = None  # the microphone level the page measures (0..1)
    last_layout: Json | None = None

    async def retire(self) -> None:
        """This venue opened on another page: tell this one, end its publication and viewing.

        Each step is best effort: the page may be a dead connection the node has not noticed yet
        (a venue that rejoins after a cut), and its publication must go all the same, or the new
        page's would be refused."""
        with contextlib.suppress(Exception):
            await self.send({"type": "replaced", "reason": "the venue was opened on another page"})
        with contextlib.suppress(Exception):
            await self.publishing.close()
        with contextlib.suppress(Exception):
            await self.live.close()


@dataclass(eq=False)
class ChairPage:
    principal: Principal
    live: LiveSession
    send: Send
    thumbs: dict[str, Channel] = field(default_factory=dict)


class FabricFeeds:
    """The fabric streams a conference's tiles need at this node (``inputs``: stream -> its
    switch input here), for the host's ``LiveConference`` and a venue node's
    ``RelayedConference`` alike.

    ``sync(fabric, wanted)`` acquires every wanted stream not yet here in the background (a slow
    node must not hold the floor), calling ``on_acquired()`` after each, and lets go of those no
    tile wants any more. A stream that cannot be had yet (its venue not yet publishing, a link
    down) is asked for again, ``RETRY_FIRST`` and then up to ``RETRY_MAX`` s apart, for as long
    as a tile wants it: no later layout change is needed to bring it (one once never came, and a
    township's tile stayed black for a whole session)."""

    RETRY_FIRST, RETRY_MAX = 1.0, 8.0

    def __init__(
        self, viewer: str, user: str, label: str, on_acquired: Callable[[], Awaitable[None]]
    ) -> None:
        self.viewer = viewer
        self.user = user
        self.label = label
        self.on_acquired = on_acquired
        self.inputs: dict[str, str] = {}
        self.wanted: dict[str, str] = {}
        self._acquiring: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def sync(self, fabric: Any, wanted: dict[str, str]) -> None:
        """``wanted``: stream -> the node it comes from."""
        self.wanted = dict(wanted)
        for stream in list(self.inputs):
            if stream not in wanted:
                del self.inputs[stream]
                with contextlib.suppress(Exception):
                    await fabric.release(stream, self.viewer)
        for stream in wanted:
            if stream in self.inputs or stream in self._acquiring:
                continue
            self._acquiring.add(stream)
            t = asyncio.create_task(self._acquire(fabric, stream))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _acquire(self, fabric: Any, stream: str) -> None:
        try:
            input_id = await self._ask_while_wanted(fabric, stream)
        finally:
            self._acquiring.discard(stream)
        if input_id is None:
            return
        if stream not in self.wanted:  # no tile wants it any more
            with contextlib.suppress(Exception):
                await fabric.release(stream, self.viewer)
            return
        self.inputs[stream] = input_id
        await self.on_acquired()

    async def _ask_while_wanted(self, fabric: Any, stream: str) -> str | None:
        """The stream's switch input here, asked for with back-off while a tile wants it; None
        once none does."""
        pause = self.RETRY_FIRST
        while (node := self.wanted.get(stream)) is not None:
            try:
                input_id: str = await fabric.acquire(stream, node, self.viewer, self.user)
                return input_id
            except Exception as e:
                log.warning(
                    "%s: stream %s not carried here yet (again in %g s): %s",
                    self.label, stream, pause, e,
                )  # fmt: skip
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.RETRY_MAX)
        return None

    def stop(self) -> None:
        """Stop asking for streams (the conference or relay ends): a pending acquisition lets go
        of its stream when it comes (never cancelled half-way through the fabric's hops)."""
        self.wanted = {}

    async def release_all(self, fabric: Any) -> None:
        self.stop()
        for stream in list(self.inputs):
            del self.inputs[stream]
            if fabric is not None:
                with contextlib.suppress(Exception):
                    await fabric.release(stream, self.viewer)


class LiveConference:
    """See the module docstring."""

    def __init__(
        self,
        info: Conference,
        store: ConferenceStore,
        audit: AuditLog,
        media: MediaService | None,
    ) -> None:
        self.info = info
        self.store = store
        self.audit = audit
        self.media = media
        st = info.state
        self.floor = Floor(
            info.main,
            [v.code for v in info.venues if v.role == "sub"],
            layout=str(st.get("layout") or "1+1"),
        )
        self._restore(st)
        self.pages: dict[str, VenuePage] = {}
        self.chairs: set[ChairPage] = set()
        self.ever_joined: set[str] = set()
        self.lock = asyncio.Lock()
        self.plan: Plan = self.floor.plan()
        self._next_poll = time.monotonic() + self.floor.poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._last_audio: dict[str, tuple[int, float]] = {}
        self._audio_kbps: dict[str, float] = {}
        self.recorder: ProgrammeRecorder | None = None
        self.remote: dict[str, RemoteVenue] = {}
        self.clock: Callable[[], float] = time.monotonic
        self.bus: Any = None  # the federation bus (set by the service): layout pushes
        # of the plan, at each _apply: wall-clock ns at least (a restarted host's come later)
        self.version = time.time_ns()
        self._pushed: dict[str, Json] = {}  # venue of another node -> the layout last pushed
        self._pushes: set[asyncio.Task[None]] = set()
        self.feeds = FabricFeeds(
            self._viewer,
            credential(info.host_node, info.id),
            f"conference={info.id}",
            self._on_feed,
        )

    async def _on_feed(self) -> None:
        async with self.lock:
            await self._apply()

    def _restore(self, st: dict[str, Any]) -> None:
        """The floor as it was saved (a node restart or a reload keeps mode, mutes, hands)."""
        f = self.floor
        known = set(f.all)
        with contextlib.suppress(ValueError, TypeError):
            f.mode = Mode(st.get("mode", "idle"))
            f.subject = st.get("subject") if st.get("subject") in known else None
            f.speakers = [v for v in st.get("speakers", []) if v in known]
            f.polling = [v for v in st.get("polling", []) if v in known]
            f.poll_seconds = float(st.get("poll_seconds", f.poll_seconds))
            f.muted = {v for v in st.get("muted", []) if v in known}
            f.hands = [v for v in st.get("hands", []) if v in known]
            f.locked = bool(st.get("locked", False))

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.info.recording and self.media is not None and self.recorder is None:
            folder = self.media.data_dir / "conferences" / str(self.info.id)
            self.recorder = ProgrammeRecorder(self.info.id, self.media, folder)
            try:
                await self.recorder.start()
            except Exception:
                log.exception("conference=%d programme recording did not start", self.info.id)
                self.recorder = None
        if self._task is None:
            self._task = asyncio.create_task(self._monitor(), name=f"conference-{self.info.id}")
        if self.media is not None and self._on_live not in (hooks := self._live_hooks()):
            hooks.append(self._on_live)
        await self._apply()

    def _live_hooks(self) -> list[Callable[[Any], None]]:
        assert self.media is not None
        return BrowserSources.of(self.media).on_live

    def _on_live(self, fw: Any) -> None:
        """A venue's camera (or screen) went live again — its page published anew after its
        connection failed: its new switch inputs replace the old, so route every tile again."""
        code = str(fw.code)
        venue = code.removesuffix(CONTENT_SUFFIX)
        if venue in self.floor.all:
            t = asyncio.create_task(self._on_feed())
            self._pushes.add(t)
            t.add_done_callback(self._pushes.discard)

    async def stop(self, reason: str) -> None:
        if self.media is not None:
            with contextlib.suppress(ValueError):
                self._live_hooks().remove(self._on_live)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for page in list(self.pages.values()):
            with contextlib.suppress(Exception):
                await page.send({"type": "ended", "reason": reason})
        for chair in list(self.chairs):
            with contextlib.suppress(Exception):
                await chair.send({"type": "ended", "reason": reason})
        if self.recorder is not None:
            await self.recorder.stop()
        await self.feeds.release_all(self.media.fabric if self.media is not None else None)

    # --- chair actions ------------------------------------------------------------------------

    async def act(
        self,
        who: Principal | Actor,
        action: str,
        event: Event,
        target: str = "",
        detail: Json | None = None,
    ) -> None:
        """Apply a chair's (or a venue's) event: refused with the reason, or applied — routed and
        pushed at once (a roll call must not wait for the disk), then saved and audited; if that
        fails the floor and its routes go back to what they were and the error is raised."""
        t0 = time.perf_counter()
        async with self.lock:
            t_lock = time.perf_counter()
            audit_detail = {"conference": self.info.id, **(detail or {})}
            before = copy.deepcopy(self.floor)
            try:
                self.floor.apply(event)
            except (InvalidInput, Conflict) as e:
                await self.audit.write(
                    who,
                    f"conference.{action}",
                    target or self.info.main,
                    "denied",
                    {**audit_detail, "reason": str(e.errors[0].reason if e.errors else e.detail)},
                )
                raise
            if isinstance(event, Tick) or self.floor.mode is Mode.polling:
                self._next_poll = time.monotonic() + self.floor.poll_seconds
            await self._apply()
            t_routed = time.perf_counter()
            try:
                await self.store.save_state(self.info.id, self.floor.state())
                await self.audit.write(
                    who, f"conference.{action}", target or self.info.main, "ok", audit_detail
                )
                log.info(
                    "conference=%d %s: waited %.0f ms, routed in %.0f ms, written in %.0f ms",
                    self.info.id, action, (t_lock - t0) * 1e3, (t_routed - t_lock) * 1e3,
                    (time.perf_counter() - t_routed) * 1e3,
                )  # fmt: skip
            except BaseException:
                log.exception("conference=%d %s not written down: undone", self.info.id, action)
                self.floor = before
                with contextlib.suppress(Exception):
                    await self.store.save_state(self.info.id, before.state())
                with contextlib.suppress(Exception):
                    await self._apply()
                raise

    # --- venue pages --------------------------------------------------------------------------

    def venue_endpoint(self, who: Principal, code: object) -> Endpoint:
        """The venue ``who`` may run a page for (``InvalidInput``/``Forbidden`` otherwise)."""
        if not isinstance(code, str):
            raise InvalidInput.one("code", "must be a 20-digit venue code", code)
        v = self.info.venue(code)
        if v is None or code not in self.floor.all or not (v.path and who.covers(v.path)):
            raise InvalidInput.one("code", f"not a venue of conference {self.info.id}", code)
        if not who.has(*VENUE_ROLES):
            raise Forbidden(f"a venue's page needs one of the roles {', '.join(VENUE_ROLES)}")
        return Endpoint(v.code, v.name, v.kind, v.path)

    async def endpoint(self, who: Principal, code: object) -> Endpoint:
        """``venue_endpoint`` (awaited by the WebSocket, as a relayed conference's is)."""
        return self.venue_endpoint(who, code)

    async def add_page(self, page: VenuePage) -> None:
        old = self.pages.get(page.code)
        self.pages[page.code] = page
        if old is not None and old is not page:
            await old.retire()
        await self._push_layout(page, force=True)
        await self._push_chairs()

    async def remove_page(self, page: VenuePage) -> None:
        if self.pages.get(page.code) is page:
            del self.pages[page.code]

    async def open_tile(self, page: VenuePage, tile: str) -> None:
        """The page watches ``tile`` (``v<n>``, ``a<n>``, ``c``): lend it a channel, route it."""
        if not tile_ok(tile):
            raise InvalidInput.one("tile", "must be v0-v8, a0-a3 or c", tile)
        old = page.tiles.pop(tile, None)
        if old is not None:
            self._media().give_back(old)
        ch = self._media().lend(page.live.owner)
        page.tiles[tile] = ch
        code, name = self._route_tile(page.code, tile, ch)
        await page.live.open_channel(tile, ch, code, name)
        await self._fetch_remote()  # a source of another node: its fabric stream (routed when in)

    async def close_tile(self, page: VenuePage, tile: str) -> None:
        page.tiles.pop(tile, None)  # the LiveSession gives the channel back

    # --- chair pages --------------------------------------------------------------------------

    def check_chair(self, who: Principal) -> None:
        if not self.info.is_chair(who):
            raise Forbidden(f"only the chairs of conference {self.info.id} may do this")

    async def add_chair(self, chair: ChairPage) -> None:
        self.chairs.add(chair)
        await chair.send(self.snapshot())

    def remove_chair(self, chair: ChairPage) -> None:
        self.chairs.discard(chair)

    async def open_thumb(self, chair: ChairPage, tile: str, code: object) -> None:
        """An on-demand thumbnail of venue ``code`` on the chair's page (video only)."""
        if not isinstance(code, str) or code not in self.floor.all:
            raise InvalidInput.one("code", f"not a venue of conference {self.info.id}", code)
        ch = chair.thumbs.get(tile)
        if ch is None or ch.owner is None:
            ch = self._media().lend(chair.live.owner)
            chair.thumbs[tile] = ch
            self._feed(ch, code, audio=False)
            await chair.live.open_channel(tile, ch, code, self._name(code))
        else:
            self._feed(ch, code, audio=False)
            await chair.live.relabel(tile, code, self._name(code))
        await self._fetch_remote()

    # --- plan → switch --------------------------------------------------------------------------

    def _media(self) -> MediaService:
        if self.media is None:
            raise Conflict("live video is not enabled on this node ([media] enabled)")
        return self.media

    def _live(self) -> set[str]:
        now = self.clock()
        fresh = [(v, r) for v, r in self.remote.items() if now - r.seen_at <= REMOTE_STALE]
        remote = {v for v, r in fresh if r.live} | {content_id(v) for v, r in fresh if r.content}
        if self.media is None:
            return remote
        b = self.media.browser
        return (set(b.live) if isinstance(b, BrowserSources) else set()) | remote

    @property
    def _viewer(self) -> str:
        return f"conference-{self.info.id}"

    def node_of(self, code: str) -> str:
        """The node ``code`` (a venue, or its content) publishes at."""
        base = code.removesuffix(CONTENT_SUFFIX)
        v = self.info.venue(base)
        return v.node if v is not None and v.node else self.info.host_node

    def _input_of(self, src: str | None, audio: bool) -> str | None:
        """The switch input here carrying ``src``'s audio or video: its publication here, or
        the fabric's input once acquired from its node (``None`` meanwhile)."""
        if src is None:
            return None
        b = self.media.browser if self.media is not None else None
        fw = b.live.get(src) if isinstance(b, BrowserSources) else None
        if fw is not None:
            return fw.audio_input if audio else fw.video_input
        return self.feeds.inputs.get(f"{src}/audio" if audio else src)

    def _wanted(self) -> set[str]:
        """Fabric streams the tiles here need: sources of other nodes in this node's tiles."""
        out: set[str] = set()
        for page in self.pages.values():
            for tile in page.tiles:
                src, audio = self._source_of(page.code, tile)
                if src is not None and self.node_of(src) != self.info.host_node:
                    out.add(f"{src}/audio" if audio else src)
        for chair in self.chairs:
            for ch in chair.thumbs.values():
                src = ch.source
                if src and self.node_of(src) != self.info.host_node:
                    out.add(src)
        return out

    async def _fetch_remote(self) -> None:
        """Acquire the wanted fabric streams (in the background: a slow node must not hold the
        floor) and let go of those no tile needs any more."""
        fabric = self.media.fabric if self.media is not None else None
        if fabric is None:
            return
        wanted = self._wanted()
        await self.feeds.sync(fabric, {s: self.node_of(s.removesuffix("/audio")) for s in wanted})

    async def venue_poll(
        self,
        venue: object,
        node: str,
        live: bool,
        level: float | None = None,
        hand: bool | None = None,
        content: bool = False,
    ) -> Json:
        """A report from the node where ``venue``'s page runs; the venue's layout and where
        each of its sources publishes (``nodes``)."""
        v = self.info.venue(venue) if isinstance(venue, str) else None
        if v is None or not v.node or v.node == self.info.host_node:
            raise InvalidInput.one("venue", f"not a venue of another node in {self.info.id}", venue)
        if node != v.node:
            raise Forbidden(f"venue {v.code} publishes at node {v.node}, not {node}")
        r = self.remote.get(v.code)
        was = self._live()
        was_live, was_content = v.code in was, content_id(v.code) in was
        if r is None:
            r = self.remote[v.code] = RemoteVenue(node, self.clock())
        r.seen_at, r.live, r.level, r.content = self.clock(), live, level, content
        if was_live != live or was_content != content:
            await self.sync()
        if hand is not None and hand != (v.code in self.floor.hands):
            # the venue's page raised (or lowered) its hand at its node (申请发言)
            who = Actor(f"node:{node}", "node")
            ev: Event = RaiseHand(v.code) if hand else LowerHand(v.code)
            with contextlib.suppress(InvalidInput, Conflict):  # refused: audited, reply as is
                await self.act(who, "hand" if hand else "lower_hand", ev, v.code)
        return self.remote_layout(v.code)

    def remote_layout(self, venue: str) -> Json:
        """``layout_of`` for a venue of another node, plus ``nodes`` (where each of its sources
        publishes) and ``version`` (of the plan: a venue node keeps the newest it was told)."""
        msg = self.layout_of(venue)
        codes = [e["code"] for e in msg["video"] + msg["audio"] if e["code"]]
        if msg["content"]:
            codes.append(msg["content"]["code"])
        msg["nodes"] = {c: self.node_of(c) for c in codes}
        msg["version"] = self.version
        return msg

    def _push_remote(self) -> None:
        """Tell the node of each reporting venue of another node its new layout at once
        (``{op: "layout"}`` over the bus, in the background), rather than at its next report:
        a roll call reaches those venues without waiting for ``REMOTE_POLL``. A push that fails
        changes nothing: the next report's answer carries the layout all the same."""
        if self.bus is None:
            return
        for code, r in self.remote.items():
            msg = self.remote_layout(code)
            if {**msg, "version": 0} == {**self._pushed.get(code, {}), "version": 0}:
                continue
            self._pushed[code] = msg
            body = {"op": "layout", "host": self.info.host_node, "conference": self.info.id,
                    "venue": code, "layout": msg}  # fmt: skip
            t = asyncio.create_task(self._push_to(r.node, body))
            self._pushes.add(t)
            t.add_done_callback(self._pushes.discard)

    async def _push_to(self, node: str, body: Json) -> None:
        try:
            await self.bus.call(node, "conference", body, timeout=REMOTE_POLL * 4)
        except Exception as e:  # the venue's next report gets it
            log.info("conference=%d layout push to node %s failed: %s", self.info.id, node, e)

    def _feed(self, ch: Channel, src: str | None, *, audio: bool) -> None:
        """Route ``src``'s video (or audio) into ``ch`` and nothing into the other half."""
        feed_channel(self._media().transport, ch, self._input_of(src, audio), audio)

    def _source_of(self, venue: str, tile: str) -> tuple[str | None, bool]:
        vp = self.plan.venues.get(venue)
        if vp is None:
            return None, False
        if tile == CONTENT_TILE:
            return vp.content, False
        i = int(tile[1:])
        if tile[0] == "v":
            return (vp.video[i] if i < len(vp.video) else None), False
        return (vp.audio[i] if i < len(vp.audio) else None), True

    def _route_tile(self, venue: str, tile: str, ch: Channel) -> tuple[str, str]:
        src, audio = self._source_of(venue, tile)
        self._feed(ch, src, audio=audio)
        return (src or "", self._name(src) if src else "")

    def _name(self, code: str) -> str:
        if code.endswith(CONTENT_SUFFIX):
            base = code[: -len(CONTENT_SUFFIX)]
            return f"{self._name(base)} 双流"
        v = self.info.venue(code)
        return v.name if v is not None else code

    def _programme(self) -> None:
        """The recorded programme: the featured picture, the speaker's (else main) audio."""
        if self.recorder is None:
            return
        f = self.floor
        heard = f.audible()
        speaker = next((v for v in heard if v != f.main), heard[0] if heard else None)
        self.recorder.route(
            self._input_of(self.plan.featured, False), self._input_of(speaker, True)
        )

    async def _apply(self) -> None:
        """Route every page's tiles by the current plan and push layouts and state."""
        self.plan = self.floor.plan()
        self.version = max(self.version + 1, time.time_ns())
        self._push_remote()
        await self._fetch_remote()
        self._programme()
        for page in list(self.pages.values()):
            if page.code not in self.floor.all:
                continue
            for tile, ch in list(page.tiles.items()):
                if ch.owner is None:  # given back with its tile
                    page.tiles.pop(tile, None)
                    continue
                code, name = self._route_tile(page.code, tile, ch)
                with contextlib.suppress(Exception):
                    await page.live.relabel(tile, code, name)
            await self._push_layout(page)
        for chair in list(self.chairs):
            for tile, ch in list(chair.thumbs.items()):
                if ch.owner is None:
                    chair.thumbs.pop(tile, None)
        await self._push_chairs()

    def layout_of(self, venue: str) -> Json:
        vp = self.plan.venues.get(venue)
        f = self.floor

        def entry(tile: str, code: str | None) -> Json:
            return {"tile": tile, "code": code, "name": self._name(code) if code else ""}

        video = [entry(video_tile(i), c) for i, c in enumerate(vp.video)] if vp else []
        audio = [entry(audio_tile(i), c) for i, c in enumerate(vp.audio)] if vp else []
        return {
            "type": "layout",
            "conference": self.info.id,
            "title": self.info.title,
            "venue": venue,
            "venue_name": self._name(venue),
            "layout": f.layout,
            "mode": f.mode.value,
            "featured": self.plan.featured,
            "video": video,
            "audio": audio,
            "content": entry(CONTENT_TILE, vp.content) if vp and vp.content else None,
            "muted": venue in f.muted,
            "hand": venue in f.hands,
            "removed": venue not in f.all,
        }

    async def _push_layout(self, page: VenuePage, force: bool = False) -> None:
        msg = self.layout_of(page.code)
        if force or msg != page.last_layout:
            page.last_layout = msg
            with contextlib.suppress(Exception):
                await page.send(msg)

    # --- state for chairs -----------------------------------------------------------------------

    def venue_status(self, code: str, live: set[str]) -> str:
        if code not in self.floor.all:
            return "removed"
        if code in live:
            return "joined"
        r = self.remote.get(code)
        if r is not None and self.clock() - r.seen_at > REMOTE_STALE:
            return "unreachable"
        return "dropped" if code in self.ever_joined else "absent"

    def snapshot(self) -> Json:
        f = self.floor
        live = self._live()
        venues = []
        for v in self.info.venues:
            page = self.pages.get(v.code)
            venues.append(
                {
                    "code": v.code,
                    "name": v.name,
                    "role": v.role,
                    "status": self.venue_status(v.code, live),
                    "muted": v.code in f.muted,
                    "hand": v.code in f.hands,
                    "speaking": v.code in f.audible(),
                    "featured": v.code == self.plan.featured,
                    "level": page.level if page is not None else self._remote_level(v.code),
                    "node": v.node or self.info.host_node,
                    "audio_kbps": round(self._audio_kbps.get(v.code, 0.0), 1),
                    "content": f.content == v.code,
                }
            )
        return {
            "type": "state",
            "conference": self.info.id,
            "title": self.info.title,
            "status": self.info.status,
            "floor": f.state(),
            "featured": self.plan.featured,
            "layouts": list(LAYOUTS),
            "audio_slots": AUDIO_SLOTS,
            "venues": venues,
        }

    def _remote_level(self, code: str) -> float | None:
        r = self.remote.get(code)
        return r.level if r is not None else None

    async def _push_chairs(self) -> None:
        if not self.chairs:
            return
        msg = self.snapshot()
        for chair in list(self.chairs):
            with contextlib.suppress(Exception):
                await chair.send(msg)

    # --- the conference's clock -------------------------------------------------------------------

    async def sync(self) -> None:
        """Turn publications that started or stopped into joined/left (and content) events."""
        live = self._live()
        now = datetime.now(UTC)
        events: list[tuple[Event, str]] = []
        f = self.floor
        for v in f.all:
            if v in live and v not in f.joined:
                events.append((Joined(v), "joined"))
            elif v not in live and v in f.joined:
                events.append((Left(v), "left"))
            c = content_id(v)
            if c in live and f.content != v and v in live:
                events.append((ContentStarted(v), "content"))
            elif c not in live and f.content == v:
                events.append((ContentStopped(v), "content"))
        if not events:
            return
        async with self.lock:
            for ev, what in events:
                self.floor.apply(ev)
                if isinstance(ev, Joined):
                    self.ever_joined.add(ev.venue)
                    await self.store.joined(self.info.id, ev.venue, now)
                    log.info("conference=%d venue=%s joined", self.info.id, ev.venue)
                elif isinstance(ev, Left):
                    await self.store.left(
                        self.info.id, ev.venue, now, "the venue stopped publishing"
                    )
                    log.info("conference=%d venue=%s left", self.info.id, ev.venue)
                else:
                    log.info("conference=%d %s %s", self.info.id, what, ev)
            await self._apply()

    def _measure_audio(self, dt: float) -> None:
        if self.media is None:
            return
        snap = self.media.transport.switch.snapshot().inputs
        for v in self.floor.all:
            st = snap.get(f"{v}/audio")
            if st is None:
                self._audio_kbps.pop(v, None)
                self._last_audio.pop(v, None)
                continue
            prev = self._last_audio.get(v)
            self._last_audio[v] = (st.bytes, time.monotonic())
            if prev is not None and dt > 0:
                self._audio_kbps[v] = (st.bytes - prev[0]) * 8 / 1000 / dt

    async def _monitor(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            try:
                await self.sync()
                if self.floor.mode is Mode.polling and time.monotonic() >= self._next_poll:
                    async with self.lock:
                        self.floor.apply(Tick())
                        self._next_poll = time.monotonic() + self.floor.poll_seconds
                        await self.store.save_state(self.info.id, self.floor.state())
                        await self._apply()
                n += 1
                if n % 2 == 0:
                    self._measure_audio(2 * MONITOR_INTERVAL)
                    await self._push_chairs()
            except Exception:
                log.exception("conference=%d monitor failed", self.info.id)


def feed_channel(t: Any, ch: Channel, input_id: str | None, audio: bool) -> None:
    """Route switch input ``input_id`` into ``ch``'s audio (or video) output, nothing into the
    other half (video tiles carry no audio, audio slots no video); ``None``: nothing at all.

    A video splice is ``Replay.keyframe``: a roll call re-routes every venue's tile at once, and
    each gets the new speaker's cached keyframe (a few packets) at once instead of its whole GOP,
    then live from the keyframe the switch asks the speaker for (through Janus, or through the
    fabric to the speaker's node)."""
    t.unroute(ch.video_output if audio else ch.audio_output)
    out = ch.audio_output if audio else ch.video_output
    if input_id is None:
        t.unroute(out)
    elif audio:
        t.route(out, input_id)
    else:
        t.route(out, input_id, Replay.keyframe)


def tile_ok(tile: str) -> bool:
    """A venue page's tile id: ``v0``… (video, up to the largest layout), ``a0``…, ``c``."""
    if tile == CONTENT_TILE:
        return True
    if len(tile) < 2 or tile[0] not in "va" or not tile[1:].isdigit():
        return False
    i = int(tile[1:])
    return i < (max(LAYOUTS.values()) if tile[0] == "v" else AUDIO_SLOTS)


class ConferenceService:
    """The node's running conferences (see the module docstring)."""

    def __init__(self, store: ConferenceStore, audit: AuditLog, media: MediaService | None) -> None:
        self.store = store
        self.audit = audit
        self.media = media
        self.running: dict[int, LiveConference] = {}
        self._lock = asyncio.Lock()
        self.rpc: asyncio.Task[Any] | None = None  # the bus subscription being made
        self.bus: Any = None  # the federation bus, when the node has one
        # Conferences hosted elsewhere with venue pages here (vmesh.conference.relay).
        self.relays: dict[tuple[str, int], Any] = {}

    async def live(self, conf_id: int) -> LiveConference:
        """The running conference (loaded on first use); ``Conflict`` if it is not active."""
        async with self._lock:
            lc = self.running.get(conf_id)
            if lc is not None:
                return lc
            info = await self.store.get(conf_id)
            if info.status != "active":
                raise Conflict(f"conference {conf_id} is {info.status}, not active")
            lc = LiveConference(info, self.store, self.audit, self.media)
            lc.bus = self.bus
            self.running[conf_id] = lc
            await lc.start()
            return lc

    async def on_rpc(self, body: dict[str, Any]) -> Json:
        """``vmesh.<host>.rpc.conference``: ``{"op": "venue", "conference": id, "venue": code,
        "node": <the venue's node>, "live": bool, "content": bool, "level": 0..1 | null}`` from
        the node where the venue's page runs (``content``: it shares its screen there); answers
        the venue's layout (``LiveConference.venue_poll``).

        ``{"op": "layout", "host": <node>, "conference": id, "venue": code, "layout": {...}}``
        from a host to the node where one of its venues' page runs (``_push_remote``): the relay
        applies it at once (``RelayedConference.pushed``); ``NotFound`` when no such page is
        here."""
        op = body.get("op")
        if op not in ("venue", "layout"):
            raise InvalidInput.one("op", "must be venue or layout", op)
        conf_id = body.get("conference")
        if not isinstance(conf_id, int) or isinstance(conf_id, bool):
            raise InvalidInput.one("conference", "must be a conference id", conf_id)
        if op == "layout":
            return await self._on_layout(conf_id, body)
        node = body.get("node")
        if not isinstance(node, str) or not node:
            raise InvalidInput.one("node", "must be the reporting node's code", node)
        level = body.get("level")
        if level is not None and (not isinstance(level, int | float) or not 0 <= level <= 1):
            raise InvalidInput.one("level", "must be a number from 0 to 1", level)
        hand = body.get("hand")
        if hand is not None and not isinstance(hand, bool):
            raise InvalidInput.one("hand", "must be true, false or absent", hand)
        content = body.get("content", False)
        if not isinstance(content, bool):
            raise InvalidInput.one("content", "must be true or false", content)
        lc = await self.live(conf_id)
        return await lc.venue_poll(
            body.get("venue"),
            node,
            bool(body.get("live")),
            None if level is None else float(level),
            hand,
            content,
        )

    async def _on_layout(self, conf_id: int, body: dict[str, Any]) -> Json:
        host, venue, layout = body.get("host"), body.get("venue"), body.get("layout")
        if not isinstance(host, str) or not host:
            raise InvalidInput.one("host", "must be the host node's code", host)
        if not isinstance(layout, dict) or not isinstance(layout.get("version"), int):
            raise InvalidInput.one("layout", "must be a venue's layout with its version", layout)
        r = self.relays.get((host, conf_id))
        if r is None or not isinstance(venue, str) or venue not in r.pages:
            raise NotFound(f"no page of venue {venue} of conference {host}/{conf_id} here")
        await r.pushed(venue, layout)
        return {"applied": True}

    def running_or_none(self, conf_id: int) -> LiveConference | None:
        return self.running.get(conf_id)

    async def end(self, conf_id: int, reason: str) -> None:
        lc = self.running.pop(conf_id, None)
        if lc is not None:
            await lc.stop(reason)

    async def stop(self) -> None:
        for conf_id in list(self.running):
            await self.end(conf_id, "the node is stopping")
        for r in list(self.relays.values()):
            await r.stop()
        self.relays.clear()


def not_found(conf_id: int) -> NotFound:
    return NotFound(f"conference {conf_id} not found")
