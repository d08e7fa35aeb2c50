"""Writing, sealing and verifying the audit log.

``AuditLog.record`` adds a row inside the caller's transaction, so a change and its audit row commit
or roll back together. After commit, ``seal`` numbers and chains every unsealed row, oldest first,
under one lock (an asyncio lock in the process, plus an advisory lock on PostgreSQL so that several
processes on one database chain in turn). ``Database.transaction`` callers use
``AuditLog.transaction`` which seals after commit.

Public: ``AuditLog``, ``Actor``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vmesh.audit.chain import GENESIS, ChainReport, check_chain, row_hash
from vmesh.audit.models import AuditRecord
from vmesh.auth.principal import Principal
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

_PG_LOCK_KEY = 0x766D657368  # "vmesh"


@dataclass(frozen=True)
class Actor:
    """Who did something when there is no logged-in user (a login attempt, the CLI, the system)."""

    username: str
    roles: str = ""
    client_addr: str = ""


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = asyncio.Lock()

    def record(
        self,
        session: AsyncSession,
        who: Principal | Actor,
        action: str,
        target_code: str = "",
        result: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Add an audit row to ``session``'s transaction (sealed after it commits)."""
        roles = who.roles_text if isinstance(who, Principal) else who.roles
        session.add(
            AuditRecord(
                at=datetime.now(UTC),
                username=who.username,
                roles=roles,
                action=action,
                target_code=target_code,
                client_addr=who.client_addr,
                result=result,
                detail=json.dumps(detail or {}, ensure_ascii=False, sort_keys=True),
            )
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """``Database.transaction`` that seals the audit rows it wrote once it has committed."""
        async with self.db.transaction() as session:
            yield session
        await self.seal()

    async def write(self, who: Principal | Actor, action: str, target_code: str = "",
                    result: str = "ok", detail: dict[str, Any] | None = None) -> None:
        """Record one row in a transaction of its own (e.g. a refusal, where nothing else changes)."""
        async with self.transaction() as session:
            self.record(session, who, action, target_code, result, detail)

    async def seal(self) -> int:
        """Chain every committed unsealed row; returns how many were sealed."""
        async with self._lock, self.db.transaction() as session:
            if not self.db.is_sqlite:
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            last = (
                await session.execute(
                    select(AuditRecord.seq, AuditRecord.hash).where(AuditRecord.seq.is_not(None))
                    .order_by(AuditRecord.seq.desc()).limit(1)
                )
            ).first()
            seq, prev = (last[0], last[1]) if last else (0, GENESIS)
            rows = (
                await session.scalars(
                    select(AuditRecord).where(AuditRecord.seq.is_(None)).order_by(AuditRecord.id)
                )
            ).all()
            for row in rows:
                seq += 1
                row.seq = seq
                row.prev_hash = prev
                row.hash = row_hash(prev, _fields(row))
                prev = row.hash
            return len(rows)

    async def verify(self, batch: int = 5000) -> ChainReport:
        """Walk the whole chain in ``seq`` order, streaming, and report the first break."""
        await self.seal()
        async with self.db.sessions() as session:
            unsealed = await session.scalar(
                select(func.count()).select_from(AuditRecord).where(AuditRecord.seq.is_(None))
            )
            prev, after, total = GENESIS, 0, 0
            while True:
                chunk = (
                    await session.scalars(
                        select(AuditRecord).where(AuditRecord.seq > after)
                        .order_by(AuditRecord.seq).limit(batch)
                    )
                ).all()
                if not chunk:
                    break
                rows = [_fields(r) | {"prev_hash": r.prev_hash, "hash": r.hash} for r in chunk]
                report = check_chain(rows, prev, after + 1)
                if not report.ok:
                    return ChainReport(False, total + report.checked, report.problem, report.seq)
                total += report.checked
                prev, after = report.last_hash, int(chunk[-1].seq or 0)
        if unsealed:
            return ChainReport(False, total, f"{unsealed} row(s) could not be sealed into the chain")
        return ChainReport(True, total, last_hash=prev)


def _fields(r: AuditRecord) -> dict[str, object]:
    return {
        "seq": r.seq,
        "at": r.at,
        "username": r.username,
        "roles": r.roles,
        "action": r.action,
        "target_code": r.target_code,
        "client_addr": r.client_addr,
        "result": r.result,
        "detail": r.detail,
    }
