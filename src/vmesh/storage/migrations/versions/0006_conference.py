"""conference: conferences, their venues and chairs, attendance (vmesh.conference.models)

Revision ID: 0006
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "conferences",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("host_node", sa.String(20), nullable=False),
        sa.Column("main_code", sa.String(20), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recording", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("state", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status in ('scheduled','active','ended')", name=op.f("ck_conferences_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conferences")),
    )
    op.create_index("ix_conferences_status", "conferences", ["status", "id"])
    op.create_table(
        "conference_venues",
        sa.Column("conference_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conference_id"],
            ["conferences.id"],
            ondelete="CASCADE",
            name=op.f("fk_conference_venues_conference_id_conferences"),
        ),
        sa.PrimaryKeyConstraint("conference_id", "code", name=op.f("pk_conference_venues")),
    )
    op.create_table(
        "conference_chairs",
        sa.Column("conference_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["conference_id"],
            ["conferences.id"],
            ondelete="CASCADE",
            name=op.f("fk_conference_chairs_conference_id_conferences"),
        ),
        sa.PrimaryKeyConstraint("conference_id", "username", name=op.f("pk_conference_chairs")),
    )
    op.create_table(
        "conference_attendance",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("conference_id", sa.Integer(), nullable=False),
        sa.Column("venue_code", sa.String(20), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(200), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(
            ["conference_id"],
            ["conferences.id"],
            ondelete="CASCADE",
            name=op.f("fk_conference_attendance_conference_id_conferences"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conference_attendance")),
    )
    op.create_index(
        "ix_conference_attendance_venue", "conference_attendance", ["conference_id", "venue_code"]
    )


def downgrade() -> None:
    op.drop_index("ix_conference_attendance_venue", table_name="conference_attendance")
    op.drop_table("conference_attendance")
    op.drop_table("conference_chairs")
    op.drop_table("conference_venues")
    op.drop_index("ix_conferences_status", table_name="conferences")
    op.drop_table("conferences")
