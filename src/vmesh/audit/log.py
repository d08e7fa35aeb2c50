"""Writing, sealing and verifying the audit log.

``AuditLog.record`` adds a row inside the caller's transaction, so a change and its audit row commit
or roll back together. After commit, ``seal`` numbers and chains every unsealed row, oldest first,
under one lock (an asyncio lock in the process, plus an advisory lock on PostgreSQL so that several
processes on one database chain in turn). ``Database.transaction`` callers use
``AuditLog.transaction`` which seals after commit.

A chain alone cannot tell that its newest rows were deleted: what is left is still a valid chain.
So after every seal the head (``seq`` and ``hash`` of the newest sealed row) is also written to an
anchor file outside the database, ``audit-head.json`` in the node's data folder (temp file, fsync,
rename; a file lock orders writers of several processes, and the anchor never moves backwards).
``verify`` then also reports a log that ends before its anchor (rows deleted from the end), a row
at the anchor's seq whose hash differs from it (chain rewritten), and a missing anchor while the
log has rows. ``reanchor`` accepts the current head as the anchor after a deliberate restore; it is
audited.

Public: ``AuditLog``, ``Actor``, ``ANCHOR_FILE``.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vmesh.audit.chain import GENESIS, ChainReport, check_chain, row_hash
from vmesh.audit.models import AuditRecord
from vmesh.auth.principal import Principal
from vmesh.node.files import write_atomic
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

_PG_LOCK_KEY = 0x766D657368  # "vmesh"
ANCHOR_FILE = "audit-head.json"


@dataclass(frozen=True)
class Actor:
    """Who did something when there is no logged-in user (a login attempt, the CLI, the system)."""

    username: str
    roles: str = ""
    client_addr: str = ""


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str


class AnchorError(Exception):
    """The anchor file exists but cannot be read as an anchor."""


class AuditLog:
    """The node's audit log. ``anchor_path`` is where the chain head is kept (None: nowhere)."""

    def __init__(self, db: Database, anchor_path: Path | None = None) -> None:
        self.db = db
        self.anchor_path = anchor_path
        self._lock = asyncio.Lock()
        self._warned = False

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

    async def write(
        self,
        who: Principal | Actor,
        action: str,
        target_code: str = "",
        result: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record one row in a transaction of its own (e.g. a refusal, where nothing changes)."""
        async with self.transaction() as session:
            self.record(session, who, action, target_code, result, detail)

    async def seal(self) -> int:
        """Chain every committed unsealed row; returns how many were sealed.

        The anchor moves to the new head only when the log still agrees with it; after a cut or a
        rewrite it stays where it was, as the evidence that ``verify`` reports.
        """
        async with self._lock:
            n, seq, head, agrees = await self._seal_once()
            if n and agrees and self.anchor_path is not None:
                await asyncio.to_thread(_write_anchor, self.anchor_path, Anchor(seq, head))
            return n

    async def _seal_once(self) -> tuple[int, int, str, bool]:
        """Seal in one transaction; also say whether the log agreed with the anchor before it."""
        async with self.db.transaction() as session:
            if not self.db.is_sqlite:
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            # Read before the first query: the snapshot the query sees is then at least as new.
            try:
                anchor = _read_anchor(self.anchor_path) if self.anchor_path is not None else None
                readable = True
            except AnchorError:
                anchor, readable = None, False
            last = (
                await session.execute(
                    select(AuditRecord.seq, AuditRecord.hash)
                    .where(AuditRecord.seq.is_not(None))
                    .order_by(AuditRecord.seq.desc())
                    .limit(1)
                )
            ).first()
            seq, prev = (last[0], last[1]) if last else (0, GENESIS)
            agrees = await self._agrees(session, anchor, readable, seq, prev)
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
        return len(rows), seq, prev, agrees

    async def _agrees(
        self, session: AsyncSession, anchor: Anchor | None, readable: bool, seq: int, head: str
    ) -> bool:
        """Whether the sealed log (head ``seq``/``head``) still contains the anchored row."""
        if self.anchor_path is None or not readable:
            return False
        if anchor is None:
            ok = seq == 0
        elif anchor.seq > seq:
            ok = False
        elif anchor.seq == seq:
            ok = anchor.hash == head
        elif anchor.seq == 0:
            ok = True
        else:
            stored = await session.scalar(
                select(AuditRecord.hash).where(AuditRecord.seq == anchor.seq)
            )
            ok = stored == anchor.hash
        if not ok and not self._warned:
            self._warned = True
            log.error(
                "audit log disagrees with its anchor %s (anchor=%s head_seq=%d); the anchor is "
                "kept as evidence: run 'vmesh audit verify'",
                self.anchor_path,
                anchor,
                seq,
            )
        return ok

    async def verify(self, batch: int = 5000) -> ChainReport:
        """Walk the whole chain in ``seq`` order, streaming, and report the first break.

        Also checks the chain against the head anchor (see the module docstring).
        """
        await self.seal()
        try:
            anchor = _read_anchor(self.anchor_path) if self.anchor_path is not None else None
        except AnchorError as e:
            return ChainReport(False, 0, str(e))
        report, anchored_hash = await self._walk(batch, anchor.seq if anchor else None)
        if not report.ok or self.anchor_path is None:
            return report
        head = report.checked
        if anchor is None:
            if head == 0:
                return report
            return ChainReport(
                False,
                head,
                f"the head anchor {self.anchor_path} is missing while the log holds {head} rows; "
                "if the data folder was restored on purpose, check and run "
                "'vmesh audit verify --reanchor'",
                last_hash=report.last_hash,
            )
        if anchor.seq > head:
            return ChainReport(
                False,
                head,
                f"rows {head + 1}..{anchor.seq} were deleted from the end of the log "
                f"(it ends at seq {head}, its anchor {self.anchor_path.name} says {anchor.seq})",
                head + 1,
                report.last_hash,
            )
        if anchor.seq > 0 and anchored_hash != anchor.hash:
            return ChainReport(
                False,
                head,
                f"row {anchor.seq}: hash differs from the anchor {self.anchor_path.name} "
                "(the log was rewritten)",
                anchor.seq,
                report.last_hash,
            )
        return report

    async def _walk(self, batch: int, want_seq: int | None) -> tuple[ChainReport, str | None]:
        """Check the chain; also return the stored hash of row ``want_seq`` if it was seen."""
        wanted: str | None = None
        async with self.db.sessions() as session:
            unsealed = await session.scalar(
                select(func.count()).select_from(AuditRecord).where(AuditRecord.seq.is_(None))
            )
            prev, after, total = GENESIS, 0, 0
            while True:
                chunk = (
                    await session.scalars(
                        select(AuditRecord)
                        .where(AuditRecord.seq > after)
                        .order_by(AuditRecord.seq)
                        .limit(batch)
                    )
                ).all()
                if not chunk:
                    break
                rows = [_fields(r) | {"prev_hash": r.prev_hash, "hash": r.hash} for r in chunk]
                report = check_chain(rows, prev, after + 1)
                if not report.ok:
                    return ChainReport(
                        False, total + report.checked, report.problem, report.seq
                    ), None
                if want_seq is not None and after < want_seq <= int(chunk[-1].seq or 0):
                    wanted = next((r.hash for r in chunk if r.seq == want_seq), None)
                total += report.checked
                prev, after = report.last_hash, int(chunk[-1].seq or 0)
        if unsealed:
            return ChainReport(
                False, total, f"{unsealed} row(s) could not be sealed into the chain"
            ), None
        return ChainReport(True, total, last_hash=prev), wanted

    async def reanchor(self, who: Actor) -> ChainReport:
        """Accept the log's current head as its anchor (after a deliberate restore); audited.

        Refused (the report says why) when the chain itself is broken.
        """
        if self.anchor_path is None:
            return ChainReport(False, 0, "this audit log has no anchor file configured")
        report, _ = await self._walk(5000, None)
        if not report.ok:
            return report
        try:
            old = _read_anchor(self.anchor_path)
        except AnchorError as e:
            old, detail_old = None, {"unreadable": str(e)}
        else:
            detail_old = {"seq": old.seq, "hash": old.hash} if old else {}
        async with self._lock:
            async with self.db.transaction() as session:
                self.record(
                    session,
                    who,
                    "audit.reanchor",
                    "",
                    "ok",
                    {"old_anchor": detail_old, "head_seq": report.checked},
                )
            n, seq, head, _ = await self._seal_once()
            await asyncio.to_thread(_write_anchor, self.anchor_path, Anchor(seq, head), True)
            self._warned = False
        log.warning("audit anchor reset from %s to seq=%d", detail_old, seq)
        return ChainReport(True, report.checked + n, last_hash=head)


def _read_anchor(path: Path) -> Anchor | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise AnchorError(f"cannot read the audit head anchor {path}: {e.strerror}") from None
    try:
        data = json.loads(raw)
        anchor = Anchor(int(data["seq"]), str(data["hash"]))
    except (ValueError, KeyError, TypeError):
        raise AnchorError(
            f"the audit head anchor {path} is damaged (not seq and hash JSON)"
        ) from None
    if anchor.seq < 0 or len(anchor.hash) != 64:
        raise AnchorError(f"the audit head anchor {path} is damaged (bad seq or hash)")
    return anchor


def _write_anchor(path: Path, anchor: Anchor, force: bool = False) -> None:
    """Atomically replace the anchor, unless it already records a later head (or ``force``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force:
            try:
                current = _read_anchor(path)
            except AnchorError:
                return  # a damaged anchor stays as evidence until someone re-anchors
            if current is not None and current.seq >= anchor.seq:
                return
        body = {
            "seq": anchor.seq,
            "hash": anchor.hash,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_atomic(path, json.dumps(body).encode("utf-8") + b"\n", 0o644, sync_dir=True)


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
