"""A venue's node relaying a conference hosted at another node (issue 6 item 4, venue side).

The venue page of a conference hosted elsewhere talks to its own node (its console, its Janus and
switch: the media stay local): ``/api/conferences/<id>/ws?host=<host node>``. That node keeps one
``RelayedConference`` per (host, conference) with the venue pages opened here. For each page it:

- publishes the page's camera and microphone here (``ConferencePublish``, as the host does), so
  the fabric finds the venue's publication (``FabricSources``) when another node takes it;
- takes the layouts the host pushes at once (``pushed``: ``{op: "layout"}`` on this node's
  ``conference`` bus service, sent when a chair's action changes them), newest plan version
  first, so a roll call does not wait for the next report;
- reports to the host every ``REMOTE_POLL`` s over the bus (``vmesh.<host>.rpc.conference``
  ``{op: "venue", conference, venue, node, live, content, level, hand}``: ``content`` when the
  page shares its screen here, as ``<venue>-content``); the answer is the venue's
  layout plus ``nodes`` (where each of its sources publishes). The layout (chair pushes: tiles,
  mode, mute, hand-raise answers, removal) is kept and passed to the page when it changes;
- feeds the page's tiles (pooled channels, as the host does) from this node's switch: a source
  publishing here from its publication, any other from the fabric's input
  (``FabricService.acquire`` of ``<code>`` / ``<code>/audio``, one fabric viewer per relayed
  conference and stream, released when no tile needs it). A new layout re-routes the channels'
  switch outputs: the browser's connection stays (roll call by splicing, no renegotiation). The
  host never gives a venue its own audio, so no venue hears itself here either;
- tells the page ``{type: "host", reachable: false, reason}`` when reports fail (a cut link, the
  host stopped) and ``reachable: true`` once one succeeds again; a refusal from the host
  (the conference ended, the venue not in it) ends the page (``{type: "ended", reason}``).

Chair pages run at the host node only.

Public: ``RelayedConference``, ``relay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

from sqlalchemy import select

from vmesh.auth.principal import Principal
from vmesh.conference.core import CONTENT_SUFFIX
from vmesh.conference.service import (
    CREDENTIAL,
    REMOTE_POLL,
    VENUE_ROLES,
    ChairPage,
    FabricFeeds,
    Json,
    VenuePage,
    credential,
    feed_channel,
    tile_ok,
)
from vmesh.conference.store import VENUE_KINDS
from vmesh.directory.models import Entry
from vmesh.errors import Conflict, Forbidden, InvalidInput, VmeshError
from vmesh.federation.bus import RemoteError
from vmesh.media.publish import BrowserSources, Endpoint
from vmesh.media.service import MediaService
from vmesh.node.context import NodeContext

log = logging.getLogger(__name__)

REPORT_TIMEOUT = 2.0  # one report's bus request


class RelayedConference:
    """See the module docstring."""

    def __init__(self, ctx: NodeContext, host: str, conf_id: int) -> None:
        self.ctx = ctx
        self.host = host
        self.conf_id = conf_id
        self.here = ctx.config.node.code
        self.pages: dict[str, VenuePage] = {}
        self.layouts: dict[str, Json] = {}  # venue -> the host's last layout (with "nodes")
        self.hands: dict[str, bool] = {}  # venue -> a hand raised/lowered not yet reported
        self.reachable: dict[str, bool] = {}
        self._reporters: dict[str, asyncio.Task[None]] = {}
        self.lock = asyncio.Lock()
        self.feeds = FabricFeeds(
            self._viewer,
            credential(host, conf_id),
            f"conference relay {host}/{conf_id}",
            self._on_feed,
        )

    async def _on_feed(self) -> None:
        async with self.lock:
            for page in list(self.pages.values()):
                self._route(page)

    @property
    def _viewer(self) -> str:
        return f"conference-{self.host}-{self.conf_id}"

    def _media(self) -> MediaService:
        if self.ctx.media is None:
            raise Conflict("live video is not enabled on this node ([media] enabled)")
        return self.ctx.media

    # --- pages (the interface of LiveConference that the WebSocket uses) ------------------------

    async def endpoint(self, who: Principal, code: object) -> Endpoint:
        """The venue of this node ``who`` may run a page for."""
        if not isinstance(code, str):
            raise InvalidInput.one("code", "must be a 20-digit venue code", code)
        async with self.ctx.db.sessions() as s:
            e = (await s.execute(select(Entry).where(Entry.code == code))).scalar_one_or_none()
        if e is None or not who.covers(e.path):
            raise InvalidInput.one("code", f"no venue {code} at this node in your scope", code)
        if e.kind not in VENUE_KINDS:
            raise InvalidInput.one("code", f"{e.name} is a {e.kind}, not a venue", code)
        if not who.has(*VENUE_ROLES):
            raise Forbidden(f"a venue's page needs one of the roles {', '.join(VENUE_ROLES)}")
        return Endpoint(e.code, e.name, e.kind, e.path)

    def check_chair(self, who: Principal) -> None:
        raise Forbidden(f"conference {self.conf_id} is steered at its host node {self.host}")

    async def add_chair(self, chair: ChairPage) -> None:  # pragma: no cover (refused above)
        raise Forbidden(f"conference {self.conf_id} is steered at its host node {self.host}")

    def remove_chair(self, chair: ChairPage) -> None:
        pass

    async def open_thumb(self, chair: ChairPage, tile: str, code: object) -> None:
        raise Forbidden(f"conference {self.conf_id} is steered at its host node {self.host}")

    async def add_page(self, page: VenuePage) -> None:
        old = self.pages.get(page.code)
        self.pages[page.code] = page
        if old is not None and old is not page:
            await old.retire()
        if page.code not in self._reporters:
            self._reporters[page.code] = asyncio.create_task(
                self._report_loop(page.code), name=f"conference-relay-{self.conf_id}-{page.code}"
            )
        layout = self.layouts.get(page.code)
        if layout is not None:
            await self._push(page, layout, force=True)

    async def remove_page(self, page: VenuePage) -> None:
        if self.pages.get(page.code) is not page:
            return
        del self.pages[page.code]
        task = self._reporters.pop(page.code, None)
        if task is not None:
            task.cancel()
        with contextlib.suppress(Exception):  # tell the host now: dropped, not unreachable
            await self._report(page.code, live=False)
        self.layouts.pop(page.code, None)
        await self._fetch()
        if not self.pages:
            await self.stop()
            if self.ctx.conferences is not None:
                self.ctx.conferences.relays.pop((self.host, self.conf_id), None)

    async def open_tile(self, page: VenuePage, tile: str) -> None:
        if not tile_ok(tile):
            raise InvalidInput.one("tile", "must be v0-v8, a0-a3 or c", tile)
        media = self._media()
        old = page.tiles.pop(tile, None)
        if old is not None:
            media.give_back(old)
        ch = media.lend(page.live.owner)
        page.tiles[tile] = ch
        src, name = self._source_of(page.code, tile)
        feed_channel(media.transport, ch, self._input_of(page.code, src, tile), tile[0] == "a")
        await page.live.open_channel(tile, ch, src or "", name)
        await self._fetch()

    async def close_tile(self, page: VenuePage, tile: str) -> None:
        page.tiles.pop(tile, None)

    async def act(
        self, who: Principal, action: str, event: Any, target: str = "", detail: Any = None
    ) -> None:
        """A venue's own request (the hand): passed to the host with the next report."""
        if action not in ("hand", "lower_hand"):
            raise Forbidden(f"conference {self.conf_id} is steered at its host node {self.host}")
        self.hands[target] = action == "hand"

    # --- reports to the host --------------------------------------------------------------------

    async def _report(self, venue: str, *, live: bool, content: bool = False) -> Json:
        fed = self.ctx.federation
        if fed is None or fed.bus is None:
            raise Conflict("this node runs without [federation]: it cannot reach the host")
        page = self.pages.get(venue)
        body: Json = {
            "op": "venue",
            "conference": self.conf_id,
            "venue": venue,
            "node": self.here,
            "live": live,
            "content": content,
            "level": page.level if page is not None else None,
        }
        if venue in self.hands:
            body["hand"] = self.hands[venue]
        reply = await fed.bus.call(self.host, "conference", body, timeout=REPORT_TIMEOUT)
        if body.get("hand") is not None and self.hands.get(venue) == body["hand"]:
            del self.hands[venue]
        return dict(reply)

    async def _report_loop(self, venue: str) -> None:
        while venue in self.pages:
            page = self.pages[venue]
            b = self.ctx.media.browser if self.ctx.media is not None else None
            live = isinstance(b, BrowserSources) and venue in b.live
            content = isinstance(b, BrowserSources) and venue + CONTENT_SUFFIX in b.live
            try:
                layout = await self._report(venue, live=live, content=content)
            except RemoteError as e:
                if e.status in (404, 409, 403, 422):
                    log.info("conference %s/%d refused %s: %s", self.host, self.conf_id, venue, e)
                    with contextlib.suppress(Exception):
                        await page.send({"type": "ended", "reason": e.detail})
                    return
                await self._unreachable(page, str(e))
            except (TimeoutError, VmeshError, OSError) as e:
                await self._unreachable(page, getattr(e, "detail", None) or str(e))
            except Exception as e:  # keep reporting whatever happened
                log.exception("conference relay %s/%d report failed", self.host, self.conf_id)
                await self._unreachable(page, str(e))
            else:
                if not self.reachable.get(venue, False):
                    self.reachable[venue] = True
                    with contextlib.suppress(Exception):
                        await page.send({"type": "host", "reachable": True, "host": self.host})
                async with self.lock:
                    await self._apply(page, layout)
            await asyncio.sleep(REMOTE_POLL)

    async def _unreachable(self, page: VenuePage, reason: str) -> None:
        if self.reachable.get(page.code, True):
            log.warning("conference host %s unreachable for %s: %s", self.host, page.code, reason)
            self.reachable[page.code] = False
            with contextlib.suppress(Exception):
                await page.send(
                    {"type": "host", "reachable": False, "host": self.host, "reason": reason}
                )

    # --- layout → switch --------------------------------------------------------------------------

    def _source_of(self, venue: str, tile: str) -> tuple[str | None, str]:
        layout = self.layouts.get(venue)
        if layout is None:
            return None, ""
        entries = list(layout.get("video") or []) + list(layout.get("audio") or [])
        if layout.get("content"):
            entries.append(layout["content"])
        for e in entries:
            if e.get("tile") == tile:
                return (e.get("code") or None), str(e.get("name") or "")
        return None, ""

    def _node_of(self, venue: str, src: str) -> str:
        return str((self.layouts.get(venue) or {}).get("nodes", {}).get(src) or self.host)

    def _input_of(self, venue: str, src: str | None, tile: str) -> str | None:
        if src is None:
            return None
        audio = tile[0] == "a"
        b = self.ctx.media.browser if self.ctx.media is not None else None
        fw = b.live.get(src) if isinstance(b, BrowserSources) else None
        if fw is not None:  # publishing at this node
            return fw.audio_input if audio else fw.video_input
        return self.feeds.inputs.get(f"{src}/audio" if audio else src)

    def _wanted(self) -> dict[str, str]:
        """Fabric streams the tiles here need -> the node each publishes at."""
        out: dict[str, str] = {}
        for page in self.pages.values():
            for tile in page.tiles:
                src, _ = self._source_of(page.code, tile)
                node = self._node_of(page.code, src) if src else self.here
                if src is not None and node != self.here:
                    out[f"{src}/audio" if tile[0] == "a" else src] = node
        return out

    async def _fetch(self) -> None:
        fabric = self.ctx.media.fabric if self.ctx.media is not None else None
        if fabric is None:
            return
        await self.feeds.sync(fabric, self._wanted())

    def _route(self, page: VenuePage) -> list[tuple[str, str, str]]:
        """Route every tile of ``page`` by its layout; (tile, code, name) of each."""
        media = self._media()
        out = []
        for tile, ch in list(page.tiles.items()):
            if ch.owner is None:
                page.tiles.pop(tile, None)
                continue
            src, name = self._source_of(page.code, tile)
            feed_channel(media.transport, ch, self._input_of(page.code, src, tile), tile[0] == "a")
            out.append((tile, src or "", name))
        return out

    async def pushed(self, venue: str, layout: Json) -> None:
        """The host pushed ``venue``'s new layout (a chair's action): apply it now."""
        page = self.pages.get(venue)
        if page is not None:
            async with self.lock:
                await self._apply(page, layout)

    async def _apply(self, page: VenuePage, layout: Json) -> None:
        old = self.layouts.get(page.code)
        if old is not None and int(layout.get("version") or 0) < int(old.get("version") or 0):
            return  # a report's answer older than a layout pushed since
        self.layouts[page.code] = layout
        if old == layout:
            self._route(page)  # a fabric input may have come since
            return
        for tile, code, name in self._route(page):
            with contextlib.suppress(Exception):
                await page.live.relabel(tile, code, name)
        await self._fetch()
        await self._push(page, layout)

    async def _push(self, page: VenuePage, layout: Json, force: bool = False) -> None:
        msg = {k: v for k, v in layout.items() if k not in ("nodes", "version")}
        if force or msg != page.last_layout:
            page.last_layout = msg
            with contextlib.suppress(Exception):
                await page.send(msg)

    async def stop(self) -> None:
        for task in list(self._reporters.values()):
            task.cancel()
        self._reporters.clear()
        await self.feeds.release_all(self.ctx.media.fabric if self.ctx.media is not None else None)


def relay(ctx: NodeContext, host: str, conf_id: int) -> RelayedConference:
    """The relayed conference (made on first use; stopped with the node's conference service)."""
    from vmesh.conference.api import service_of

    relays = service_of(ctx).relays
    r = relays.get((host, conf_id))
    if r is None:
        r = relays[(host, conf_id)] = RelayedConference(ctx, host, conf_id)
    return cast(RelayedConference, r)


# --- the fabric's admission of conference streams -------------------------------------------


def admit_conference_streams(ctx: NodeContext, svc: Any) -> None:
    """Let the fabric carry a venue's publication to the other venues' nodes of its conference,
    downward too (where a camera would need a grant). Wraps the fabric's ``credentials`` and
    ``admit`` (the grants'): a ``conference:<host>:<id>`` credential is admitted at the node where
    the stream publishes when the stream is a venue (or its content) of that conference with its
    page here — at the host, also only for a viewer node of one of its venues; anything else goes
    to the wrapped ``admit`` as before."""
    fabric = ctx.fabric
    if fabric is None or getattr(fabric, "conference_admission", False):
        return
    fabric.conference_admission = True  # type: ignore[attr-defined]
    creds, admit = fabric.credentials, fabric.admit

    def credentials(stream: str, user: str) -> dict[str, Any]:
        if user.startswith(CREDENTIAL):
            return {"grant": user}
        return creds(stream, user) if creds is not None else {}

    async def admit_stream(stream: str, viewer_node: str, grant: str | None) -> Any:
        if grant is None or not grant.startswith(CREDENTIAL):
            return await admit(stream, viewer_node, grant) if admit is not None else None
        host, _, conf = grant[len(CREDENTIAL) :].partition(":")
        venue = stream.removesuffix("/audio").removesuffix(CONTENT_SUFFIX)
        if conf.isdigit():
            if host == ctx.config.node.code:
                lc = svc.running.get(int(conf))
                nodes = {v.node or host for v in lc.info.venues} if lc is not None else set()
                if lc is not None and venue in lc.pages and viewer_node in nodes:
                    return None
            else:
                r = svc.relays.get((host, int(conf)))
                if r is not None and venue in r.pages:
                    return None
        raise Forbidden(f"{stream} is not a venue of conference {conf} of {host} at this node")

    fabric.credentials = credentials
    fabric.admit = admit_stream
