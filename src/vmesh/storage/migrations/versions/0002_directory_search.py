"""directory search: name substring index and sort indexes

Name search must find any substring of a Chinese name, including one and two characters, fast at a
million rows. SQLite: a contentless FTS5 table holding each name's characters and character pairs
as tokens in one column (see ``vmesh.directory.validate.name_tokens``): one character is a
one-character token, two are a two-character token, more are all of their pairs, then an exact
test. The index keeps rowids only (``detail=none``): no positions, so it is about half the size
and a bulk import writes it in about half the time; posting lists come in rowid order, so a
search can stop after the first matches. The store keeps
it in step with ``directory_entries``. PostgreSQL: a GIN index over the array of a name's
characters and character pairs (``vmesh_name_grams(name)``, an immutable SQL function),
maintained by PostgreSQL itself; ``@>`` narrows to names holding the query's character or every
pair of it, ``strpos`` checks the order. (A GIN index of single characters had to check every
name holding 春 to find 春春.) pg_trgm is not used: it
cannot use its index for patterns under three characters, and under the C locale it drops CJK.

Both: indexes for the sort orders (name, updated) with ``id`` as tie-breaker, and the path index
replaced by one on ``(path, name)``, so a search within a subtree reads names from the index
alone (on PostgreSQL the index includes ``id`` too, for index-only scans). PostgreSQL: ``path``
indexed in the C collation, because subtree filters are range scans
that must order by byte whatever the database's collation (codes are digits of one length, which
every collation orders alike).

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def _tokens(text: str) -> str:
    # Kept in step with vmesh.directory.validate.name_tokens (not imported: migrations are frozen).
    chars = "".join(filter(str.isalnum, text.lower()))
    return " ".join([*chars, *(chars[i : i + 2] for i in range(len(chars) - 1))])


# The characters and character pairs of lower(name), for a GIN index (PostgreSQL).
NAME_GRAMS = """
CREATE FUNCTION vmesh_name_grams(name text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT array_agg(DISTINCT g) FROM (
    SELECT substr(lower(name), i, 2) AS g FROM generate_series(1, length(name) - 1) AS i
    UNION ALL SELECT c FROM regexp_split_to_table(lower(name), '') AS c
  ) AS t
$$
"""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE directory_name_fts USING fts5("
            "tokens, content='', columnsize=0, detail=none, "
            "tokenize='unicode61 remove_diacritics 0')"
        )
        rows = bind.execute(sa.text("SELECT id, name FROM directory_entries")).all()
        if rows:
            bind.execute(
                sa.text("INSERT INTO directory_name_fts(rowid, tokens) VALUES (:id, :t)"),
                [{"id": r[0], "t": _tokens(r[1])} for r in rows],
            )
        op.create_index("ix_directory_entries_updated", "directory_entries", ["updated_at"])
        op.create_index("ix_directory_entries_path_name", "directory_entries", ["path", "name"])
        op.drop_index("ix_directory_entries_path", "directory_entries")
    else:
        op.execute(NAME_GRAMS)
        op.execute(
            "CREATE INDEX ix_directory_entries_name_grams ON directory_entries "
            "USING gin (vmesh_name_grams(name))"
        )
        op.execute("CREATE INDEX ix_directory_entries_name_id ON directory_entries (name, id)")
        op.execute(
            "CREATE INDEX ix_directory_entries_updated ON directory_entries (updated_at, id)"
        )
        op.execute(
            "CREATE INDEX ix_directory_entries_path_name ON directory_entries "
            '(path COLLATE "C", name) INCLUDE (id)'
        )
        op.execute("DROP INDEX ix_directory_entries_path")
        # (name, id) serves every use of (name): one index less to build on import.
        op.execute("DROP INDEX ix_directory_entries_name")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TABLE directory_name_fts")
        op.drop_index("ix_directory_entries_updated", "directory_entries")
    else:
        for ix in ("name_grams", "name_id", "updated"):
            op.execute(f"DROP INDEX ix_directory_entries_{ix}")
        op.execute("DROP FUNCTION vmesh_name_grams(text)")
        op.create_index("ix_directory_entries_name", "directory_entries", ["name"])
    op.create_index("ix_directory_entries_path", "directory_entries", ["path"])
    op.drop_index("ix_directory_entries_path_name", "directory_entries")
