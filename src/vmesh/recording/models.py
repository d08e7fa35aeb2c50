"""Recording tables (migration 0005): plans, the segment index, online-rate samples.

Times are Unix seconds (float): spans and gaps are plain arithmetic on both databases.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vmesh.storage.db import Base


class RecordingPlan(Base):
    __tablename__ = "recording_plans"

    camera_code: Mapped[str] = mapped_column(String(20), primary_key=True)
    mode: Mapped[str] = mapped_column(String(12))
    schedule: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of weekly windows
    retention_days: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[float] = mapped_column(Float)
    # Alarm plans: seconds recorded after an alarm (migration 0012; None: the default).
    post_alarm_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Segment(Base):
    __tablename__ = "recording_segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_code: Mapped[str] = mapped_column(String(20))
    start_at: Mapped[float] = mapped_column(Float)
    end_at: Mapped[float] = mapped_column(Float)
    duration: Mapped[float] = mapped_column(Float)
    bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(400), unique=True)

    __table_args__ = (
        Index("ix_recording_segments_camera_start", "camera_code", "start_at"),
        Index("ix_recording_segments_start", "start_at"),
    )


class HealthSample(Base):
    __tablename__ = "camera_health_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sampled_at: Mapped[float] = mapped_column(Float)
    org_code: Mapped[str] = mapped_column(String(20))
    org_kind: Mapped[str] = mapped_column(String(24))
    camera_class: Mapped[str] = mapped_column(String(4), default="")
    total: Mapped[int] = mapped_column(Integer)
    online: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_camera_health_samples_org_time", "org_code", "sampled_at"),)
