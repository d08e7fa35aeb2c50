"""Command tables (migration 0010): incidents known here (opened here, handed here, or copied
from a child's log) and their append-only logs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vmesh.storage.db import Base


class IncidentRow(Base):
    """The incident's state folded from its log (rewritten with every entry applied here)."""

    __tablename__ = "command_incidents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    origin_node: Mapped[str] = mapped_column(String(20))
    host_node: Mapped[str] = mapped_column(String(20))
    type: Mapped[str] = mapped_column(String(24))
    title: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(12))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    opened_by: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    entries: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_command_incidents_status", "status", "opened_at"),)


class LogRow(Base):
    """One action of an incident's log; ``id`` is global (a copy applies it once by id)."""

    __tablename__ = "command_log"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    node: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="{}")
    # Written here and not yet in this node's CMD_ stream (the publisher's outbox).
    published: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_command_log_incident", "incident_id", "at"),
        Index("ix_command_log_unpublished", "published"),
    )
