"""Directory tables: one row per org unit or endpoint, tags beside it.

``path`` is the materialised chain of ancestor ids, ``/1/7/93/`` (the entry's own id last), so a
subtree is one indexed prefix range and scope checks need no recursion. Name search has its own
index (FTS5 on SQLite, kept by ``vmesh.directory.store``; a GIN index over the name's characters
on PostgreSQL), created in migration 0002. Migration 0004 dropped the
``parent_id`` and ``(kind, name)`` indexes: nothing needs them beside ``(parent_id, status)``.
Migration 0017 made the codes unique by an index instead of a table constraint.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from vmesh.storage.db import Base


class Entry(Base):
    __tablename__ = "directory_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    code: Mapped[str] = mapped_column(String(20))  # unique: uq_directory_entries_code
    parent_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("directory_entries.id", ondelete="RESTRICT")
    )  # indexed by (parent_id, status)
    path: Mapped[str] = mapped_column(String(400))
    kind: Mapped[str] = mapped_column(String(24))
    tier: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    # Space-separated, kept for display and export; ``entry_tags`` is what filters use.
    tags: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(8), default="unknown")
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Endpoint attributes that vary by kind (RTSP URL, terminal model, …), JSON text.
    attrs: Mapped[str] = mapped_column(Text, default="{}")
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("status in ('online','offline','unknown')", name="status"),
        CheckConstraint("lat is null or (lat >= -90 and lat <= 90)", name="lat"),
        CheckConstraint("lon is null or (lon >= -180 and lon <= 180)", name="lon"),
        # path + name: a subtree search reads names from the index alone (migration 0002).
        Index("ix_directory_entries_path_name", "path", "name"),
        Index("ix_directory_entries_parent_status", "parent_id", "status"),
        Index("ix_directory_entries_name", "name"),
        # An index, not a table constraint, so that a big import can drop and rebuild it with
        # the others (migration 0017).
        Index("uq_directory_entries_code", "code", unique=True),
    )


class EntryTag(Base):
    __tablename__ = "entry_tags"

    entry_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("directory_entries.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_entry_tags_tag", "tag", "entry_id"),)
