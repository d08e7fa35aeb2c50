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
hand-over leaves nothing behind. A parent can ``reopen`` a room whose host is unreachable from
the copy it holds; it becomes the host (the old host, if it comes back, sees it when handed the
log again — not built: entries flow up only).

Public: ``CommandService``, ``stream_name``, ``stream_config``.
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

from vmesh.auth.principal import Principal
from vmesh.command import core
from vmesh.command.store import CommandStore, unwire, wire
from vmesh.errors import Conflict, InvalidInput, VmeshError
from vmesh.federation.catalogue import get_state, set_state, sourced_stream_config
from vmesh.identity.codes import parse_code
from vmesh.node.tasks import cancel_tasks

log = logging.getLogger(__name__)

ROOT = "vmesh.cmd"
SEQ_KEY = "command.applied_seq"
RPC = "command"


def stream_name(node_code: str) -> str:
    return f"CMD_{parse_code(node_code, 'node').text}"


def stream_config(node_code: str, children: Sequence[str]) -> Any:
    """``CMD_<node>``: this node's incident logs, sourcing its children's ``CMD_`` streams."""
    return sourced_stream_config(stream_name, ROOT, node_code, children)


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
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._sub: Any = None
        self._sourced: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # --- writing ------------------------------------------------------------------------------

    async def act(
        self, who: Any, incident_id: str | None, action: str, body: dict[str, Any]
    ) -> tuple[core.Incident, core.Entry]:
        inc, e = await self.store.append(who, incident_id, action, body)
        self._wake.set()
        return inc, e

    async def hand_over(
        self, who: Principal, incident_id: str, body: dict[str, Any]
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

    async def _on_rpc(self, body: dict[str, Any]) -> Any:
        if body.get("op") != "take":
            raise InvalidInput.one("op", "must be take", body.get("op"))
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
        if self.bus is not None:
            await self.bus.serve(RPC, self._on_rpc)
        from nats.js.api import ConsumerConfig, DeliverPolicy

        async with self.store.db.sessions() as s:
            last = int(await get_state(s, SEQ_KEY) or 0)
        cfg = (
            ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last + 1)
            if last
            else ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        self._last_seq = last

        async def on_msg(msg: Any) -> None:
            await self._queue.put(msg)

        self._sub = await self.js.subscribe(
            f"{ROOT}.>", stream=stream_name(self.node), ordered_consumer=True, config=cfg, cb=on_msg
        )
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="command.publish"),
            asyncio.create_task(self._apply_loop(), name="command.apply"),
            asyncio.create_task(self._children_loop(), name="command.children"),
        ]

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

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

    async def _children_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.interval, 1.0))
            try:
                kids = set(await self.children()) if self.children is not None else set()
                if not kids <= self._sourced:
                    await self._ensure_stream()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the local server restarting: next round
                log.warning("command node=%s stream update failed: %s", self.node, e)

    async def publish_once(self) -> int:
        entries = await self.store.unpublished()
        mine = [e for e in entries if e.node == self.node]
        for e in mine:
            await self.js.publish(
                f"{ROOT}.{self.node}.{e.incident}",
                json.dumps(wire(e), ensure_ascii=False).encode(),
                headers={"Nats-Msg-Id": e.id},
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def _apply_loop(self) -> None:
        while True:
            msgs = [await self._queue.get()]
            while not self._queue.empty() and len(msgs) < 500:
                msgs.append(self._queue.get_nowait())
            entries, last = [], self._last_seq
            for m in msgs:
                seq = int(m.metadata.sequence.stream)
                if seq <= self._last_seq:
                    continue
                last = max(last, seq)
                if m.subject.startswith(f"{ROOT}.{self.node}."):
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
            if last == self._last_seq:
                continue
            while True:
                try:
                    self.applied += await self.store.apply(entries)
                    async with self.store.db.transaction() as s:
                        await set_state(s, self.store.db.dialect, SEQ_KEY, str(last))
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the database is busy: keep the order, retry
                    log.warning("command node=%s apply failed, retrying: %s", self.node, e)
                    await asyncio.sleep(1.0)
            self._last_seq = last


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
