"""The command service of a running node: the store, the incident logs flowing up to the
parent durably, and room hand-over between nodes.

Replication (the catalogue's pattern, ``vmesh.federation.catalogue``). Each node has a stream
``CMD_<node>`` capturing ``vmesh.cmd.<node>.>`` only and **sourcing** its direct children's
``CMD_`` streams across the leaf links, so a city's stream holds its counties' entries and the
province's the whole network's. An entry written here goes to the local stream from the log's
outbox (``command_log.published``), acknowledged before it is marked: local JetStream is there
with the uplink cut, and the source catches up when the link returns. ``Nats-Msg-Id`` is the
entry's id and applying (``CommandStore.apply``) inserts by id, so an entry delivered twice (a
re-publish after a crash, a source resuming) is held once.

Hand-over (``hand_over``): the room moves to another node (the parent: up; a child: down). The
target is sent the whole log with the ``hand_over`` entry over the bus (``command`` service,
``op: take``) and applies it; only when it answered is the entry written here, so a failed
hand-over leaves nothing behind. The parent can also ask for the room (``take_over``: the
``command`` service's ``op: give`` at the host, which hands it up as above). A parent can
``reopen`` a room whose host is unreachable from the copy it holds; it becomes the host.

Flowing down (the org tree's pattern, ``vmesh.federation.orgtree``). Each node also has a stream
``CMDDN_<node>`` capturing ``vmesh.cmddn.<node>.>`` and sourcing its parent's ``CMDDN_``, so a
county's holds what its city and, through it, the province passed down. An entry written here
for an incident whose log has entries of another node (a room taken over from below, a child's
room this node reports on) goes from the same outbox to both streams, each acknowledged before
the entry is marked; a node applies from its down stream the entries of incidents it holds
(others' rooms pass by), by id. So after the city takes a county's room over, what the city
logs reaches the county exactly once, also when written while the link was cut.

Public: ``CommandService``, ``stream_name``, ``stream_config``, ``down_stream_name``,
``down_stream_config``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from vmesh.audit.log import Actor
from vmesh.auth.principal import Principal
from vmesh.command import core
from vmesh.command.store import CommandStore, unwire, wire
from vmesh.errors import Conflict, InvalidInput, VmeshError
from vmesh.federation.catalogue import get_state, set_state, sourced_stream_config
from vmesh.identity.codes import parse_code
from vmesh.node.tasks import cancel_tasks
from vmesh.node.wakeup import woken

log = logging.getLogger(__name__)

ROOT = "vmesh.cmd"
DOWN_ROOT = "vmesh.cmddn"
SEQ_KEY = "command.applied_seq"
DOWN_SEQ_KEY = "command.down_applied_seq"
RPC = "command"


def stream_name(node_code: str) -> str:
    return f"CMD_{parse_code(node_code, 'node').text}"


def stream_config(node_code: str, children: Sequence[str]) -> Any:
    """``CMD_<node>``: this node's incident logs, sourcing its children's ``CMD_`` streams."""
    return sourced_stream_config(stream_name, ROOT, node_code, children)


def down_stream_name(node_code: str) -> str:
    return f"CMDDN_{parse_code(node_code, 'node').text}"


def down_stream_config(node_code: str, parent: str | None) -> Any:
    """``CMDDN_<node>``: entries this node passes down, sourcing its parent's ``CMDDN_``."""
    return sourced_stream_config(down_stream_name, DOWN_ROOT, node_code, [parent] if parent else [])


class CommandService:
    def __init__(
        self,
        store: CommandStore,
        *,
        bus: Any = None,
        js: Any = None,
        children: Callable[[], Awaitable[Sequence[str]]] | None = None,
        parent: Callable[[], str | None] = lambda: None,
        link_state: Callable[[str], Awaitable[str]] | None = None,
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.node = store.node
        self.bus = bus
        self.js = js
        self.children = children
        self.parent = parent
        self.link_state = link_state
        self.interval = interval
        self.applied = 0
        self.last_error = ""
        self._wake = asyncio.Event()
        self._subs: list[Any] = []
        self._sourced: set[str] = set()
        self._down_sourced: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_seq: dict[str, int] = {}

    # --- writing ------------------------------------------------------------------------------

    async def act(
        self, who: Any, incident_id: str | None, action: str, body: dict[str, Any]
    ) -> tuple[core.Incident, core.Entry]:
        inc, e = await self.store.append(who, incident_id, action, body)
        self._wake.set()
        return inc, e

    async def hand_over(
        self, who: Principal | Actor, incident_id: str, body: dict[str, Any]
    ) -> core.Incident:
        inc, entries = await self.store.get(incident_id)
        to = body.get("to") or ("up" if body.get("direction") == "up" else None)
        if to == "up" or body.get("direction") == "up":
            up = self.parent()
            if up is None:
                raise InvalidInput.one("to", "this node has no parent to hand the room up to")
            body = {**body, "to": up, "direction": "up"}
        elif body.get("direction") not in (None, "", "down"):
            raise InvalidInput.one("direction", "must be up or down", body.get("direction"))
        else:
            body = {**body, "direction": "down"}
        try:
            detail = core.check(inc, "hand_over", body, here=self.node)
            if self.bus is None:
                raise Conflict("federation is not running here: no node to hand the room to")
            at = max(datetime.now(UTC), entries[-1].at)
            e = core.Entry(
                core.new_id(), incident_id, at, self.node, who.username, "hand_over", detail
            )
            await self.bus.call(
                detail["to"],
                RPC,
                {"op": "take", "entries": [wire(x) for x in [*entries, e]]},
                timeout=10.0,
            )
        except VmeshError as err:
            await self.store.audit.write(
                who, "command.hand_over", incident_id, "refused", {"reason": err.detail, **body}
            )
            raise
        await self.store.apply([e])
        await self.store.audit.write(who, "command.hand_over", incident_id, "ok", detail)
        self._wake.set()
        inc, _ = await self.store.get(incident_id)
        return inc

    async def take_over(
        self, who: Principal, incident_id: str, body: dict[str, Any]
    ) -> core.Incident:
        """The room of a child's incident moves here, asked from here (the city takes a
        county's room over): the host is asked to hand it up (``op: give``), which sends the log
        here (``op: take``) before it answers. A refusal (not the host any more, not this node's
        child, unreachable) is audited here and nothing is written."""
        inc, _ = await self.store.get(incident_id)
        reason = body.get("reason", "")
        try:
            if inc.host == self.node:
                raise Conflict(f"incident {incident_id} is already hosted here")
            if self.bus is None:
                raise Conflict("federation is not running here: no node to take the room from")
            await self.bus.call(
                inc.host,
                RPC,
                {
                    "op": "give",
                    "incident": incident_id,
                    "to": self.node,
                    "actor": who.username,
                    "reason": reason if isinstance(reason, str) else "",
                },
                timeout=20.0,
            )
        except VmeshError as err:
            await self.store.audit.write(
                who,
                "command.take_over",
                incident_id,
                "refused",
                {"reason": err.detail, "from": inc.host},
            )
            raise
        await self.store.audit.write(
            who, "command.take_over", incident_id, "ok", {"from": inc.host, "to": self.node}
        )
        inc, _ = await self.store.get(incident_id)
        return inc

    async def _give(self, body: dict[str, Any]) -> Any:
        """``op: give``: the parent asks for a room hosted here; hand it up in its user's name."""
        iid, to, actor = body.get("incident"), body.get("to"), body.get("actor")
        if not isinstance(iid, str) or not iid:
            raise InvalidInput.one("incident", "must be an incident id", iid)
        if not isinstance(actor, str) or not actor:
            raise InvalidInput.one("actor", "must name the user taking the room over", actor)
        if to != self.parent():
            raise InvalidInput.one("to", f"only this node's parent ({self.parent()}) may", to)
        who = Actor(f"{actor}@{to}"[:64], "commander")
        reason = body.get("reason") or f"taken over by node {to}"
        inc = await self.hand_over(who, iid, {"direction": "up", "reason": reason})
        return {"given": iid, "host": inc.host}

    async def _on_rpc(self, body: dict[str, Any]) -> Any:
        if body.get("op") == "give":
            return await self._give(body)
        if body.get("op") != "take":
            raise InvalidInput.one("op", "must be take or give", body.get("op"))
        raw = body.get("entries")
        if not isinstance(raw, list) or not raw:
            raise InvalidInput.one("entries", "must be a non-empty list")
        entries = [unwire(d) for d in raw]
        last = entries[-1]
        if last.action != "hand_over" or last.detail.get("to") != self.node:
            raise InvalidInput.one("entries", f"the last entry must hand the room to {self.node}")
        new = await self.store.apply(entries)
        log.info(
            "command node=%s took incident=%s from=%s new_entries=%d",
            self.node,
            last.incident,
            last.node,
            new,
        )
        return {"taken": last.incident, "new": new}

    async def host_reachable(self, host: str) -> bool | None:
        """None: hosted here; else whether the link to the host is up (as pinged)."""
        if host == self.node:
            return None
        if self.link_state is None:
            return False
        return await self.link_state(host) == "up"

    # --- replication --------------------------------------------------------------------------

    async def start(self) -> None:
        if self.js is None:
            return
        await self._ensure_stream()
        await self._ensure_down_stream()
        if self.bus is not None:
            await self.bus.serve(RPC, self._on_rpc)
        up = await self._follow(stream_name(self.node), ROOT, SEQ_KEY)
        down = await self._follow(down_stream_name(self.node), DOWN_ROOT, DOWN_SEQ_KEY)
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="command.publish"),
            asyncio.create_task(self._apply_loop(up, ROOT, SEQ_KEY), name="command.apply"),
            asyncio.create_task(
                self._apply_loop(down, DOWN_ROOT, DOWN_SEQ_KEY, held_only=True),
                name="command.apply_down",
            ),
            asyncio.create_task(self._children_loop(), name="command.children"),
        ]

    async def _follow(self, stream: str, root: str, key: str) -> asyncio.Queue[Any]:
        """An ordered consumer of ``stream`` from after the sequence applied last (``key``)."""
        from nats.js.api import ConsumerConfig, DeliverPolicy

        async with self.store.db.sessions() as s:
            last = int(await get_state(s, key) or 0)
        cfg = (
            ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last + 1)
            if last
            else ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        self._last_seq[key] = last
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def on_msg(msg: Any) -> None:
            await queue.put(msg)

        self._subs.append(
            await self.js.subscribe(
                f"{root}.>", stream=stream, ordered_consumer=True, config=cfg, cb=on_msg
            )
        )
        return queue

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []

    async def _ensure_stream(self) -> None:
        from nats.js.errors import NotFoundError

        kids = list(await self.children()) if self.children is not None else []
        name = stream_name(self.node)
        try:
            info = await self.js.stream_info(name)
        except NotFoundError:
            await self.js.add_stream(stream_config(self.node, kids))
            self._sourced = set(kids)
            return
        have = {src.name[4:] for src in info.config.sources or []}
        if not set(kids) <= have:
            await self.js.update_stream(stream_config(self.node, sorted(have | set(kids))))
            log.info("command node=%s sourcing %s", self.node, sorted(have | set(kids)))
        self._sourced = have | set(kids)

    async def _ensure_down_stream(self) -> None:
        """``CMDDN_<node>``, sourcing the current parent's (re-sourced when it changes)."""
        from nats.js.errors import NotFoundError

        name, parent = down_stream_name(self.node), self.parent()
        try:
            info = await self.js.stream_info(name)
        except NotFoundError:
            await self.js.add_stream(down_stream_config(self.node, parent))
            self._down_sourced = parent
            return
        have = {src.name for src in info.config.sources or []}
        if parent is None:
            self._down_sourced = next(iter(have), "")[6:] or None
            return
        if have != {down_stream_name(parent)}:
            await self.js.update_stream(down_stream_config(self.node, parent))
            log.info("command node=%s sourcing %s", self.node, down_stream_name(parent))
        self._down_sourced = parent

    async def _children_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.interval, 1.0))
            try:
                kids = set(await self.children()) if self.children is not None else set()
                if not kids <= self._sourced:
                    await self._ensure_stream()
                if self.parent() not in (None, self._down_sourced):
                    await self._ensure_down_stream()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the local server restarting: next round
                log.warning("command node=%s stream update failed: %s", self.node, e)

    async def publish_once(self) -> int:
        entries = await self.store.unpublished()
        mine = [e for e in entries if e.node == self.node]
        shared = await self.store.shared({e.incident for e in mine})
        for e in mine:
            data = json.dumps(wire(e), ensure_ascii=False).encode()
            await self.js.publish(
                f"{ROOT}.{self.node}.{e.incident}", data, headers={"Nats-Msg-Id": e.id}
            )
            if e.incident in shared:  # another node holds this room's log: pass it down too
                await self.js.publish(
                    f"{DOWN_ROOT}.{self.node}.{e.incident}", data, headers={"Nats-Msg-Id": e.id}
                )
        if entries:
            await self.store.mark_published([e.id for e in entries])
        return len(mine)

    async def _publish_loop(self) -> None:
        while True:
            try:
                await self.publish_once()
                self.last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the local server or the database: next round
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("command node=%s publish failed: %s", self.node, self.last_error)
            self._wake.clear()
            await woken(self._wake, self.interval)

    async def _apply_loop(
        self, queue: asyncio.Queue[Any], root: str, key: str, *, held_only: bool = False
    ) -> None:
        """Apply what arrives on one stream, in order, from after ``key``'s sequence
        (``held_only``: only entries of incidents this node holds — what flows down)."""
        while True:
            msgs = [await queue.get()]
            while not queue.empty() and len(msgs) < 500:
                msgs.append(queue.get_nowait())
            entries, last = [], self._last_seq[key]
            for m in msgs:
                seq = int(m.metadata.sequence.stream)
                if seq <= self._last_seq[key]:
                    continue
                last = max(last, seq)
                if m.subject.startswith(f"{root}.{self.node}."):
                    continue  # written here: already in the log
                try:
                    entries.append(unwire(json.loads(m.data)))
                except (ValueError, InvalidInput) as e:
                    log.warning(
                        "command node=%s seq=%d malformed entry on %s: %s",
                        self.node,
                        seq,
                        m.subject,
                        e,
                    )
            if last == self._last_seq[key]:
                continue
            while True:
                try:
                    if held_only:
                        held = await self.store.held({e.incident for e in entries})
                        entries = [e for e in entries if e.incident in held]
                    self.applied += await self.store.apply(entries)
                    async with self.store.db.transaction() as s:
                        await set_state(s, self.store.db.dialect, key, str(last))
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the database is busy: keep the order, retry
                    log.warning("command node=%s apply failed, retrying: %s", self.node, e)
                    await asyncio.sleep(1.0)
            self._last_seq[key] = last


async def start_command(ctx: Any) -> CommandService:
    """The node's command service, on the federation bus when federation runs."""
    from vmesh.federation.models import KnownNode

    store = CommandStore(ctx.db, ctx.audit, ctx.config.node.code)
    fed = ctx.federation
    if fed is None or fed.bus is None:
        svc = CommandService(store)
    else:
        registry = fed.registry

        def parent() -> str | None:
            up = registry.uplink if registry is not None else None
            return up.parent_code if up is not None and up.parent_code else None

        async def link_state(code: str) -> str:
            async with ctx.db.sessions() as s:
                st = await s.scalar(select(KnownNode.link_state).where(KnownNode.code == code))
            up = registry.uplink if registry is not None else None
            if code == parent() and up is not None:
                return up.state
            return st or "unknown"

        svc = CommandService(
            store,
            bus=fed.bus,
            js=fed.js,
            children=registry.children,
            parent=parent,
            link_state=link_state,
            interval=ctx.config.command.publish_seconds,
        )
    await svc.start()
    return svc
