"""Service desk tables (migration 0009): the catalogue (departments, items), the agents and the
groups they serve, cases (办件) with their transitions in order, and the materials (captured
images) attached to a case.

Files (images, the signature, the result PDF) live under ``<data_dir>/servicedesk/<case number>/``;
the rows keep their names, sizes and SHA-256.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vmesh.storage.db import Base


class Department(Base):
    __tablename__ = "sd_departments"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    sort: Mapped[int] = mapped_column(Integer, default=0)


class Item(Base):
    """One service item (事项): what it needs, who handles it, where and how fast."""

    __tablename__ = "sd_items"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    department_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("sd_departments.code", ondelete="RESTRICT")
    )
    name: Mapped[str] = mapped_column(String(200))
    materials: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of names
    form: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of {name, label, required}
    agent_group: Mapped[str] = mapped_column(String(64))
    centre_tier: Mapped[str] = mapped_column(String(16))  # county | township
    target_minutes: Mapped[int] = mapped_column(Integer)
    sort: Mapped[int] = mapped_column(Integer, default=0)


class Agent(Base):
    """A user who serves at the desk: the groups (with priority, 1 first) and the seat endpoint
    (a service room of the centre) the agent's camera is published as."""

    __tablename__ = "sd_agents"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    groups: Mapped[str] = mapped_column(Text, default="[]")  # JSON [[group, priority], ...]
    seat_code: Mapped[str] = mapped_column(String(20))


class Case(Base):
    """A service session (办件). ``state`` follows ``vmesh.servicedesk.cases.TRANSITIONS``."""

    __tablename__ = "sd_cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    item_code: Mapped[str] = mapped_column(String(32), ForeignKey("sd_items.code"))
    state: Mapped[str] = mapped_column(String(24))
    kiosk_code: Mapped[str] = mapped_column(String(20))
    kiosk_path: Mapped[str] = mapped_column(String(255))
    village: Mapped[str] = mapped_column(String(200), default="")
    kiosk_user: Mapped[str] = mapped_column(String(64))
    applicant_name: Mapped[str] = mapped_column(String(100), default="")
    applicant_id: Mapped[str] = mapped_column(String(18), default="")
    agent_user: Mapped[str | None] = mapped_column(String(64))
    agent_seat: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The ticket's time: FCFS order; kept across abandonment and callback.
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Put back at the head of its queue (its agent's page died, or it was put on hold).
    at_head: Mapped[bool] = mapped_column(Boolean, default=False)
    first_accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(Text, default="")
    form: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str] = mapped_column(Text, default="")
    signature_file: Mapped[str] = mapped_column(String(255), default="")
    result_file: Mapped[str] = mapped_column(String(255), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    # Across tiers (migration 0015, vmesh.servicedesk.tiers). At the serving node: the node of a
    # kiosk of another node (None: this node's kiosk). At the kiosk's node: the node serving the
    # case and its id there (None: served here); the row mirrors the state it had there.
    kiosk_node: Mapped[str | None] = mapped_column(String(20))
    served_by: Mapped[str | None] = mapped_column(String(20))
    remote_id: Mapped[int | None] = mapped_column(Integer)


class CaseEvent(Base):
    """One transition of a case, in order (``seq`` from 1)."""

    __tablename__ = "sd_case_events"
    __table_args__ = (UniqueConstraint("case_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(Integer, ForeignKey("sd_cases.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event: Mapped[str] = mapped_column(String(24))
    from_state: Mapped[str] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="{}")


class Material(Base):
    """An image attached to a case: the face photo or a document camera (高拍仪) still."""

    __tablename__ = "sd_materials"
    __table_args__ = (UniqueConstraint("case_id", "upload_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(Integer, ForeignKey("sd_cases.id", ondelete="CASCADE"))
    # The client's id for the upload: a retried upload of the same image is stored once.
    upload_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # face | document
    name: Mapped[str] = mapped_column(String(200))
    file: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # received | verified | recapture (the agent asked for a new picture) | superseded (by it)
    status: Mapped[str] = mapped_column(String(16), default="received")
    verified_by: Mapped[str | None] = mapped_column(String(64))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(Text, default="")
