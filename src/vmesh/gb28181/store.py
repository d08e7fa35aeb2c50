"""What the registrar keeps across node restarts: a row per registered device (``gb_devices``).

A row holds where the device was reached (host, port, transport), when its registration expires
(wall clock), whether it was online, the charset it speaks and when its catalogue subscription
ends. The registrar's state lives in memory; ``WriteBehind`` carries it to the database in
batches, one transaction per batch holding the ``gb_devices`` rows, the directory presence
(``entries.status``/``last_seen``) and the audit rows of state changes:

- state changes (registered, unregistered, offline) are queued and *awaited*
  (``WriteBehind.commit``): the REGISTER gets its 200 once its batch has committed — group
  commit: whatever queued while a batch was being written goes in the next one, so a storm of
  new registrations costs one transaction per batch, not several per device;
- refreshes (a new expiry) and keepalives (presence ``online`` and ``last_seen``) are queued
  and not awaited: written by the next batch, at most ``interval`` (0.5 s) later;
- ``stop()`` writes what is queued (nothing lost on a clean stop); after a crash the database is
  at most one batch old — a refresh or keepalive of the last ``interval`` missing, which only
  moves an expiry or ``last_seen`` back (a restarted node gives every device a fresh keepalive
  window anyway).

``RegistrationStore.load()`` gives the rows back at start: a device whose registration has not
expired is online again at once (its keepalives get 200, INVITEs go to its last address); the
others are known but offline until they register again (their next keepalive gets 403, which is
what makes a device re-register).

Public: ``GbDeviceRow``, ``RegistrationStore``, ``DeviceState``, ``WriteBehind``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from vmesh.audit.log import Actor, AuditLog
from vmesh.directory.models import Entry
from vmesh.directory.store import write_lock
from vmesh.node.wakeup import woken
from vmesh.storage.db import Base, Database

log = logging.getLogger(__name__)


class GbDeviceRow(Base):
    """A registered GB/T 28181 device as of its last registration change."""

    __tablename__ = "gb_devices"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    host: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(4), default="udp")
    online: Mapped[bool] = mapped_column(Boolean, default=True)
    charset: Mapped[str] = mapped_column(String(16), default="GB2312")
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    subscribed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class RegistrationStore:
    """See the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self) -> list[GbDeviceRow]:
        async with self.db.sessions() as s:
            rows = list((await s.scalars(select(GbDeviceRow).order_by(GbDeviceRow.code))).all())
        for r in rows:
            r.expires_at = _utc(r.expires_at)
            r.registered_at = _utc(r.registered_at)
            if r.subscribed_until is not None:
                r.subscribed_until = _utc(r.subscribed_until)
        return rows


@dataclass(frozen=True)
class DeviceState:
    """What a ``gb_devices`` row holds, as the registrar has it (times are UNIX seconds)."""

    code: str
    kind: str
    addr: tuple[str, int]
    transport: str
    online: bool
    charset: str
    expires_at: float
    subscribed_until: float | None = None


def _dt(t: float | None) -> datetime | None:
    return datetime.fromtimestamp(t, UTC) if t else None


class WriteBehind:
    """See the module docstring: the registrar's batched writer (``start``/``stop`` around use)."""

    def __init__(self, db: Database, audit: AuditLog, interval: float = 0.5) -> None:
        self.db = db
        self.audit = audit
        self.interval = interval
        self.batches = 0  # transactions committed (for tests and the benchmark)
        self._rows: dict[str, DeviceState] = {}
        self._presence: dict[str, bool] = {}
        self._audits: list[tuple[Actor, str, str, str, dict[str, Any]]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def put(self, state: DeviceState) -> None:
        """The device's row as it is now (the last one queued before a batch wins)."""
        self._rows[state.code] = state

    def presence(self, codes: list[str], online: bool) -> None:
        """Directory status of ``codes`` (and ``last_seen`` now, when online)."""
        for c in codes:
            self._presence[c] = online

    def record(
        self, who: Actor, action: str, target: str, result: str, detail: dict[str, Any]
    ) -> None:
        """An audit row, written with the batch."""
        self._audits.append((who, action, target, result, detail))

    async def commit(self) -> None:
        """Wait until everything queued so far has committed (raises what the batch raised)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake.set()
        if self._task is None:  # not started (or stopped): write it now
            await self.flush()
        await fut

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gb-write-behind")

    async def stop(self) -> None:
        """Stop the writer after writing what is queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await woken(self._wake, self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gb registrations not written (retried with the next batch)")

    async def flush(self) -> None:
        """Write one batch of what is queued in one transaction."""
        rows, presence, audits, waiters = self._rows, self._presence, self._audits, self._waiters
        self._rows, self._presence, self._audits, self._waiters = {}, {}, [], []
        if not (rows or presence or audits):
            for f in waiters:
                if not f.done():
                    f.set_result(None)
            return
        try:
            if audits:
                async with self.audit.transaction() as s:
                    await self._write(s, rows, presence, self.db.is_sqlite)
                    for a in audits:
                        self.audit.record(s, *a)
            else:
                async with self.db.transaction() as s:
                    await self._write(s, rows, presence, self.db.is_sqlite)
        except BaseException as e:
            # Queued again under what was queued since (newer states win), then reported.
            self._rows = {**rows, **self._rows}
            self._presence = {**presence, **self._presence}
            self._audits = audits + self._audits
            for f in waiters:
                if not f.done():
                    f.set_exception(e if isinstance(e, Exception) else RuntimeError(str(e)))
            raise
        self.batches += 1
        for f in waiters:
            if not f.done():
                f.set_result(None)

    @staticmethod
    async def _write(
        s: AsyncSession, rows: dict[str, DeviceState], presence: dict[str, bool], sqlite: bool
    ) -> None:
        if sqlite:  # the write lock first: a read transaction that upgrades can fail at once
            await write_lock(s, "sqlite")
        now = datetime.now(UTC)
        codes = sorted(rows)
        existing: dict[str, GbDeviceRow] = {}
        for i in range(0, len(codes), 500):
            q = select(GbDeviceRow).where(GbDeviceRow.code.in_(codes[i : i + 500]))
            existing.update((r.code, r) for r in (await s.scalars(q)).all())
        for code in codes:
            st = rows[code]
            row = existing.get(code)
            if row is None:
                row = GbDeviceRow(code=code, registered_at=now)
                s.add(row)
            row.kind, row.host, row.port, row.transport = (
                st.kind,
                st.addr[0],
                st.addr[1],
                st.transport,
            )
            row.online, row.charset = st.online, st.charset
            row.expires_at = datetime.fromtimestamp(st.expires_at, UTC)
            row.subscribed_until = _dt(st.subscribed_until)
        for online in (True, False):
            which = sorted(c for c, o in presence.items() if o is online)
            values: dict[str, Any] = {"status": "online" if online else "offline"}
            if online:
                values["last_seen"] = now
            for i in range(0, len(which), 500):
                await s.execute(
                    update(Entry)
                    .where(Entry.code.in_(which[i : i + 500]))
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
