"""grants: the deciding node and the decider's scope (decisions at an ancestor node)

``grants.decider_node``: the node that decides, grants directly and revokes a grant — the owner
node (the cameras' own node; every grant before this revision) or an ancestor of it (the
province, or the city above a county). ``grants.decider_scope``: the scope code of the user who
decided, so that every node receiving the decision can check it covers the cameras.

``depends_on`` 0007: the columns belong to the grants table it creates (this revision branches off
0003 like the other features' revisions).

Revision ID: 0011
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = ("0007",)


def upgrade() -> None:
    with op.batch_alter_table("grants") as b:
        b.add_column(sa.Column("decider_node", sa.String(20), nullable=False, server_default=""))
        b.add_column(sa.Column("decider_scope", sa.String(20), nullable=False, server_default=""))
    op.execute("UPDATE grants SET decider_node = owner_node")
    op.create_index("ix_grants_decider_status", "grants", ["decider_node", "status"])


def downgrade() -> None:
    op.drop_index("ix_grants_decider_status", table_name="grants")
    with op.batch_alter_table("grants") as b:
        b.drop_column("decider_scope")
        b.drop_column("decider_node")
