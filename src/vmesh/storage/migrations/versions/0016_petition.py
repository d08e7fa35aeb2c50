"""petition: petitions with their transitions, evidence files and the clerk's record paragraphs

See ``vmesh.petition.models``.

Revision ID: 0016
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["petition_id"],
        ["pt_petitions.id"],
        name=op.f(f"fk_{table}_petition_id_pt_petitions"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "pt_petitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("room_code", sa.String(20), nullable=False),
        sa.Column("room_path", sa.String(255), nullable=False),
        sa.Column("room_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("booked_by", sa.String(64), nullable=False),
        sa.Column("petitioner_name", sa.String(100), nullable=False),
        sa.Column("petitioner_id", sa.String(18), nullable=False),
        sa.Column("category", sa.String(24), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("triage_by", sa.String(64), nullable=True),
        sa.Column("triage_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("scheduled_at", TS, nullable=True),
        sa.Column("officials", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("host_node", sa.String(20), nullable=True),
        sa.Column("conference_id", sa.Integer(), nullable=True),
        sa.Column("session_started_at", TS, nullable=True),
        sa.Column("session_ended_at", TS, nullable=True),
        sa.Column("followup_conference_id", sa.Integer(), nullable=True),
        sa.Column("signature_file", sa.String(255), nullable=False, server_default=""),
        sa.Column("record_file", sa.String(255), nullable=False, server_default=""),
        sa.Column("department", sa.String(100), nullable=False, server_default=""),
        sa.Column("assigned_at", TS, nullable=True),
        sa.Column("due_at", TS, nullable=True),
        sa.Column("extensions", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("extension_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("outcome", sa.Text(), nullable=False, server_default=""),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("rating_comment", sa.Text(), nullable=False, server_default=""),
        sa.Column("closed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pt_petitions")),
        sa.UniqueConstraint("number", name=op.f("uq_pt_petitions_number")),
    )
    op.create_index("ix_pt_petitions_state", "pt_petitions", ["state"])
    op.create_table(
        "pt_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("event", sa.String(24), nullable=False),
        sa.Column("from_state", sa.String(24), nullable=False),
        sa.Column("to_state", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pt_events")),
        sa.UniqueConstraint("petition_id", "seq", name=op.f("uq_pt_events_petition_id_seq")),
        _fk("pt_events"),
    )
    op.create_table(
        "pt_evidence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("file", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pt_evidence")),
        _fk("pt_evidence"),
    )
    op.create_table(
        "pt_record",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("offset_seconds", sa.Integer(), nullable=False),
        sa.Column("clerk", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pt_record")),
        sa.UniqueConstraint("petition_id", "seq", name=op.f("uq_pt_record_petition_id_seq")),
        _fk("pt_record"),
    )


def downgrade() -> None:
    op.drop_table("pt_record")
    op.drop_table("pt_evidence")
    op.drop_table("pt_events")
    op.drop_index("ix_pt_petitions_state", table_name="pt_petitions")
    op.drop_table("pt_petitions")
