"""servicedesk across tiers: where a case's kiosk is and which node serves it

``sd_cases.kiosk_node``: at the serving node, the node of a kiosk of another node (NULL: a kiosk of
this node). ``sd_cases.served_by`` / ``remote_id``: at the kiosk's node, the node that serves the
case and the case's id there (NULL: served here). See ``vmesh.servicedesk.tiers``.

Revision ID: 0015
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = ("0009",)


def upgrade() -> None:
    with op.batch_alter_table("sd_cases") as b:
        b.add_column(sa.Column("kiosk_node", sa.String(20), nullable=True))
        b.add_column(sa.Column("served_by", sa.String(20), nullable=True))
        b.add_column(sa.Column("remote_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sd_cases") as b:
        b.drop_column("remote_id")
        b.drop_column("served_by")
        b.drop_column("kiosk_node")
