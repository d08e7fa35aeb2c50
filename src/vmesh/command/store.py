"""Incidents and logs in the database: appending an action (checked by ``core.check``, audited,
one transaction), applying entries copied from another node (once each, by id), reading.

Public: ``CommandStore``, ``entry_of``, ``wire``, ``unwire``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vmesh.audit.log import Actor, AuditLog
from vmesh.auth.principal import Principal
from vmesh.command import core
from vmesh.command.models import IncidentRow, LogRow
from vmesh.errors import InvalidInput, NotFound, VmeshError
from vmesh.storage.db import Database

log = logging.getLogger(__name__)


def _utc(d: datetime) -> datetime:
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def entry_of(r: LogRow) -> core.Entry:
    return core.Entry(
        r.id, r.incident_id, _utc(r.at), r.node, r.actor, r.action, json.loads(r.detail or "{}")
    )


def row_of(e: core.Entry, *, published: bool) -> LogRow:
    """The stored row of a log entry (``published``: already out on this node's stream, or not
    this node's to publish)."""
    return LogRow(
        id=e.id,
        incident_id=e.incident,
        at=e.at,
        node=e.node,
        actor=e.actor,
        action=e.action,
        detail=json.dumps(e.detail, ensure_ascii=False),
        published=published,
    )


def wire(e: core.Entry) -> dict[str, Any]:
    return {
        "id": e.id,
        "incident": e.incident,
        "at": e.at.isoformat(),
        "node": e.node,
        "actor": e.actor,
        "action": e.action,
        "detail": e.detail,
    }


def unwire(d: Any) -> core.Entry:
    """An entry from its wire form; ``InvalidInput`` naming the first bad field."""
    if not isinstance(d, dict):
        raise InvalidInput.one("entry", "must be an object")
    for k in ("id", "incident", "at", "node", "actor", "action"):
        if not isinstance(d.get(k), str) or not d[k]:
            raise InvalidInput.one(f"entry.{k}", "must be non-empty text", d.get(k))
    if d["action"] not in core.ACTIONS or not isinstance(d.get("detail"), dict):
        raise InvalidInput.one("entry.action", "unknown action or detail", d["action"])
    try:
        at = _utc(datetime.fromisoformat(d["at"]))
    except ValueError:
        raise InvalidInput.one("entry.at", "must be an ISO 8601 time", d["at"]) from None
    return core.Entry(
        d["id"][:32],
        d["incident"][:32],
        at,
        d["node"][:20],
        d["actor"][:64],
        d["action"],
        d["detail"],
    )


class CommandStore:
    def __init__(self, db: Database, audit: AuditLog, node_code: str) -> None:
        self.db = db
        self.audit = audit
        self.node = node_code

    async def _entries(self, s: AsyncSession, incident_id: str) -> list[core.Entry]:
        rows = (await s.scalars(select(LogRow).where(LogRow.incident_id == incident_id))).all()
        return [entry_of(r) for r in rows]

    async def _project(self, s: AsyncSession, inc: core.Incident) -> None:
        row = await s.get(IncidentRow, inc.id)
        now = datetime.now(UTC)
        if row is None:
            if inc.opened_at is None:  # entries copied before their open entry: wait for it
                return
            row = IncidentRow(id=inc.id)
            s.add(row)
        row.origin_node, row.host_node, row.type = inc.origin, inc.host, inc.type
        row.title, row.severity, row.status = inc.title, inc.severity, inc.status
        row.lat, row.lon, row.opened_by = inc.lat, inc.lon, inc.opened_by
        row.opened_at = inc.opened_at or now
        row.entries, row.updated_at = inc.entries, now

    async def append(
        self, who: Principal | Actor, incident_id: str | None, action: str, body: dict[str, Any]
    ) -> tuple[core.Incident, core.Entry]:
        """Check and write one action (``incident_id`` None: ``open`` a new incident), with its
        audit row, in one transaction; a refusal is audited and nothing else is written."""
        try:
            async with self.audit.transaction() as s:
                if incident_id is None:
                    entries: list[core.Entry] = []
                    inc = None
                    incident_id = core.new_id()
                else:
                    entries = await self._entries(s, incident_id)
                    if not entries:
                        raise NotFound(f"incident {incident_id} not found")
                    inc = core.fold(incident_id, entries)
                detail = core.check(inc, action, body, here=self.node)
                at = datetime.now(UTC)
                if entries:  # the log's order is time order: never before the last entry
                    at = max(at, max(e.at for e in entries))
                e = core.Entry(
                    core.new_id(), incident_id, at, self.node, who.username, action, detail
                )
                s.add(row_of(e, published=False))
                after = core.fold(incident_id, [*entries, e])
                await self._project(s, after)
                self.audit.record(s, who, f"command.{action}", incident_id, "ok", detail)
        except VmeshError as err:
            await self.audit.write(
                who,
                f"command.{action}",
                incident_id or "",
                "refused",
                {"reason": err.detail, "errors": [fe.as_dict() for fe in err.errors]},
            )
            raise
        log.info(
            "command node=%s incident=%s action=%s by=%s",
            self.node,
            incident_id,
            action,
            who.username,
        )
        return after, e

    async def apply(self, entries: list[core.Entry]) -> int:
        """Write the entries not held yet (by id) and refold their incidents; how many were
        new. Idempotent: a copy delivered twice, or after a cut, adds nothing."""
        if not entries:
            return 0
        new = 0
        async with self.db.transaction() as s:
            ids = [e.id for e in entries]
            have = set((await s.scalars(select(LogRow.id).where(LogRow.id.in_(ids)))).all())
            touched: set[str] = set()
            for e in entries:
                if e.id in have:
                    continue
                have.add(e.id)
                s.add(row_of(e, published=e.node != self.node))
                touched.add(e.incident)
                new += 1
            await s.flush()
            for iid in touched:
                await self._project(s, core.fold(iid, await self._entries(s, iid)))
        return new

    async def get(self, incident_id: str) -> tuple[core.Incident, list[core.Entry]]:
        async with self.db.sessions() as s:
            entries = await self._entries(s, incident_id)
        if not entries or not any(e.action == "open" for e in entries):
            raise NotFound(f"incident {incident_id} not found")
        entries.sort(key=lambda e: (e.at, e.id))
        return core.fold(incident_id, entries), entries

    async def list(
        self, *, status: str = "", offset: int = 0, limit: int = 50
    ) -> tuple[list[IncidentRow], int]:
        conds = [IncidentRow.status == status] if status else []
        async with self.db.sessions() as s:
            total = await s.scalar(select(func.count()).select_from(IncidentRow).where(*conds))
            rows = (
                await s.scalars(
                    select(IncidentRow)
                    .where(*conds)
                    .order_by(IncidentRow.opened_at.desc())
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        return list(rows), int(total or 0)

    async def held(self, incident_ids: set[str]) -> set[str]:
        """Which of these incidents this node holds a log of."""
        if not incident_ids:
            return set()
        async with self.db.sessions() as s:
            q = select(LogRow.incident_id).where(LogRow.incident_id.in_(incident_ids)).distinct()
            return set((await s.scalars(q)).all())

    async def shared(self, incident_ids: set[str]) -> set[str]:
        """Which of these incidents have entries written at another node (their log is held
        elsewhere too: below, when this node took the room over or reports on a child's)."""
        if not incident_ids:
            return set()
        async with self.db.sessions() as s:
            q = (
                select(LogRow.incident_id)
                .where(LogRow.incident_id.in_(incident_ids), LogRow.node != self.node)
                .distinct()
            )
            return set((await s.scalars(q)).all())

    async def unpublished(self, limit: int = 200) -> list[core.Entry]:
        async with self.db.sessions() as s:
            rows = (
                await s.scalars(
                    select(LogRow)
                    .where(LogRow.published.is_(False))
                    .order_by(LogRow.at)
                    .limit(limit)
                )
            ).all()
        return [entry_of(r) for r in rows]

    async def mark_published(self, ids: list[str]) -> None:
        from sqlalchemy import update

        async with self.db.transaction() as s:
            await s.execute(update(LogRow).where(LogRow.id.in_(ids)).values(published=True))
