"""recording: per-camera plans, the index of recorded MP4 segments, online-rate samples

``recording_plans``: one row per camera that has a plan (mode always | schedule | alarm | off,
the weekly schedule as JSON, retention in days). ``recording_segments``: one row per complete,
ffprobe-able MP4 segment on this node's disk (times are Unix seconds, so span arithmetic is the
same on SQLite and PostgreSQL). ``camera_health_samples``: periodic counts of cameras and of
online cameras per org unit (region or department) and camera class, for the 完好率 report.

Revision ID: 0005
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recording_plans",
        sa.Column("camera_code", sa.String(20), nullable=False),
        sa.Column("mode", sa.String(12), nullable=False),
        sa.Column("schedule", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("camera_code", name=op.f("pk_recording_plans")),
        sa.CheckConstraint(
            "mode in ('always','schedule','alarm','off')", name=op.f("ck_recording_plans_mode")
        ),
    )
    op.create_table(
        "recording_segments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("camera_code", sa.String(20), nullable=False),
        sa.Column("start_at", sa.Float(), nullable=False),
        sa.Column("end_at", sa.Float(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.String(400), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_segments")),
        sa.UniqueConstraint("path", name=op.f("uq_recording_segments_path")),
    )
    op.create_index(
        "ix_recording_segments_camera_start", "recording_segments", ["camera_code", "start_at"]
    )
    op.create_index("ix_recording_segments_start", "recording_segments", ["start_at"])
    op.create_table(
        "camera_health_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sampled_at", sa.Float(), nullable=False),
        sa.Column("org_code", sa.String(20), nullable=False),
        sa.Column("org_kind", sa.String(24), nullable=False),
        sa.Column("camera_class", sa.String(4), nullable=False, server_default=""),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("online", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_camera_health_samples")),
    )
    op.create_index(
        "ix_camera_health_samples_org_time", "camera_health_samples", ["org_code", "sampled_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_camera_health_samples_org_time", table_name="camera_health_samples")
    op.drop_table("camera_health_samples")
    op.drop_index("ix_recording_segments_start", table_name="recording_segments")
    op.drop_index("ix_recording_segments_camera_start", table_name="recording_segments")
    op.drop_table("recording_segments")
    op.drop_table("recording_plans")
