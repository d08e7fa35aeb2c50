"""command: incidents and their append-only logs

``command_incidents``: each incident's state folded from its log (opened here, handed here, or
copied from a child's replicated log). ``command_log``: every action, with a global id so a
copy applies each entry exactly once; ``published`` marks what is in this node's CMD_ stream.

Revision ID: 0010
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "command_incidents",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("origin_node", sa.String(20), nullable=False),
        sa.Column("host_node", sa.String(20), nullable=False),
        sa.Column("type", sa.String(24), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(4), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_command_incidents_status", "command_incidents", ["status", "opened_at"])
    op.create_table(
        "command_log",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("node", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("published", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_command_log_incident", "command_log", ["incident_id", "at"])
    op.create_index("ix_command_log_unpublished", "command_log", ["published"])


def downgrade() -> None:
    op.drop_index("ix_command_log_unpublished", table_name="command_log")
    op.drop_index("ix_command_log_incident", table_name="command_log")
    op.drop_table("command_log")
    op.drop_index("ix_command_incidents_status", table_name="command_incidents")
    op.drop_table("command_incidents")
