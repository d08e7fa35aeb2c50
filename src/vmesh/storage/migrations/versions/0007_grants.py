"""grants: cross-department and cross-level camera grants, and their delivery outbox

``grants``: every grant this node knows at its latest version (applied here, owned here, or
replicated here); only the owner node writes new versions, others apply them by (id, version).
``grant_outbox``: grant versions still to be delivered to other nodes (retried until answered).

Revision ID: 0007
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("applicant_node", sa.String(20), nullable=False),
        sa.Column("grantee_kind", sa.String(12), nullable=False),
        sa.Column("grantee_code", sa.String(20), nullable=False),
        sa.Column("applicant_user", sa.String(64), nullable=False),
        sa.Column("owner_node", sa.String(20), nullable=False),
        sa.Column("sel_org", sa.String(20), nullable=True),
        sa.Column("sel_tags", sa.Text(), nullable=False, server_default=""),
        sa.Column("sel_codes", sa.Text(), nullable=False, server_default=""),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("requested_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("revoked_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint(
            "status in ('applied','approved','rejected','revoked','expired')",
            name="ck_grants_status",
        ),
    )
    op.create_index("ix_grants_owner_status", "grants", ["owner_node", "status"])
    op.create_index("ix_grants_applicant", "grants", ["applicant_node", "grantee_code"])
    op.create_table(
        "grant_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("grant_id", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("target_node", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_grant_outbox_next", "grant_outbox", ["next_at"])


def downgrade() -> None:
    op.drop_index("ix_grant_outbox_next", table_name="grant_outbox")
    op.drop_table("grant_outbox")
    op.drop_index("ix_grants_applicant", table_name="grants")
    op.drop_index("ix_grants_owner_status", table_name="grants")
    op.drop_table("grants")
