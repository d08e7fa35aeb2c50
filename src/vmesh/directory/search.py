"""Directory search: name substring, code prefix, kind, type, status, tag, subtree; sorted, paged.

How it stays fast at a million rows: every plan reads a bounded number of rows.

- Code prefix, subtree and tag each have an index and can *drive*: first a count of each alone,
  reading at most ``DRIVE_MAX + 1`` index entries (a few milliseconds). The cheapest one whose
  rows cost at most ``DRIVE_MAX`` table reads (and is not beaten by a rarer name) is read through
  its index, the other filters are applied without theirs, and SQL sorts, pages and counts the
  rows in one statement (exact total). A subtree's rows are cheap: the ``(path, name)`` index
  holds the name, so no table read is needed for a name test.
- A name substring is searched through the name index in index (id) order, other filters tested
  on each row, counting in SQL up to ``SORT_MAX + 1`` matches. Up to ``SORT_MAX`` matches are
  sorted in SQL exactly as asked; beyond that the page is the first matches in the order
  entries were created, ``sorted_by`` says ``"created"``, the total is ``SORT_MAX`` with
  ``total_capped`` set:
  the console asks the user to refine the search. Sorting more matches than that by name costs a
  random row read each (a common character such as 村 matches a third of a province); walking
  the name-ordered index instead is fast when matches are spread out and half a second when they
  bunch late in name order (names starting with 桐庐县), so neither gives a bounded p99.
- Otherwise (no name, nothing narrow) the index of the sort order is walked, testing each row,
  with the total counted up to ``CAP`` through the narrowest range.

Name substrings use ``directory_name_fts`` on SQLite (one token per character and one per pair of
characters; posting lists in rowid order; a long query asks for all of its pairs) and a GIN
index over the characters and pairs of ``lower(name)`` on PostgreSQL (``vmesh_name_grams``, see
migration 0002; a name the planner expects in more than ``PG_WALK_ROWS`` rows walks the primary
key instead); both are followed by an exact ``instr``/``strpos`` test.

Public: ``SearchQuery``, ``SearchResult``, ``search``, ``SORTS``, ``CAP``, ``DRIVE_MAX``,
``SORT_MAX``, ``CREATED``.
"""

from __future__ import annotations

import json
import logging
import operator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vmesh.directory import validate as v
from vmesh.directory.models import Entry
from vmesh.directory.store import as_summary, summary_columns
from vmesh.errors import ErrorList, FieldError
from vmesh.identity.codes import TYPE_NAMES, Kind
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

CAP = 10_000  # totals are exact up to this many rows
DRIVE_MAX = 10_000  # a filter whose rows cost at most this many table reads drives the search
SORT_MAX = 2_000  # name matches sorted exactly; beyond, the first ones in creation order
QUERY_PAIRS = 8  # at most this many of a long name query's pairs are asked of the index
CREATED = "created"  # ``sorted_by`` of a page in creation (id) order
PG_GRAMS = "vmesh_name_grams(e.name) @> CAST(:qgrams AS text[])"  # migration 0002's GIN index
PG_WALK_ROWS = 50_000  # PostgreSQL: names estimated to match more are walked in id order
SUBTREE_WEIGHT = 0.2  # a subtree row read from the (path, name) index costs a fifth of a table read
Q_MAX = 100
SORTS = ("name", "-name", "code", "-code", "updated", "-updated")
_SORT_COLS = {"name": "e.name", "code": "e.code", "updated": "e.updated_at"}


@dataclass
class SearchQuery:
    q: str | None = None
    code_prefix: str | None = None
    kind: str | None = None
    type: str | None = None
    status: str | None = None
    tag: str | None = None
    sort: str = "name"
    offset: int = 0
    limit: int = 50

    def check(self) -> None:
        errors = ErrorList()
        if self.q is not None:
            self.q = self.q.strip() or None
        if self.q is not None and len(self.q) > Q_MAX:
            errors.add(FieldError("q", f"must be at most {Q_MAX} characters", self.q[:20] + "…"))
        if self.code_prefix is not None:
            cp = self.code_prefix.strip()
            if not (cp.isascii() and cp.isdigit() and 1 <= len(cp) <= 20):
                errors.add(FieldError("code_prefix", "must be 1 to 20 digits", self.code_prefix))
            self.code_prefix = cp or None
        if self.kind is not None and self.kind not in {k.value for k in Kind}:
            errors.add(
                FieldError(
                    "kind", f"unknown kind (allowed: {', '.join(k.value for k in Kind)})", self.kind
                )
            )
        if self.type is not None and self.type not in TYPE_NAMES:
            errors.add(
                FieldError(
                    "type", f"unknown type code (known: {', '.join(sorted(TYPE_NAMES))})", self.type
                )
            )
        if self.status is not None and self.status not in v.STATUSES:
            errors.add(FieldError("status", f"must be one of {', '.join(v.STATUSES)}", self.status))
        if self.sort not in SORTS:
            errors.add(FieldError("sort", f"must be one of {', '.join(SORTS)}", self.sort))
        if self.offset < 0:
            errors.add(FieldError("offset", "must be 0 or more", str(self.offset)))
        if not 1 <= self.limit <= 500:
            errors.add(FieldError("limit", "must be 1 to 500", str(self.limit)))
        errors.raise_if_any("the search is not valid")


@dataclass
class SearchResult:
    items: list[dict[str, Any]]
    total: int
    total_capped: bool
    plan: str = ""  # which index drove the search (for logs and the benchmark)
    sorted_by: str = "name"  # the query's sort, or ``CREATED`` (too many name matches to sort)


@dataclass
class _Filter:
    name: str
    plain: str  # the condition, index-usable
    blind: str  # the same condition written so that no index is used for it
    params: dict[str, Any] = field(default_factory=dict)
    count_sql: str | None = None  # count of this filter alone, if it can drive
    weight: float = 1.0  # cost of reading one candidate row through this filter's index


def _capped_count(where: str, cap: int = CAP) -> str:
    return (
        f"SELECT count(*) FROM (SELECT 1 FROM directory_entries e WHERE {where} LIMIT {cap + 1}) c"
    )


def _filters(qry: SearchQuery, subtree: str | None, dialect: str) -> list[_Filter]:
    pg = dialect == "postgresql"
    out: list[_Filter] = []
    cap = f"LIMIT {DRIVE_MAX + 1}"
    if qry.q:
        ql = qry.q.lower()
        # Without letters that have case (Chinese, digits), lower() of every name is wasted.
        name = "e.name" if ql.upper() == ql else "lower(e.name)"
        if pg:
            exact = f"strpos({name}, :ql) > 0"
            pairs = list(dict.fromkeys(map(operator.add, ql, ql[1:])))
            grams = pairs[:: max(1, len(pairs) // QUERY_PAIRS)] if pairs else [ql]
            # strpos first: when the planner scans the table for a common character, it then
            # computes the grams only of the names that match, not of every name it passes.
            out.append(
                _Filter("name", f"{exact} AND {PG_GRAMS}", exact, {"ql": ql, "qgrams": grams})
            )
        else:
            exact = f"instr({name}, :ql) > 0"
            params: dict[str, Any] = {"ql": ql}
            phrase = v.query_tokens(qry.q)
            if phrase is not None:
                params["fts"] = phrase
            out.append(_Filter("name", exact, exact, params))
    if qry.code_prefix:
        lo, hi = v.code_prefix_range(qry.code_prefix)
        # Digit strings of one length order alike in every collation: no COLLATE needed.
        cond = "e.code >= :clo" + (" AND e.code < :chi" if hi else "")
        out.append(
            _Filter(
                "code",
                cond,
                f"substr(e.code, 1, {len(lo)}) = :clo",
                {"clo": lo, "chi": hi},
                _capped_count(cond),
            )
        )
    if subtree:
        lo, hi = v.path_range(subtree)
        col = 'e.path COLLATE "C"' if pg else "e.path"
        cond = f"{col} >= :plo AND {col} < :phi"
        out.append(
            _Filter(
                "subtree",
                cond,
                f"substr(e.path, 1, {len(lo)}) = :plo",
                {"plo": lo, "phi": hi},
                # The (path, name) index holds what a name test needs: no table reads.
                _capped_count(cond, int(DRIVE_MAX / SUBTREE_WEIGHT)),
                SUBTREE_WEIGHT,
            )
        )
    if qry.tag:
        sub = "SELECT entry_id FROM entry_tags WHERE tag = :tag"
        out.append(
            _Filter(
                "tag",
                f"e.id IN ({sub})",
                "EXISTS (SELECT 1 FROM entry_tags t WHERE t.entry_id = e.id AND t.tag = :tag)",
                {"tag": qry.tag},
                f"SELECT count(*) FROM ({sub} {cap}) c",
            )
        )
    if qry.kind:
        out.append(_Filter("kind", "e.kind = :kind", "e.kind || '' = :kind", {"kind": qry.kind}))
    if qry.type:
        cond = "substr(e.code, 11, 3) = :type"
        out.append(_Filter("type", cond, cond, {"type": qry.type}))
    if qry.status:
        out.append(
            _Filter(
                "status", "e.status = :status", "e.status || '' = :status", {"status": qry.status}
            )
        )
    return out


def _order(sort: str, dialect: str, *, blind: bool) -> str:
    desc = sort.startswith("-")
    col = _SORT_COLS[sort.lstrip("-")]
    d = " DESC" if desc else ""
    if not blind:
        return f"{col}{d}, e.id{d}" if col != "e.code" else f"{col}{d}"
    # Expressions that no index matches, so the driver's index is used and the rows are sorted.
    if col == "e.updated_at" and dialect == "postgresql":
        expr = "e.updated_at + interval '0 seconds'"
    else:
        expr = f"{col} || ''"
    return f"{expr}{d}, e.id + 0{d}"


async def _whole_tree(s: AsyncSession, subtree: str) -> bool:
    """True when ``subtree`` is the only root: its filter would then exclude nothing."""
    roots = (
        (
            await s.execute(
                text("SELECT path FROM directory_entries WHERE parent_id IS NULL LIMIT 2")
            )
        )
        .scalars()
        .all()
    )
    return list(roots) == [subtree]


def _query_pairs(fts: str) -> str:
    """The pair tokens a long query asks of the name index: all of them, or an even spread of
    ``QUERY_PAIRS`` from the first to the last (the exact test does the rest).

    All pairs, not the two rarest: FTS5 intersects its posting lists in rowid order, so a
    common pair adds the cost of stepping through its list (路与: 360,000 names, ~10 ms whole),
    but every pair narrows the candidates, each a row read and an ``instr``. Picking the two
    rarest took a statement of its own (4 ms at p50 at 1M names) and, with its counts capped,
    could not tell common pairs apart: for 路与新华路口 it asked 路与 and 路口 and read 47,000
    rows for the first 2,001 matches (docs/directory.md, "How search stays fast").
    """
    toks = fts.split(" ")  # '"西湖" "湖区" ...': letters and digits, quoted
    if len(toks) <= QUERY_PAIRS:
        return fts
    last = len(toks) - 1
    picks = dict.fromkeys(round(i * last / (QUERY_PAIRS - 1)) for i in range(QUERY_PAIRS))
    return " ".join(toks[i] for i in picks)


async def _count(s: AsyncSession, sql: str, params: dict[str, Any]) -> int:
    return int((await s.execute(text(sql), params)).scalar_one())


async def _sorted_page(
    s: AsyncSession, qry: SearchQuery, base: str, params: dict[str, Any], order: str
) -> list[int]:
    page = f"LIMIT {int(qry.limit)} OFFSET {int(qry.offset)}"
    sql = f"SELECT e.id {base} ORDER BY {order} {page}"
    return [int(r) for r in (await s.execute(text(sql), params)).scalars()]


async def _name_plan(
    s: AsyncSession,
    qry: SearchQuery,
    filters: list[_Filter],
    params: dict[str, Any],
    dialect: str,
) -> tuple[list[int], int, bool, str]:
    """Matches of the name filter (and the others) through the name index, in its (id) order:
    (page ids, total, capped, sorted_by). At most ``SORT_MAX + 1`` matches are counted; that
    many are sorted as asked, more are paged in creation order."""
    pg = dialect == "postgresql"
    desc = qry.sort.startswith("-")
    d = " DESC" if desc else ""
    if "fts" in params:
        # FTS5 gives rowids in order, so a LIMIT stops the posting list early; CROSS JOIN keeps
        # the index outermost.
        src = "directory_name_fts f CROSS JOIN directory_entries e ON e.id = f.rowid"
        where = "f.directory_name_fts MATCH :fts AND " + " AND ".join(f.blind for f in filters)
        walk = f"f.rowid{d}"
    else:
        src = "directory_entries e"
        where = " AND ".join(f.plain if f.name == "name" and pg else f.blind for f in filters)
        walk = f"e.id{d}"
    base = walk_base = f"FROM {src} WHERE {where}"
    if pg:
        # PostgreSQL's GIN index returns a bitmap, in no order: a page in id order walks the
        # primary key instead, testing names with strpos alone.
        walk_base = "FROM directory_entries e WHERE " + " AND ".join(f.blind for f in filters)
    if pg and "qgrams" in params:
        # A name in 5% of the directory or more: its GIN bitmap costs more than walking the
        # primary key, where a few thousand rows hold 2,001 matches. The planner's estimate
        # (element statistics of the grams) tells which; it errs low for many pairs, which the
        # index serves well.
        explain = f"EXPLAIN (FORMAT JSON) SELECT 1 FROM directory_entries e WHERE {PG_GRAMS}"
        doc = (await s.execute(text(explain), {"qgrams": params["qgrams"]})).scalar_one()
        doc = json.loads(doc) if isinstance(doc, str) else doc
        if doc[0]["Plan"]["Plan Rows"] > PG_WALK_ROWS:
            base = walk_base
    # One statement: up to SORT_MAX + 1 matches, their count, and the page of them sorted as
    # asked (only the sort key comes along). More matches than that: a page in creation order.
    key = _SORT_COLS[qry.sort.lstrip("-")]
    order = _order(qry.sort, dialect, blind=True)
    page = f"LIMIT {int(qry.limit)} OFFSET {int(qry.offset)}"
    m = f"WITH m AS (SELECT e.id AS id, {key} AS {key[2:]} {base} LIMIT {SORT_MAX + 1})"
    sql = f"{m} SELECT e.id, (SELECT count(*) FROM m) FROM m e ORDER BY {order} {page}"
    sorted_by = f"-{CREATED}" if desc else CREATED
    # SQLite's name index gives matches in id order, so the first SORT_MAX + 1 (``m``) also hold
    # an ascending page in creation order, when it lies within them: the same statement returns
    # that page instead when there are too many matches to sort (one statement less for most
    # names of one or two characters). PostgreSQL's bitmap has no order; descending pages start
    # at the last match.
    one_pass = "fts" in params and not desc and qry.offset + qry.limit <= SORT_MAX + 1
    if one_pass:
        sql = (
            f"{m}, c AS (SELECT count(*) AS n FROM m) "
            f"SELECT * FROM (SELECT e.id, c.n FROM m e, c WHERE c.n <= {SORT_MAX} "
            f"ORDER BY {order} {page}) "
            f"UNION ALL SELECT * FROM (SELECT e.id, c.n FROM m e, c WHERE c.n > {SORT_MAX} "
            f"ORDER BY e.id {page})"
        )
    found = (await s.execute(text(sql), params)).all()
    n = int(found[0][1]) if found else None
    if n is None:  # past the last page (or nothing): the count alone
        n = await _count(
            s, f"SELECT count(*) FROM (SELECT 1 {base} LIMIT {SORT_MAX + 1}) c", params
        )
    if n > SORT_MAX:
        if one_pass:
            return [int(r[0]) for r in found], SORT_MAX, True, sorted_by
        return await _sorted_page(s, qry, walk_base, params, walk), SORT_MAX, True, sorted_by
    return [int(r[0]) for r in found], n, False, qry.sort


async def search(db: Database, qry: SearchQuery, subtree: str | None) -> SearchResult:
    """Run ``qry`` within ``subtree`` (a path; ``None`` for the whole directory)."""
    qry.check()
    sorted_by = qry.sort
    async with db.sessions() as s:
        # Only a root can be the whole tree ('/7/'); deeper paths need no question.
        if subtree is not None and subtree.count("/") == 2 and await _whole_tree(s, subtree):
            subtree = None
        filters = _filters(qry, subtree, db.dialect)
        params: dict[str, Any] = {}
        for f in filters:
            params.update(f.params)
        named = any(f.name == "name" for f in filters)
        if "fts" in params:
            params["fts"] = _query_pairs(params["fts"])
        # Each filter that can drive, counted alone (capped), all in one statement; with them
        # the name's candidates (rowids only, cheap), in case a rarer name beats a narrow index.
        counted = {f.name: f.count_sql for f in filters if f.count_sql}
        if counted and "fts" in params:
            counted["name"] = (
                "SELECT count(*) FROM (SELECT rowid FROM directory_name_fts "
                f"WHERE directory_name_fts MATCH :fts LIMIT {SORT_MAX + 1}) c"
            )
        counts: dict[str, int] = {}
        if counted:
            sql = "SELECT " + ", ".join(f"({q})" for q in counted.values())
            row = (await s.execute(text(sql), params)).one()
            counts = {name: int(n) for name, n in zip(counted, row, strict=True)}
        name_count = counts.pop("name", None)
        weights = {f.name: f.weight for f in filters}
        driver = min(counts, key=lambda n: counts[n] * weights[n]) if counts else None
        cost = counts[driver] * weights[driver] if driver is not None else float("inf")
        if named and cost <= DRIVE_MAX and name_count is not None:
            counts["name"] = name_count
            if name_count <= SORT_MAX and name_count <= cost:
                cost = float("inf")
        key = qry.sort.lstrip("-")
        if named and cost > DRIVE_MAX:
            ids, total, capped, sorted_by = await _name_plan(s, qry, filters, params, db.dialect)
            plan = "name" if sorted_by == qry.sort else "name:created"
        elif driver is not None and cost <= DRIVE_MAX:
            # Few candidates: count, sort and page them in SQL through the driver's index
            # (thousands of rows never come back to Python).
            where = " AND ".join(f.plain if f.name == driver else f.blind for f in filters)
            base = f"FROM directory_entries e WHERE {where}"
            order = _order(qry.sort, db.dialect, blind=True)
            # One pass: the page and, beside each row, the count of all (a window).
            page = f"LIMIT {int(qry.limit)} OFFSET {int(qry.offset)}"
            sql = f"SELECT e.id, count(*) OVER () {base} ORDER BY {order} {page}"
            found = (await s.execute(text(sql), params)).all()
            ids = [int(r[0]) for r in found]
            if found:
                total = int(found[0][1])
            else:  # past the last page
                total = await _count(s, f"SELECT count(*) {base}", params)
            capped, plan = False, f"driver:{driver}"
        else:
            # Dense matches: walk the sort order's index, testing each row without other indexes
            # (a code range may stay indexed when it is the sort order itself).
            def cond(f: _Filter) -> str:
                return f.plain if f.name == "code" and key == "code" else f.blind

            where = " AND ".join(cond(f) for f in filters) or "1 = 1"
            order = _order(qry.sort, db.dialect, blind=False)
            page = f"LIMIT {int(qry.limit)} OFFSET {int(qry.offset)}"
            ids_sql = f"SELECT e.id FROM directory_entries e WHERE {where} ORDER BY {order} {page}"
            ids = [int(r) for r in (await s.execute(text(ids_sql), params)).scalars().all()]
            if len(filters) == 1 and driver is not None and counts[driver] > CAP:
                total = counts[driver]
            elif not filters:
                total = int((await s.execute(text(_capped_count("1 = 1")))).scalar_one())
            else:
                # Ranges keep their indexes here: the count may start from the narrowest.
                ranged = " AND ".join(
                    f.plain if f.name in ("code", "subtree") else f.blind for f in filters
                )
                total = int((await s.execute(text(_capped_count(ranged)), params)).scalar_one())
            if len(ids) < qry.limit:  # the last page: the total is known exactly
                total = qry.offset + len(ids)
            capped = total > CAP
            total = min(total, CAP)
            plan = "ordered"
        rows = {}
        if ids:
            rows = {
                r.id: r
                for r in (
                    await s.execute(select(*summary_columns()).where(Entry.id.in_(ids)))
                ).all()
            }
    items = [as_summary(rows[i]) for i in ids if i in rows]
    log.debug("directory search plan=%s counts=%s total=%s", plan, counts, total)
    return SearchResult(items, total, capped, plan, sorted_by)
