"""What the registrar keeps across node restarts: a row per registered device (``gb_devices``).

A row holds where the device was reached (host, port, transport), when its registration expires
(wall clock), whether it was online, the charset it speaks and when its catalogue subscription
ends. The registrar writes a row on every new registration, on unregister and on going offline;
keepalives are not written (a restarted node gives every device a fresh keepalive window).

``RegistrationStore.load()`` gives the rows back at start: a device whose registration has not
expired is online again at once (its keepalives get 200, INVITEs go to its last address); the
others are known but offline until they register again (their next keepalive gets 403, which is
what makes a device re-register).

Public: ``GbDeviceRow``, ``RegistrationStore``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from vmesh.storage.db import Base, Database


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

    async def save(
        self,
        code: str,
        *,
        kind: str,
        addr: tuple[str, int],
        transport: str,
        online: bool,
        charset: str,
        expires_at: float,
        subscribed_until: float | None = None,
    ) -> None:
        """Insert or replace the device's row (times are UNIX seconds)."""
        now = datetime.now(UTC)
        async with self.db.transaction() as s:
            row = await s.get(GbDeviceRow, code)
            if row is None:
                row = GbDeviceRow(code=code, registered_at=now)
                s.add(row)
            row.kind, row.host, row.port, row.transport = kind, addr[0], addr[1], transport
            row.online, row.charset = online, charset
            row.expires_at = datetime.fromtimestamp(expires_at, UTC)
            row.subscribed_until = (
                datetime.fromtimestamp(subscribed_until, UTC) if subscribed_until else None
            )

    async def set_online(self, code: str, online: bool) -> None:
        async with self.db.transaction() as s:
            row = await s.get(GbDeviceRow, code)
            if row is not None:
                row.online = online

    async def delete(self, code: str) -> None:
        async with self.db.transaction() as s:
            await s.execute(delete(GbDeviceRow).where(GbDeviceRow.code == code))

    async def load(self) -> list[GbDeviceRow]:
        async with self.db.sessions() as s:
            rows = list((await s.scalars(select(GbDeviceRow).order_by(GbDeviceRow.code))).all())
        for r in rows:
            r.expires_at = _utc(r.expires_at)
            r.registered_at = _utc(r.registered_at)
            if r.subscribed_until is not None:
                r.subscribed_until = _utc(r.subscribed_until)
        return rows
