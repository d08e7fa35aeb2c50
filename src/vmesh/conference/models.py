"""Conference tables (migration 0006): conferences, their venues and chairs, and attendance.

A conference row keeps what the chair set up and its last floor state (``state``, JSON of
``vmesh.conference.core.Floor.state``), so that a node restart or a chair's reconnect finds the
layout, the mode and the muted set as they were. ``conference_attendance`` has one row per
stay of a venue: ``joined_at`` when its page published, ``left_at`` when it stopped or dropped.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vmesh.storage.db import Base


class ConferenceRow(Base):
    __tablename__ = "conferences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(200))
    host_node: Mapped[str] = mapped_column(String(20))
    main_code: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12))  # scheduled | active | ended
    starts_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recording: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(Text, default="{}")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("status in ('scheduled','active','ended')", name="status"),
        Index("ix_conferences_status", "status", "id"),
    )


class ConferenceVenue(Base):
    __tablename__ = "conference_venues"

    conference_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("conferences.id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    role: Mapped[str] = mapped_column(String(8))  # main | sub
    position: Mapped[int] = mapped_column(Integer)


class ConferenceChair(Base):
    __tablename__ = "conference_chairs"

    conference_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("conferences.id", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(String(64), primary_key=True)


class Attendance(Base):
    __tablename__ = "conference_attendance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conference_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("conferences.id", ondelete="CASCADE")
    )
    venue_code: Mapped[str] = mapped_column(String(20))
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    left_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (Index("ix_conference_attendance_venue", "conference_id", "venue_code"),)
