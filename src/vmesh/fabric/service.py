"""``FabricService``: a node's agent of the fabric — streams in and out over its node links.

RPC (``vmesh.<node>.rpc.fabric``, JSON over the federation ``Bus``)::

    -> {"op": "open", "stream": "<camera code>", "camera_node": "<node code>",
        "from": "<downstream node>", "addr": "10.77.0.3", "port": 40123,
        "user": "alice", "viewer_node": "<node code>"}
    <- {"addr": "10.77.0.2", "port": 40555, "hops_above": 1}
    -> {"op": "close", "stream": "...", "from": "<downstream node>"}
    <- {"closed": true}
    -> {"op": "record", "stream": "...", "user": "alice", "viewer_node": "...", "viewer": "..."}
    <- {"recorded": true}                 (a view, recorded at the camera's node: fabric.serve)
    -> {"op": "parents"}
    <- {"parents": ["<node code>", ...]}   (this node's configured parents, identified)

An ``open`` may carry ``"via": "<camera node>"``: take the stream straight from the camera's node
rather than along the node tree (a standby leg through a dual-homed camera node's second parent).

Hot standby (dual homing): a node carrying a stream from a camera node with two parents, where
the two parents' paths part at this node (the second parent is below it on another link, or is
this node), also opens the stream through the other parent (``via``) into a standby leg of the
same ``LinkIn`` (``links.Standby``): both legs carry it all the time. When the upstream sends
nothing for ``standby_after`` s while the standby leg does, the standby becomes the upstream at
once (``LinkIn.promote``: no signalling, so it works with the primary link dead and the control
plane not yet moved); ``fabric.reroute`` with ``"standby": true`` is audited, the old upstream is
closed in the background and a new standby is sought later (the old parent, once reachable).

Grants (``vmesh.grants``): ``open`` and ``record`` may carry ``"grant": "<id>"``, set at the
viewer's node by ``credentials(stream, user)`` and passed on hop by hop; at the camera's node
``admit(stream, viewer_node, grant)`` refuses (``Forbidden``) a viewer node that needs a grant and
has no active one, and ``close_grant`` closes the outputs opened under a grant that ended.

A viewer's node calls ``acquire(stream, camera_node, viewer, user)``: the stream's lease here gets
the viewer as a consumer; a new lease opens the next hop towards the camera (``route.next_hop``),
which does the same with this node as a ``link`` consumer, recursively, until the camera's node
starts the camera's source (``LocalCameras.acquire``). Each hop answers by adding a switch output
towards the asking neighbour (``LinkOut``, NACK history 1024), routed from the stream's input
there; the asking node adds a switch input fed by a ``LinkIn``. ``acquire`` returns the switch
input that carries the stream at this node, for the media service to route channels from. A stream
crosses each link once: later viewers, here or below, only add consumers (``leases``).

``release`` removes a viewer; leases linger (``linger`` s) after a node's last viewer, then close
hop by hop (``close`` to the upstream neighbour, which closes at once if nothing else uses it).
Opening is serialised per stream; a failed open releases everything it took and raises the
upstream's error (``NodeUnreachable`` names the node).

May call: the switch transport, the bus, ``LocalCameras``, the audit callable. Public:
``FabricService``, ``LocalCameras``, ``SERVICE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vmesh.errors import Conflict, Forbidden, InvalidInput, NotFound
from vmesh.fabric.leases import Consumer, LeaseTable
from vmesh.fabric.links import LOOPBACK, LinkIn, LinkOut
from vmesh.fabric.route import Parents, next_hop
from vmesh.federation.bus import Bus
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, KeyframeRequest, OutputSpec
from vmesh.switch.transport import SwitchTransport

log = logging.getLogger(__name__)

SERVICE = "fabric"
STANDBY_RETRY_S = 5.0  # a stream without a standby leg (none possible, or it failed): ask again
# A standby leg that carried nothing this long while the upstream flows is given up and sought
# again: it would protect nothing when the upstream dies.
STANDBY_SILENT_S = 10.0
PARENTS_TTL_S = 60.0  # how long a camera node's answer to ``parents`` is kept
_CODE = re.compile(r"^\d{20}$")
AUDIO_SUFFIX = "/audio"
CONTENT_SUFFIX = "-content"  # a venue's shared screen (双流), a video stream of its own
_STREAM = re.compile(r"^\d{20}(/audio|-content)?$")


def audio_stream(code: str) -> str:
    """The fabric stream of ``code``'s audio: its own lease and its own UDP relay per link, beside
    the video stream ``code`` (Opus or G.711 as the source sends it, no keyframes)."""
    return code + AUDIO_SUFFIX


def is_audio(stream: str) -> bool:
    return stream.endswith(AUDIO_SUFFIX)


def _stream(body: dict[str, Any]) -> str:
    """The ``stream`` field: a 20-digit code (its video), ``<code>/audio`` (its audio) or
    ``<code>-content`` (the content a conference venue shares, video)."""
    v = body.get("stream")
    if not isinstance(v, str) or not _STREAM.match(v):
        raise InvalidInput.one(
            "stream", "must be a 20-digit code, or one followed by /audio or -content", v
        )
    return v


class LocalCameras(Protocol):
    """This node's own cameras: start one's source for the fabric, and let it go."""

    async def acquire(self, code: str) -> str:
        """Start (or share) camera ``code``'s source; its video switch input id."""
        ...

    def release(self, code: str) -> None: ...


OnInput = Callable[[str], Awaitable[None]]
"""Called with a new stream's switch input while the upstream is still being asked (see
``acquire``)."""

Tree = Callable[[], Awaitable[tuple[Parents, str | None]]]
"""(this node's subtree as code → parent, this node's parent)."""

AuditFn = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
"""(action, target code, result, detail), written as this node's ``fabric`` actor."""


@dataclass
class _Carried:
    stream: str
    input_id: str
    upstream: str | None
    link_in: LinkIn | None = None
    outputs: dict[str, tuple[str, LinkOut]] = field(default_factory=dict)
    # What opened it (asked again of a new upstream on a re-route).
    open_body: dict[str, Any] = field(default_factory=dict)
    since: float = 0.0  # opened or last re-routed at (this node's clock)
    tried_at: float = 0.0  # last re-route attempt
    pinned: bool = False  # opened with ``via``: a standby leg's hop, never re-routed by the tree
    standby_up: str | None = None  # the neighbour feeding the link's standby leg
    standby_body: dict[str, Any] = field(default_factory=dict)  # its ``open``, without ``via``
    standby_at: float = 0.0  # last attempt to set up a standby leg


def _code(body: dict[str, Any], key: str) -> str:
    v = body.get(key)
    if not isinstance(v, str) or not _CODE.match(v):
        raise InvalidInput.one(key, "must be a 20-digit code", v)
    return v


class FabricService:
    def __init__(
        self,
        *,
        node_code: str,
        bus: Bus,
        transport: SwitchTransport,
        address: str,
        tree: Tree,
        cameras: LocalCameras,
        audit: AuditFn | None = None,
        linger: float = 30.0,
        rpc_timeout: float = 15.0,
        clock: Callable[[], float] = time.time,
        port_range: tuple[int, int] | None = None,
        failover_after: float = 1.0,
        standby_after: float | None = 0.3,
        parents: Callable[[], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.code = node_code
        self.bus = bus
        self.transport = transport
        self.address = address
        self.tree = tree
        self.cameras = cameras
        self.audit = audit
        self.leases = LeaseTable(node_code, linger)
        self.rpc_timeout = rpc_timeout
        self.clock = clock
        self.port_range = port_range  # UDP ports of the link ends on ``address``; None: any
        self.failover_after = failover_after  # an upstream this long silent: look for another
        # An upstream this long silent while the standby leg is not: promote it (None: no
        # standby legs are opened from here).
        self.standby_after = standby_after
        self.parents = parents  # this node's parents' codes (answers ``parents``)
        self._parents_of: dict[str, tuple[float, list[str]]] = {}
        self._arming: set[str] = set()
        self._rerouting: asyncio.Task[None] | None = None
        self._carried: dict[str, _Carried] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # Grants (vmesh.grants.service): set by the node when grants run.
        self.credentials: Callable[[str, str], dict[str, Any]] | None = None
        self.admit: Callable[[str, str, str | None], Awaitable[Any]] | None = None
        self._by_grant: dict[str, set[tuple[str, str]]] = {}

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        # Concurrent: an open waits on the hops above; closes and other streams must not queue
        # behind it (each stream is serialised by its own lock).
        await self.bus.serve(SERVICE, self._on_rpc, concurrent=True)
        self._ticker = asyncio.create_task(self._tick_loop(), name="fabric-tick")
        log.info("fabric node=%s address=%s started", self.code, self.address)

    async def stop(self) -> None:
        for task in (self._ticker, self._rerouting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for stream in list(self._carried):
            with contextlib.suppress(Exception):
                await self._teardown(stream)
        for t in list(self._background):
            t.cancel()

    async def _tick_loop(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(0.05)
            now = self.clock()
            for c in list(self._carried.values()):
                if c.link_in is not None:
                    c.link_in.tick()
                    if c.standby_up is not None:
                        self._take_over_if_silent(c, now)
            n += 1
            if n % 20 == 0 and self.standby_after is not None:
                for c in list(self._carried.values()):
                    if c.link_in is None or c.pinned:
                        continue
                    if c.standby_up is None:
                        if now - c.standby_at > STANDBY_RETRY_S:
                            self._spawn(self._arm_standby(c))
                    else:
                        self._drop_standby_if_silent(c, now)
            if n % 4 == 0 and (self._rerouting is None or self._rerouting.done()):
                self._rerouting = asyncio.create_task(self._reroute_silent())
            if n % 10 == 0:
                for stream in self.leases.due(self.clock()):
                    try:
                        async with self._lock(stream):
                            await self._teardown(stream)
                    except Exception:
                        log.exception("fabric node=%s stream=%s teardown failed", self.code, stream)

    def _lock(self, stream: str) -> asyncio.Lock:
        return self._locks.setdefault(stream, asyncio.Lock())

    # --- local viewers ----------------------------------------------------------------------------

    async def acquire(
        self,
        stream: str,
        camera_node: str,
        viewer: str,
        user: str,
        on_input: OnInput | None = None,
    ) -> str:
        """Carry ``stream`` to this node for ``viewer``; the switch input id carrying it.

        ``on_input``: when the stream is opened now, called with its new switch input as soon
        as the input exists, while the hops above are still being asked — a caller that routes
        its output there then gets the first keyframe as soon as it arrives, not after every
        hop's answer has come back down (the switch keeps the output on its old input until
        then, and again if the open fails and the input goes). Not called for a stream already
        carried: route from the input returned."""
        creds = self.credentials(stream, user) if self.credentials is not None else {}
        input_id = await self._ensure(
            stream, camera_node, Consumer.viewer(viewer), user, self.code, creds, on_input=on_input
        )
        if camera_node != self.code:
            self._spawn(self._record(stream, camera_node, viewer, user, creds))
        return input_id

    async def release(self, stream: str, viewer: str) -> None:
        async with self._lock(stream):
            if self.leases.release(stream, Consumer.viewer(viewer), self.clock()):
                await self._teardown(stream)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def _record(
        self, stream: str, camera_node: str, viewer: str, user: str, creds: dict[str, Any]
    ) -> None:
        body = creds | {
            "op": "record",
            "stream": stream,
            "user": user,
            "viewer_node": self.code,
            "viewer": viewer,
        }
        try:
            await self.bus.call(camera_node, SERVICE, body, timeout=self.rpc_timeout)
        except Exception as e:
            log.warning(
                "fabric node=%s view of %s not recorded at %s: %s",
                self.code,
                stream,
                camera_node,
                e,
            )

    # --- the lease's life -------------------------------------------------------------------------

    async def _ensure(
        self,
        stream: str,
        camera_node: str,
        consumer: Consumer,
        user: str,
        viewer_node: str,
        creds: dict[str, Any] | None = None,
        via: str | None = None,
        on_input: OnInput | None = None,
    ) -> str:
        async with self._lock(stream):
            if via is not None:
                up: str | None = via
            else:
                parents, parent = await self.tree()
                up = next_hop(self.code, camera_node, parents, parent)
            if not self.leases.acquire(stream, consumer, up, self.clock()):
                return self._carried[stream].input_id
            try:
                carried = await self._open(
                    stream, camera_node, up, user, viewer_node, creds, on_input
                )
            except BaseException:
                self.leases.failed(stream)
                raise
            carried.pinned = via is not None
            self._carried[stream] = carried
            if self.leases.opened(stream):
                await self._teardown(stream)
                raise NotFound(f"stream {stream} was released while it opened")
            if carried.link_in is not None and not carried.pinned:
                self._spawn(self._arm_standby(carried))
            return carried.input_id

    async def _open(
        self,
        stream: str,
        camera_node: str,
        up: str | None,
        user: str,
        viewer_node: str,
        creds: dict[str, Any] | None = None,
        on_input: OnInput | None = None,
    ) -> _Carried:
        if up is None:
            if camera_node != self.code:
                raise NotFound(f"camera node {camera_node} is not this node")
            input_id = await self.cameras.acquire(stream)
            log.info("fabric node=%s stream=%s from local camera", self.code, stream)
            return _Carried(stream, input_id, None)
        link = await LinkIn.open(self.address, self.clock, self.port_range)
        input_id = f"fabric/{stream}"
        try:
            spec = InputSpec(
                input_id,
                Codec.h264,
                keyframe_request=KeyframeRequest.pli,
                rtcp_dest=(LOOPBACK, link.lo.port),
            )
            if is_audio(stream):
                spec = InputSpec(input_id, Codec.opus, rtcp_dest=(LOOPBACK, link.lo.port))
            port = await self.transport.add_input(spec, port=0)
            link.switch_rtp = (LOOPBACK, port)
            link.attach(self.transport)
            body = (creds or {}) | {
                "op": "open",
                "stream": stream,
                "camera_node": camera_node,
                "from": self.code,
                "addr": self.address,
                "port": link.wan.port,
                "user": user,
                "viewer_node": viewer_node,
            }
            # The caller's output is attached while the hops above are asked (``acquire``).
            attach = asyncio.ensure_future(on_input(input_id)) if on_input is not None else None
            try:
                reply = await self.bus.call(up, SERVICE, body, timeout=self.rpc_timeout)
            except BaseException:
                if attach is not None:
                    attach.cancel()
                    with contextlib.suppress(BaseException):
                        await attach
                self.transport.remove_input(input_id)
                raise
            if attach is not None:
                try:
                    await attach
                except BaseException:
                    self.transport.remove_input(input_id)
                    self._spawn(self._close_at(up, stream))
                    raise
        except BaseException:
            link.close()
            raise
        link.peer = (str(reply["addr"]), int(reply["port"]))
        log.info("fabric node=%s stream=%s from node=%s peer=%s", self.code, stream, up, link.peer)
        return _Carried(stream, input_id, up, link, open_body=body, since=self.clock())

    # --- failover (dual homing) ---------------------------------------------------------------

    async def _reroute_silent(self) -> None:
        """Streams whose upstream sent nothing for ``failover_after`` s: when the tree now
        reaches the camera's node through another neighbour (the camera's side moved to its
        second parent), take the stream from there (``_reroute``)."""
        now = self.clock()
        silent = [
            c
            for c in self._carried.values()
            if c.link_in is not None
            and not c.pinned
            and now - max(c.link_in.last_rtp_at or 0.0, c.since) > self.failover_after
            and now - c.tried_at > self.failover_after
        ]
        if not silent:
            return
        try:
            parents, parent = await self.tree()
        except Exception:
            log.exception("fabric node=%s tree for failover failed", self.code)
            return
        for c in silent:
            c.tried_at = now
            try:
                up = next_hop(self.code, str(c.open_body["camera_node"]), parents, parent)
            except NotFound:
                continue
            if up is None or up == c.upstream:
                continue
            try:
                async with self._lock(c.stream):
                    if self._carried.get(c.stream) is c:
                        await self._reroute(c, up)
            except Exception as e:
                log.warning(
                    "fabric node=%s stream=%s re-route to %s failed: %s", self.code, c.stream, up, e
                )

    async def _reroute(self, c: _Carried, up: str) -> None:
        """Open ``c``'s stream at neighbour ``up`` towards the same link end, then let the old
        upstream go. The switch input stays: the new upstream's output is a new SSRC starting
        with its GOP cache, which the input takes as a source restart, so every channel routed
        from it goes on with its own SSRC and sequence (the viewer's browser sees one stream)."""
        assert c.link_in is not None
        if c.standby_up == up:  # the new open replaces that neighbour's output to this node
            c.link_in.drop_standby()
            c.standby_up, c.standby_body = None, {}
        old, old_peer = c.upstream, c.link_in.peer
        c.link_in.peer = None  # the new upstream's GOP replay may come before its answer
        try:
            reply = await self.bus.call(up, SERVICE, c.open_body, timeout=self.rpc_timeout)
        except BaseException:
            c.link_in.peer = old_peer
            raise
        c.link_in.peer = (str(reply["addr"]), int(reply["port"]))
        c.upstream, c.since = up, self.clock()
        self.leases.rerouted(c.stream, up)
        log.info(
            "fabric node=%s stream=%s re-routed from node=%s to node=%s peer=%s",
            self.code,
            c.stream,
            old,
            up,
            c.link_in.peer,
        )
        if self.audit is not None:
            self._spawn(self.audit("fabric.reroute", c.stream, "ok", {"from": old, "to": up}))
        if old is not None:
            self._spawn(self._close_at(old, c.stream))

    # --- hot standby (dual homing) -------------------------------------------------------------

    async def _camera_parents(self, camera_node: str) -> list[str]:
        """The parents ``camera_node`` is configured with (asked once a minute; [] if it
        cannot say)."""
        now = self.clock()
        hit = self._parents_of.get(camera_node)
        if hit is not None and now - hit[0] < PARENTS_TTL_S:
            return hit[1]
        try:
            reply = await self.bus.call(
                camera_node, SERVICE, {"op": "parents"}, timeout=self.rpc_timeout
            )
            codes = [p for p in reply.get("parents") or [] if isinstance(p, str) and _CODE.match(p)]
        except Exception as e:
            log.debug("fabric node=%s parents of %s unknown: %s", self.code, camera_node, e)
            codes = []
        self._parents_of[camera_node] = (now, codes)
        return codes

    async def _standby_plan(self, c: _Carried) -> tuple[str, str | None] | None:
        """Where a standby leg for ``c`` comes from: (neighbour to ask, ``via``), or ``None``.

        Only where the camera node's two paths part: its other parent is this node (ask the
        camera node itself), or is below this node on another link than the upstream's (ask the
        other parent, ``via`` the camera node). Elsewhere the paths share this node's upstream
        link and a standby leg here would protect nothing; the node where they part has it."""
        camera_node = str(c.open_body["camera_node"])
        alternates = [p for p in await self._camera_parents(camera_node) if p != c.upstream]
        if not alternates:
            return None
        parents, parent = await self.tree()
        for p2 in alternates:
            if p2 == self.code:
                if c.upstream != camera_node:
                    return camera_node, None
                continue
            if p2 not in parents:
                continue
            if next_hop(self.code, p2, parents, parent) not in (c.upstream, parent):
                return p2, camera_node
        return None

    async def _arm_standby(self, c: _Carried) -> None:
        """Open ``c``'s stream a second time through the camera node's other parent, into the
        standby leg of its ``LinkIn`` (see the module docstring). Best effort: logged, retried
        every ``STANDBY_RETRY_S`` by the tick."""
        stream = c.stream
        if stream in self._arming or self.standby_after is None:
            return
        self._arming.add(stream)
        c.standby_at = self.clock()
        target = None
        try:
            plan = await self._standby_plan(c)
            if plan is None:
                log.debug("fabric node=%s stream=%s no standby path (yet)", self.code, stream)
                return
            if self._carried.get(stream) is not c or c.link_in is None:
                return
            target, via = plan
            link_in = c.link_in
            leg = await link_in.add_standby(self.address, not is_audio(stream), self.port_range)
            body = c.open_body | {"port": leg.sock.port}  # (an ``open_body`` has no ``via``)
            ask = body if via is None else body | {"via": via}
            try:
                reply = await self.bus.call(target, SERVICE, ask, timeout=self.rpc_timeout)
            except BaseException:
                if link_in.standby is leg:
                    link_in.drop_standby()
                raise
            if self._carried.get(stream) is not c or link_in.standby is not leg:
                self._spawn(self._close_at(target, stream))  # gone or moved meanwhile
                return
            leg.peer = (str(reply["addr"]), int(reply["port"]))
            c.standby_up, c.standby_body = target, body
            log.info(
                "fabric node=%s stream=%s standby from node=%s via=%s peer=%s",
                self.code, stream, target, via, leg.peer,
            )  # fmt: skip
        except Exception as e:
            log.info("fabric node=%s stream=%s no standby via %s: %s", self.code, stream, target, e)
        finally:
            self._arming.discard(stream)

    def _drop_standby_if_silent(self, c: _Carried, now: float) -> None:
        """A standby leg that has carried nothing for ``STANDBY_SILENT_S`` while the upstream
        flows is closed and sought again after ``STANDBY_RETRY_S`` (its path broke, or never
        carried: a take-over would then have nothing to take)."""
        link_in = c.link_in
        leg = link_in.standby if link_in is not None else None
        if link_in is None or leg is None or c.standby_up is None:
            return
        if c.stream in self._arming or self._lock(c.stream).locked():
            return
        upstream_at = link_in.last_rtp_at
        if upstream_at is None or now - upstream_at > 1.0:
            return  # the camera itself is quiet: nothing to compare with
        silent = now - (leg.last_rtp_at if leg.last_rtp_at is not None else c.standby_at)
        if silent <= STANDBY_SILENT_S:
            return
        target = c.standby_up
        log.warning(
            "fabric node=%s stream=%s standby from node=%s carried nothing for %.0f s while the "
            "upstream flows: closed, sought again",
            self.code, c.stream, target, silent,
        )  # fmt: skip
        link_in.drop_standby()
        c.standby_up, c.standby_body, c.standby_at = None, {}, now
        self._spawn(self._close_at(target, c.stream))

    def _take_over_if_silent(self, c: _Carried, now: float) -> None:
        """The upstream silent for ``standby_after`` s and the standby leg not: promote it."""
        link_in = c.link_in
        leg = link_in.standby if link_in is not None else None
        if link_in is None or leg is None or leg.last_rtp_at is None or c.standby_up is None:
            return
        if self.standby_after is None or self._lock(c.stream).locked():
            return  # opening, closing or re-routing: not now
        quiet = now - max(link_in.last_rtp_at or 0.0, c.since)
        if quiet <= self.standby_after or now - leg.last_rtp_at > self.standby_after:
            return
        old, new = c.upstream, c.standby_up
        link_in.promote()
        c.upstream, c.since, c.standby_at = new, now, now
        c.open_body = c.standby_body
        c.standby_up, c.standby_body = None, {}
        self.leases.rerouted(c.stream, new)
        log.warning(
            "fabric node=%s stream=%s upstream node=%s silent %.0f ms: standby from node=%s "
            "took over",
            self.code, c.stream, old, quiet * 1000, new,
        )  # fmt: skip
        if self.audit is not None:
            detail = {"from": old, "to": new, "standby": True}
            self._spawn(self.audit("fabric.reroute", c.stream, "ok", detail))
        if old is not None:
            self._spawn(self._close_at(old, c.stream))

    async def _close_at(self, node: str, stream: str) -> None:
        try:
            await self.bus.call(
                node, SERVICE, {"op": "close", "stream": stream, "from": self.code},
                timeout=self.rpc_timeout,
            )  # fmt: skip
        except Exception as e:  # the upstream's own lease check will not hold it for ever
            log.warning("fabric node=%s close of %s at %s failed: %s", self.code, stream, node, e)

    async def _teardown(self, stream: str) -> None:
        carried = self._carried.pop(stream, None)
        self.leases.closed(stream)
        if carried is None:
            return
        for node in list(carried.outputs):
            self._remove_output(carried, node)
        if carried.upstream is None:
            self.cameras.release(stream)
        else:
            with contextlib.suppress(Exception):
                self.transport.remove_input(carried.input_id)
            if carried.link_in is not None:
                carried.link_in.close()
            await self._close_at(carried.upstream, stream)
            if carried.standby_up is not None:
                await self._close_at(carried.standby_up, stream)
        log.info("fabric node=%s stream=%s closed", self.code, stream)

    def _remove_output(self, carried: _Carried, node: str) -> None:
        output_id, link = carried.outputs.pop(node)
        with contextlib.suppress(Exception):
            self.transport.remove_output(output_id)
        link.close()

    # --- RPC ---------------------------------------------------------------------------------

    async def _on_rpc(self, body: dict[str, Any]) -> Any:
        op = body.get("op")
        if op == "open":
            return await self._on_open(body)
        if op == "close":
            return await self._on_close(body)
        if op == "record":
            return await self._on_record(body)
        if op == "parents":
            return {"parents": await self.parents() if self.parents is not None else []}
        raise InvalidInput.one("op", "must be open, close, record or parents", op)

    async def _on_open(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = _stream(body)
        camera_node = _code(body, "camera_node")
        down = _code(body, "from")
        addr = body.get("addr")
        port = body.get("port")
        if not isinstance(addr, str) or not addr:
            raise InvalidInput.one("addr", "must be the downstream node's address", addr)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise InvalidInput.one("port", "must be a UDP port", port)
        user = str(body.get("user") or "")
        viewer_node = str(body.get("viewer_node") or down)
        grant = body.get("grant") if isinstance(body.get("grant"), str) else None
        creds = {"grant": grant} if grant else {}
        via = None
        if body.get("via") is not None:
            via = _code(body, "via")
            if via != camera_node:
                raise InvalidInput.one("via", "must be the camera node", via)
            c = self._carried.get(stream)
            if c is not None and down in (c.upstream, c.standby_up):
                raise Conflict(
                    f"stream {stream} comes to node {self.code} from node {down}: "
                    "no second path from here"
                )
        use = None
        if camera_node == self.code and self.admit is not None:
            use = await self.admit(stream, viewer_node, grant)
        link = await LinkOut.open(self.address, (addr, port), self.port_range)
        output_id = f"fabric/{stream}>{down}"
        codec = Codec.opus if is_audio(stream) else None
        added = False

        async def attach(input_id: str) -> None:
            # A stream opened now: the output towards ``down`` is made and routed while the
            # hops above are asked, so their first keyframe goes on down as it comes.
            nonlocal added
            await self._add_output(output_id, link, codec)
            added = True
            self.transport.route(output_id, input_id)

        try:
            input_id = await self._ensure(
                stream, camera_node, Consumer.link(down), user, viewer_node, creds, via, attach
            )
            async with self._lock(stream):
                carried = self._carried.get(stream)
                if carried is None:
                    raise NotFound(f"stream {stream} is not carried at node {self.code}")
                if not added:  # carried already: an output from its input
                    if down in carried.outputs:  # the neighbour opened again (it restarted)
                        self._remove_output(carried, down)
                    await self._add_output(output_id, link, codec)
                    added = True
                    self.transport.route(output_id, input_id)
                carried.outputs[down] = (output_id, link)
                if use is not None:
                    self._by_grant.setdefault(use.grant, set()).add((stream, down))
        except BaseException:
            if added:
                with contextlib.suppress(Exception):
                    self.transport.remove_output(output_id)
            link.close()
            raise
        log.info("fabric node=%s stream=%s to node=%s", self.code, stream, down)
        return {"addr": self.address, "port": link.wan.port}

    async def _add_output(self, output_id: str, link: LinkOut, codec: Codec | None = None) -> None:
        for _ in range(8):
            try:
                await self.transport.add_output(
                    OutputSpec(
                        output_id,
                        codec or Codec.h264,
                        ssrc=random.randint(1, 0xFFFFFFFF),
                        dest=link.peer,
                        rtcp_dest=(LOOPBACK, link.lo_rtcp.port),
                        nack_history=1024,
                        cname=f"vmesh-{self.code}",
                    ),
                    via_fd=link.wan_fd,  # straight to the neighbour from the link's socket
                )
                link.counts = functools.partial(self.transport.switch.output_counts, output_id)
                return
            except Exception as e:
                if "ssrc" not in str(e):
                    raise
        raise RuntimeError("no free SSRC for a fabric output")

    async def _on_close(self, body: dict[str, Any]) -> dict[str, Any]:
        await self._drop_link(_stream(body), _code(body, "from"))
        return {"closed": True}

    async def _drop_link(self, stream: str, down: str) -> None:
        """Stop sending ``stream`` to neighbour ``down`` and release its link consumer."""
        async with self._lock(stream):
            carried = self._carried.get(stream)
            if carried is not None and down in carried.outputs:
                self._remove_output(carried, down)
            if self.leases.release(stream, Consumer.link(down), self.clock()):
                await self._teardown(stream)

    async def _on_record(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = _stream(body)
        detail = {
            "viewer_node": _code(body, "viewer_node"),
            "user": str(body.get("user") or ""),
            "viewer": str(body.get("viewer") or ""),
        }
        if self.admit is not None:
            grant = body.get("grant") if isinstance(body.get("grant"), str) else None
            try:
                use = await self.admit(stream, detail["viewer_node"], grant)
            except Forbidden as e:
                if self.audit is not None:
                    await self.audit(
                        "fabric.serve", stream, "denied", detail | {"reason": e.detail}
                    )
                raise
            if use is not None:
                detail |= use.as_detail()
        if self.audit is not None:
            await self.audit("fabric.serve", stream, "ok", detail)
        return {"recorded": True}

    def close_grant(self, grant: str, reason: str) -> None:
        """A grant ended: close the outputs this camera node opened under it (at once, in the
        background), so the viewer node's side stops even if it does not."""
        for stream, down in self._by_grant.pop(grant, set()):
            self._spawn(self._close_output(stream, down, grant, reason))

    async def _close_output(self, stream: str, down: str, grant: str, reason: str) -> None:
        await self._drop_link(stream, down)
        log.info("fabric node=%s stream=%s to node=%s closed: %s", self.code, stream, down, reason)
        if self.audit is not None:
            detail = {"viewer_node": down, "grant": grant, "reason": reason}
            await self.audit("fabric.stop", stream, "ok", detail)

    def rebind(self, stream: str, input_id: str) -> None:
        """A local source came back on a new switch input (a browser that published again):
        route every output towards a neighbour from it."""
        c = self._carried.get(stream)
        if c is None or c.upstream is not None:
            return
        c.input_id = input_id
        for output_id, _ in c.outputs.values():
            with contextlib.suppress(Exception):
                self.transport.route(output_id, input_id)

    def signal(self, stream: str) -> tuple[str | None, float | None] | None:
        """(upstream neighbour, time of its last RTP packet) of ``stream`` carried here.

        ``None`` when the stream is not carried here; the time is ``None`` until the first
        packet (on this node's clock)."""
        c = self._carried.get(stream)
        if c is None:
            return None
        return c.upstream, c.link_in.last_rtp_at if c.link_in is not None else None

    # --- counters ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Per carried stream: lease state, consumers, the link in and each link out."""
        out = {}
        for lease in self.leases.leases():
            c = self._carried.get(lease.stream)
            out[lease.stream] = {
                "state": str(lease.state),
                "upstream": lease.upstream,
                "standby_upstream": c.standby_up if c else None,
                "viewers": lease.viewers,
                "links_down": lease.links_down,
                "input": c.input_id if c else None,
                "link_in": c.link_in.stats() if c and c.link_in else None,
                "links_out": {n: lk.stats() for n, (_, lk) in c.outputs.items()} if c else {},
            }
        return out
