"""directory code index: ``directory_entries.code`` unique by a named index, not an inline UNIQUE

A big import drops ``directory_entries``' secondary indexes and builds them again before it
commits (one sort each instead of a random index insert per row: ``vmesh.directory.transfer``).
The inline ``UNIQUE (code)`` could not be dropped that way: SQLite keeps it as an automatic
index of the table. As the unique index ``uq_directory_entries_code`` it is dropped and rebuilt
with the others (raw driver, 200,000 entries: inserts 1.8–2.0 s → 1.2 s of CPU, the index
built afterwards in 0.2 s). Codes stay unique: a duplicate makes the rebuild fail and the
import roll back (the import also checks every code itself first).

SQLite cannot drop a table constraint, so the table is rebuilt: a copy without the clause, every
row copied (ids included), the old table dropped, the copy renamed, and its indexes and its
trigger (``catalogue_deletion``, 0003) created again from their saved SQL. Alembic's connection
has foreign keys off (``vmesh.storage.migrations.env`` does not turn them on), so dropping the
old table neither cascades into ``entry_tags`` nor checks the references to it, and, the
trigger being dropped with the table, no deletion is recorded for the catalogue. PostgreSQL
turns the constraint into an index of the same name.

Revision ID: 0017
Revises: 0003
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

INLINE = ", \n\tCONSTRAINT uq_directory_entries_code UNIQUE (code)"
INDEX = "CREATE UNIQUE INDEX uq_directory_entries_code ON directory_entries (code)"


def _rebuild_sqlite(table_sql: str) -> None:
    """Replace ``directory_entries`` by a table made with ``table_sql``, keeping every row, index
    and trigger of it (foreign keys must be off: see the module docstring)."""
    bind = op.get_bind()
    if bind.execute(sa.text("PRAGMA foreign_keys")).scalar():
        raise RuntimeError("migration 0017 rebuilds directory_entries: foreign keys must be off")
    others = [
        sql
        for (sql,) in bind.execute(
            sa.text(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'directory_entries' "
                "AND type IN ('index', 'trigger') AND sql IS NOT NULL "
                "AND name != 'uq_directory_entries_code' ORDER BY type, name"
            )
        )
    ]
    columns = ", ".join(
        r[1] for r in bind.execute(sa.text("PRAGMA table_info(directory_entries)")).all()
    )
    # (After a rename SQLite keeps the name quoted: ``CREATE TABLE "directory_entries" (``.)
    new, found = re.subn(
        r'^CREATE TABLE ("?)directory_entries\1 \(',
        "CREATE TABLE directory_entries_0017 (",
        table_sql,
    )
    if found != 1:
        raise RuntimeError(f"migration 0017: directory_entries is not as expected: {table_sql}")
    op.execute(new)
    op.execute(
        f"INSERT INTO directory_entries_0017 ({columns}) SELECT {columns} FROM directory_entries"
    )
    op.execute("DROP TABLE directory_entries")
    op.execute("ALTER TABLE directory_entries_0017 RENAME TO directory_entries")
    for sql in others:
        op.execute(sql)


def _table_sql() -> str:
    sql = op.get_bind().execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'directory_entries'")
    )
    return str(sql.scalar_one())


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("ALTER TABLE directory_entries DROP CONSTRAINT uq_directory_entries_code")
        op.execute(INDEX)
        return
    table_sql = _table_sql()
    if INLINE not in table_sql:
        raise RuntimeError(f"migration 0017: directory_entries is not as expected: {table_sql}")
    _rebuild_sqlite(table_sql.replace(INLINE, ""))
    op.execute(INDEX)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP INDEX uq_directory_entries_code")
        op.execute(
            "ALTER TABLE directory_entries ADD CONSTRAINT uq_directory_entries_code UNIQUE (code)"
        )
        return
    table_sql = _table_sql()
    end = table_sql.rindex("\n)")
    op.execute("DROP INDEX uq_directory_entries_code")
    _rebuild_sqlite(table_sql[:end] + INLINE + table_sql[end:])
