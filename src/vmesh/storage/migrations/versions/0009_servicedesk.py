"""service desk: catalogue (departments, items), agents, cases with their transitions, materials

See ``vmesh.servicedesk.models``.

Revision ID: 0009
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sd_departments",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("sort", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_sd_departments")),
    )
    op.create_table(
        "sd_items",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("materials", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("form", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("agent_group", sa.String(64), nullable=False),
        sa.Column("centre_tier", sa.String(16), nullable=False),
        sa.Column("target_minutes", sa.Integer(), nullable=False),
        sa.Column("sort", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_sd_items")),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["sd_departments.code"],
            name=op.f("fk_sd_items_department_code_sd_departments"),
            ondelete="RESTRICT",
        ),
    )
    op.create_table(
        "sd_agents",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("seat_code", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_sd_agents")),
    )
    op.create_table(
        "sd_cases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("item_code", sa.String(32), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("kiosk_code", sa.String(20), nullable=False),
        sa.Column("kiosk_path", sa.String(255), nullable=False),
        sa.Column("village", sa.String(200), nullable=False, server_default=""),
        sa.Column("kiosk_user", sa.String(64), nullable=False),
        sa.Column("applicant_name", sa.String(100), nullable=False, server_default=""),
        sa.Column("applicant_id", sa.String(18), nullable=False, server_default=""),
        sa.Column("agent_user", sa.String(64), nullable=True),
        sa.Column("agent_seat", sa.String(20), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("enqueued_at", TS, nullable=True),
        sa.Column("at_head", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("first_accepted_at", TS, nullable=True),
        sa.Column("accepted_at", TS, nullable=True),
        sa.Column("submitted_at", TS, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False, server_default=""),
        sa.Column("form", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("rating_comment", sa.Text(), nullable=False, server_default=""),
        sa.Column("signature_file", sa.String(255), nullable=False, server_default=""),
        sa.Column("result_file", sa.String(255), nullable=False, server_default=""),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sd_cases")),
        sa.UniqueConstraint("number", name=op.f("uq_sd_cases_number")),
        sa.ForeignKeyConstraint(
            ["item_code"], ["sd_items.code"], name=op.f("fk_sd_cases_item_code_sd_items")
        ),
    )
    op.create_index("ix_sd_cases_state_item", "sd_cases", ["state", "item_code"])
    op.create_index("ix_sd_cases_created", "sd_cases", ["created_at"])
    op.create_table(
        "sd_case_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("event", sa.String(24), nullable=False),
        sa.Column("from_state", sa.String(24), nullable=False),
        sa.Column("to_state", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sd_case_events")),
        sa.UniqueConstraint("case_id", "seq", name=op.f("uq_sd_case_events_case_id_seq")),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["sd_cases.id"],
            name=op.f("fk_sd_case_events_case_id_sd_cases"),
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "sd_materials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("upload_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("file", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("uploaded_at", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="received"),
        sa.Column("verified_by", sa.String(64), nullable=True),
        sa.Column("verified_at", TS, nullable=True),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sd_materials")),
        sa.UniqueConstraint("case_id", "upload_id", name=op.f("uq_sd_materials_case_id_upload_id")),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["sd_cases.id"],
            name=op.f("fk_sd_materials_case_id_sd_cases"),
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("sd_materials")
    op.drop_table("sd_case_events")
    op.drop_index("ix_sd_cases_created", table_name="sd_cases")
    op.drop_index("ix_sd_cases_state_item", table_name="sd_cases")
    op.drop_table("sd_cases")
    op.drop_table("sd_agents")
    op.drop_table("sd_items")
    op.drop_table("sd_departments")
