"""Petition tables (migration 0016): petitions with their transitions in order, the evidence files
booked with them, and the paragraphs of the clerk's record (笔录).

Files (evidence, the petitioner's signature, the signed record PDF) live under
``<data_dir>/petition/<petition number>/``; the rows keep their names, sizes and SHA-256.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vmesh.storage.db import Base


class Petition(Base):
    """One petition. ``state`` follows ``vmesh.petition.core.TRANSITIONS``."""

    __tablename__ = "pt_petitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    state: Mapped[str] = mapped_column(String(24))
    room_code: Mapped[str] = mapped_column(String(20))  # the petitioner's video room
    room_path: Mapped[str] = mapped_column(String(255))
    room_name: Mapped[str] = mapped_column(String(200), default="")
    booked_by: Mapped[str] = mapped_column(String(64))
    petitioner_name: Mapped[str] = mapped_column(String(100))
    petitioner_id: Mapped[str] = mapped_column(String(18))
    category: Mapped[str] = mapped_column(String(24))
    subject: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Triage: who decided, why, when the session is, and the officials (JSON list of
    # {username, node, venue}; the first one's venue is the main venue and its node the host).
    triage_by: Mapped[str | None] = mapped_column(String(64))
    triage_reason: Mapped[str] = mapped_column(Text, default="")
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    officials: Mapped[str] = mapped_column(Text, default="[]")
    # The session: a conference at ``host_node``; its programme recording is the session's.
    host_node: Mapped[str | None] = mapped_column(String(20))
    conference_id: Mapped[int | None] = mapped_column(Integer)
    session_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    session_ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    followup_conference_id: Mapped[int | None] = mapped_column(Integer)
    signature_file: Mapped[str] = mapped_column(String(255), default="")
    record_file: Mapped[str] = mapped_column(String(255), default="")
    # The case (交办).
    department: Mapped[str] = mapped_column(String(100), default="")
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    extensions: Mapped[int] = mapped_column(Integer, default=0)
    extension_reason: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(Text, default="")
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str] = mapped_column(Text, default="")
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PetitionEvent(Base):
    """One transition of a petition, in order (``seq`` from 1)."""

    __tablename__ = "pt_events"
    __table_args__ = (UniqueConstraint("petition_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    petition_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("pt_petitions.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event: Mapped[str] = mapped_column(String(24))
    from_state: Mapped[str] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="{}")


class Evidence(Base):
    """A file booked with the petition: an image (JPEG, PNG) or a PDF."""

    __tablename__ = "pt_evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    petition_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("pt_petitions.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    file: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))


class RecordParagraph(Base):
    """A paragraph of the clerk's record, with its time and its offset into the recording."""

    __tablename__ = "pt_record"
    __table_args__ = (UniqueConstraint("petition_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    petition_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("pt_petitions.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    offset_seconds: Mapped[int] = mapped_column(Integer)
    clerk: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
