"""directory speed: two secondary indexes of directory_entries that nothing uses

``ix_directory_entries_parent_id`` is covered by ``(parent_id, status)``, which serves every
lookup by parent (tree levels, child counts, the foreign key's checks). ``(kind, name)`` serves no
query: a kind filter is tested on the rows another index gives (``vmesh.directory.search``). A
big import drops and rebuilds every secondary index, so each one costs seconds per million rows
(SQLite: 0.7 s and 2 s here), and every single write pays for them.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_directory_entries_parent_id")
    op.execute("DROP INDEX IF EXISTS ix_directory_entries_kind_name")


def downgrade() -> None:
    op.create_index("ix_directory_entries_parent_id", "directory_entries", ["parent_id"])
    op.create_index("ix_directory_entries_kind_name", "directory_entries", ["kind", "name"])
