"""Grant tables (migrations 0007, 0011): every grant this node knows — applied here, owned or
decided here, or replicated here — and the outbox of grant versions still to be delivered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vmesh.storage.db import Base


class GrantRow(Base):
    """One grant at its latest version known here (only ``decider_node`` writes new versions:
    the owner node, or an ancestor of it that the application named or that granted directly)."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))
    applicant_node: Mapped[str] = mapped_column(String(20))
    grantee_kind: Mapped[str] = mapped_column(String(12))  # unit | department
    grantee_code: Mapped[str] = mapped_column(String(20))
    applicant_user: Mapped[str] = mapped_column(String(64))
    owner_node: Mapped[str] = mapped_column(String(20))
    decider_node: Mapped[str] = mapped_column(String(20), default="")
    decider_scope: Mapped[str] = mapped_column(String(20), default="")  # the decider's scope
    sel_org: Mapped[str | None] = mapped_column(String(20))
    sel_tags: Mapped[str] = mapped_column(Text, default="")  # space-separated
    sel_codes: Mapped[str] = mapped_column(Text, default="")  # space-separated
    purpose: Mapped[str] = mapped_column(Text)
    requested_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    requested_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str] = mapped_column(String(64), default="")
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    revoked_by: Mapped[str] = mapped_column(String(64), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoke_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_grants_owner_status", "owner_node", "status"),
        Index("ix_grants_applicant", "applicant_node", "grantee_code"),
        Index("ix_grants_decider_status", "decider_node", "status"),
    )


class GrantOutbox(Base):
    """A grant version to deliver to ``target_node`` (deleted once it answered)."""

    __tablename__ = "grant_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    grant_id: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    target_node: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text, default="")
