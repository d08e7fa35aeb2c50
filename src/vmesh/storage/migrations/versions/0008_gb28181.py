"""gb28181: registered GB/T 28181 devices, kept across node restarts

``gb_devices``: one row per device that registered: its last address and transport, whether it
is online, its charset, when its registration expires and when its catalogue subscription ends
(vmesh.gb28181.store).

Revision ID: 0008
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gb_devices",
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("host", sa.String(64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(4), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("charset", sa.String(16), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subscribed_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_gb_devices")),
    )


def downgrade() -> None:
    op.drop_table("gb_devices")
