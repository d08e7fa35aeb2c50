"""federation: known nodes and links, the catalogue of the subtree, catalogue publishing state

``federation_nodes``: this node's subtree (itself, children, their descendants as the children
report them) with each node's announcement and the state of its uplink. ``catalogue_entries``:
the catalogue of the whole subtree (this node's own directory included), kept apart from
``directory_entries`` (which holds only what this node owns and edits), applied idempotently by
(code, version). ``catalogue_origins``: per origin node, how many changes were applied and how
many were ignored as already known. ``catalogue_published``: at the origin, the catalogue
version last published for each local entry. ``catalogue_deletions``: local deletions not yet
published, filled by a trigger on ``directory_entries`` (so every way of deleting is seen,
without a hook in the directory's writers). ``federation_state``: small persistent counters
(scan watermark, last applied stream sequence).

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federation_nodes",
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("parent_code", sa.String(20), nullable=True),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("addresses", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("versions", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
        # The node's uplink (to parent_code): up, down or unknown.
        sa.Column("link_state", sa.String(8), nullable=False, server_default="unknown"),
        sa.Column("rtt_ms", sa.Float(), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        # Who measured the link: this node (a direct child) or the child that reported it.
        sa.Column("reported_by", sa.String(20), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_federation_nodes")),
    )
    op.create_index("ix_federation_nodes_parent", "federation_nodes", ["parent_code"])
    op.create_table(
        "catalogue_entries",
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("origin_node", sa.String(20), nullable=False),
        sa.Column("parent_code", sa.String(20), nullable=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("tier", sa.String(16), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False, server_default=""),
        sa.Column("attrs", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_catalogue_entries")),
    )
    op.create_index("ix_catalogue_entries_origin", "catalogue_entries", ["origin_node", "code"])
    op.create_index("ix_catalogue_entries_name", "catalogue_entries", ["name"])
    op.create_table(
        "catalogue_origins",
        sa.Column("origin_node", sa.String(20), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("ignored", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("origin_node", name=op.f("pk_catalogue_origins")),
    )
    op.create_table(
        "catalogue_published",
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("entry_version", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_catalogue_published")),
    )
    op.create_table(
        "catalogue_deletions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogue_deletions")),
    )
    op.create_table(
        "federation_state",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_federation_state")),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER catalogue_deletion AFTER DELETE ON directory_entries "
            "BEGIN INSERT INTO catalogue_deletions(code) VALUES (old.code); END"
        )
    else:
        op.execute(
            "CREATE FUNCTION catalogue_deletion() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO catalogue_deletions(code) VALUES (OLD.code); RETURN OLD; END $$"
        )
        op.execute(
            "CREATE TRIGGER catalogue_deletion AFTER DELETE ON directory_entries "
            "FOR EACH ROW EXECUTE FUNCTION catalogue_deletion()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS catalogue_deletion")
    else:
        op.execute("DROP TRIGGER IF EXISTS catalogue_deletion ON directory_entries")
        op.execute("DROP FUNCTION IF EXISTS catalogue_deletion()")
    for t in (
        "federation_state",
        "catalogue_deletions",
        "catalogue_published",
        "catalogue_origins",
        "catalogue_entries",
        "federation_nodes",
    ):
        op.drop_table(t)
