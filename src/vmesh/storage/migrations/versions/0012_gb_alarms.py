"""gb_alarms: GB/T 28181 alarms received, and the post-alarm seconds of alarm recording plans

``gb_alarms``: one row per alarm a device sent (a repeat of the same device, channel, SN and
AlarmTime is not stored again: ``uq_gb_alarms_key``), with the span of recording it asked for and
the incident it opened (vmesh.gb28181.alarms). ``recording_plans.post_alarm_seconds``: how long an
alarm plan records after an alarm (vmesh.recording.plans); needs 0005's table.

Revision ID: 0012
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = ("0005",)


def upgrade() -> None:
    op.create_table(
        "gb_alarms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_code", sa.String(20), nullable=False),
        sa.Column("channel_code", sa.String(20), nullable=False),
        sa.Column("sn", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("method", sa.Integer(), nullable=False),
        sa.Column("alarm_type", sa.String(8), nullable=False),
        sa.Column("alarm_time", sa.String(32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("record_from", sa.Float(), nullable=True),
        sa.Column("record_until", sa.Float(), nullable=True),
        sa.Column("incident_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gb_alarms")),
        sa.UniqueConstraint(
            "device_code", "channel_code", "sn", "alarm_time", name="uq_gb_alarms_key"
        ),
    )
    op.create_index("ix_gb_alarms_received", "gb_alarms", ["received_at"])
    op.create_index("ix_gb_alarms_channel_received", "gb_alarms", ["channel_code", "received_at"])
    with op.batch_alter_table("recording_plans") as batch:
        batch.add_column(sa.Column("post_alarm_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recording_plans") as batch:
        batch.drop_column("post_alarm_seconds")
    op.drop_index("ix_gb_alarms_channel_received", table_name="gb_alarms")
    op.drop_index("ix_gb_alarms_received", table_name="gb_alarms")
    op.drop_table("gb_alarms")
