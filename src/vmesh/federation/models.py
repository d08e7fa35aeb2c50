"""Federation tables (migration 0003): known nodes and their uplinks, the subtree's catalogue,
what this node has published of its own directory, and small persistent counters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vmesh.storage.db import Base


class KnownNode(Base):
    """A node of this node's subtree (itself included) and the state of its uplink."""

    __tablename__ = "federation_nodes"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    parent_code: Mapped[str | None] = mapped_column(String(20))
    tier: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    addresses: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    versions: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    announced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    link_state: Mapped[str] = mapped_column(String(8), default="unknown")
    rtt_ms: Mapped[float | None] = mapped_column(Float)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reported_by: Mapped[str | None] = mapped_column(String(20))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CatalogueEntry(Base):
    """One entry of the subtree's catalogue, at the version last applied (tombstone if deleted)."""

    __tablename__ = "catalogue_entries"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    origin_node: Mapped[str] = mapped_column(String(20))
    parent_code: Mapped[str | None] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(24))
    tier: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(8))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    tags: Mapped[str] = mapped_column(Text, default="")
    attrs: Mapped[str] = mapped_column(Text, default="{}")
    version: Mapped[int] = mapped_column(Integer)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CatalogueOrigin(Base):
    """Per origin node: changes applied, and changes ignored as already known (re-deliveries)."""

    __tablename__ = "catalogue_origins"

    origin_node: Mapped[str] = mapped_column(String(20), primary_key=True)
    applied: Mapped[int] = mapped_column(Integer, default=0)
    ignored: Mapped[int] = mapped_column(Integer, default=0)
    last_applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CataloguePublished(Base):
    """At the origin: the catalogue version last published for a local entry."""

    __tablename__ = "catalogue_published"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    entry_version: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class CatalogueDeletion(Base):
    """A local deletion not yet published (written by a trigger on ``directory_entries``)."""

    __tablename__ = "catalogue_deletions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(20))


class FederationState(Base):
    __tablename__ = "federation_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
