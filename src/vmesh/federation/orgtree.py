"""The downward catalogue: the org tree above a node, and beside it, flowing down durably.

The upward catalogue (``catalogue.py``) gives every node its subtree. To browse, a node also
needs the org units above it: its ancestors' and its siblings' (a county shows its city's other
counties and the province's cities). This module owns that downward flow.

Streams and subjects. Each node has a stream ``ORG_<node>`` capturing ``vmesh.org.<node>.>``
only, and **sourcing** its parent's ``ORG_<parent>`` (``external.api = $JS.<parent>.API``), so it
holds what its parent passed down, and what the grandparent passed to the parent, up to the
province. Subjects never overlap between nodes (the same rule as upward). A node passes down the
org units (``ORG_KINDS``: region, department, virtual_org) of its catalogue whose origin is itself
or one of its direct children, i.e. its own units and its children's — for a child, its
parent's and its siblings' units. Messages are the catalogue's wire format (``catalogue.encode``,
the entry's real origin in the body) on ``vmesh.org.<publisher>.<code>``, ``Nats-Msg-Id``
``<publisher>:<code>:<version>``; tombstones travel too. The publisher is in the id because a
child's stream gets the same unit from its parent and, through it, from its grandparent: with the
same id, nats-server 2.9 refuses the second copy as a duplicate and **retries it forever, stalling
the whole source** (its log: "Error processing inbound source … msgid is duplicate" every 2 s).

Publishing (``OrgTreePublisher``) scans ``catalogue_entries`` by ``(applied_at, code)`` from a
watermark in ``federation_state``: every org-unit change the node applied, its own included,
is passed on after it is applied. Applying reuses ``CatalogueApplier`` on ``ORG_<node>`` with its
own applied-sequence key, skipping what this node published itself and its own units: applying
is idempotent by (code, version) as upward, so a unit heard twice (from the parent and from the
grandparent through it) or after a cut is applied once. The entries land in
``catalogue_entries`` beside the subtree's, with their origin; ``search(..., kinds=ORG_KINDS)``
lists them (``GET /api/network/orgs``).

A link cut stops the source; JetStream resumes it when the link returns (nothing lost). A node
that changes parent (dual homing) sources the new parent's stream: the same changes again,
ignored by version.

Public: ``ORG_ROOT``, ``org_stream_name``, ``org_subject``, ``org_stream_config``,
``OrgTreePublisher``, ``org_applier``, ``OrgTree``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select

from vmesh.federation.catalogue import (
    CatalogueApplier,
    CatalogueChange,
    _utc,
    encode,
    entry_body,
    get_state,
    set_state,
    sourced_stream_config,
)
from vmesh.federation.models import CatalogueEntry
from vmesh.identity.codes import ORG_KINDS, parse_code
from vmesh.node.tasks import cancel_tasks
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

ORG_ROOT = "vmesh.org"
WATERMARK = "orgtree.watermark"
APPLIED_SEQ = "orgtree.applied_seq"
KINDS = sorted(str(k) for k in ORG_KINDS)


def org_stream_name(node_code: str) -> str:
    return f"ORG_{parse_code(node_code, 'node').text}"


def org_subject(publisher: str, code: str) -> str:
    return f"{ORG_ROOT}.{publisher}.{code}"


def org_stream_config(node_code: str, parent: str | None) -> Any:
    """``ORG_<node>``: this node's subjects, sourcing ``ORG_<parent>`` when it has one."""
    return sourced_stream_config(org_stream_name, ORG_ROOT, node_code, [parent] if parent else [])


class OrgTreePublisher:
    """Passes this node's and its children's org units down; see the module docstring."""

    def __init__(
        self,
        db: Database,
        js: Any,
        node_code: str,
        children: Callable[[], Awaitable[Sequence[str]]],
        *,
        batch: int = 500,
    ) -> None:
        self.db = db
        self.js = js
        self.node = node_code
        self.children = children
        self.batch = batch
        self.published = 0
        self.last_error = ""

    async def run_once(self) -> int:
        """Pass on what was applied since the last run; the number of rows looked at."""
        n = 0
        while True:
            k = await self._batch()
            n += k
            if k < self.batch:
                return n

    async def _batch(self) -> int:
        origins = {self.node, *(await self.children())}
        async with self.db.sessions() as s:
            wm = await get_state(s, WATERMARK)
            q = (
                select(CatalogueEntry)
                .where(CatalogueEntry.kind.in_(KINDS))
                .order_by(CatalogueEntry.applied_at, CatalogueEntry.code)
                .limit(self.batch)
            )
            if wm:
                at_text, _, code = wm.rpartition("|")
                at = datetime.fromisoformat(at_text)
                q = q.where(
                    or_(
                        CatalogueEntry.applied_at > at,
                        and_(CatalogueEntry.applied_at == at, CatalogueEntry.code > code),
                    )
                )
            rows = (await s.scalars(q)).all()
        if not rows:
            return 0
        changes = [_change(r) for r in rows if r.origin_node in origins]

        async def one(c: CatalogueChange) -> None:
            await self.js.publish(
                org_subject(self.node, c.code),
                encode(c),
                # The publisher in the id: the same unit passed down by the parent and by the
                # grandparent must not share an id, or the second stalls the source (below).
                headers={"Nats-Msg-Id": f"{self.node}:{c.msg_id}"},
            )

        await asyncio.gather(*(one(c) for c in changes))
        self.published += len(changes)
        if changes:
            log.info(
                "orgtree node=%s passed down %s", self.node, [(c.code, c.origin) for c in changes]
            )
        last = rows[-1]
        async with self.db.transaction() as s:
            at = _utc(last.applied_at) or datetime.now(UTC)
            await set_state(s, self.db.dialect, WATERMARK, f"{at.isoformat()}|{last.code}")
        return len(rows)

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.run_once()
                self.last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the bus or the database; try again next round
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("orgtree node=%s publish failed: %s", self.node, self.last_error)
            await asyncio.sleep(interval)


def _change(r: CatalogueEntry) -> CatalogueChange:
    entry = None if r.deleted else entry_body(r)
    changed = _utc(r.changed_at) or datetime.now(UTC)
    return CatalogueChange(r.origin_node, r.code, r.version, changed, entry)


def org_applier(db: Database, js: Any, node_code: str) -> CatalogueApplier:
    """Applies ``ORG_<node>``: what the parent (and above) passed down, not this node's own."""
    mine = f"{ORG_ROOT}.{node_code}."

    def accept(subj: str, c: CatalogueChange) -> bool:
        return not subj.startswith(mine) and c.origin != node_code

    return CatalogueApplier(
        db,
        js,
        node_code,
        stream=org_stream_name(node_code),
        root=ORG_ROOT,
        seq_key=APPLIED_SEQ,
        accept=accept,
    )


class OrgTree:
    """The node's downward flow: its ``ORG_`` stream (re-sourced when the parent changes), the
    publisher and the applier; ``start()`` / ``stop()`` from ``Federation``."""

    def __init__(
        self,
        db: Database,
        js: Any,
        node_code: str,
        *,
        parent: Callable[[], str | None],
        children: Callable[[], Awaitable[Sequence[str]]],
        interval: float,
    ) -> None:
        self.db = db
        self.js = js
        self.node = node_code
        self.parent = parent
        self.interval = interval
        self.publisher = OrgTreePublisher(db, js, node_code, children)
        self.applier = org_applier(db, js, node_code)
        self.sourced: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def _ensure_stream(self) -> None:
        from nats.js.errors import NotFoundError

        name = org_stream_name(self.node)
        parent = self.parent()
        try:
            info = await self.js.stream_info(name)
        except NotFoundError:
            await self.js.add_stream(org_stream_config(self.node, parent))
            self.sourced = parent
            return
        have = {src.name for src in info.config.sources or []}
        if parent is None:
            self.sourced = next(iter(have), "")[4:] or None
            return
        if have != {org_stream_name(parent)}:
            await self.js.update_stream(org_stream_config(self.node, parent))
            log.info("orgtree node=%s sourcing %s", self.node, org_stream_name(parent))
        self.sourced = parent

    async def _follow_parent(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.parent() not in (None, self.sourced):
                try:
                    await self._ensure_stream()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the local server restarting: next round
                    log.warning("orgtree node=%s stream update failed: %s", self.node, e)

    async def start(self, scan_interval: float) -> None:
        await self._ensure_stream()
        await self.applier.start()
        self._tasks = [
            asyncio.create_task(self.publisher.run(scan_interval), name="orgtree.publish"),
            asyncio.create_task(self.applier.run(), name="orgtree.apply"),
            asyncio.create_task(self._follow_parent(), name="orgtree.parent"),
        ]

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)
        await self.applier.stop()
