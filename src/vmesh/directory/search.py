"""Directory search: name substring, code prefix, kind, type, status, tag, subtree; sorted, paged.

How it stays fast at a million rows. Each filter that has an index of its own (name, code prefix,
subtree, tag) is a possible *driver*. First a count of each driver alone, reading at most
``DRIVE_MAX + 1`` index entries (a few milliseconds); then:

- the cheapest driver (its rows × the cost of reading one) costs at most ``DRIVE_MAX`` table
  reads: read those rows and their sort key through its index, apply the other filters without
  their indexes, sort and page them here (one query, exact total). A subtree's rows are cheap:
  the ``(path, name)`` index holds the name, so no table read is needed for a name test;
- otherwise matches are dense (a common character such as 村, a wide code prefix): walk the
  index of the sort order and test each row against the filters; a page is usually found after
  a few thousand rows. The total is counted up to ``CAP`` and reported as ``total_capped``.
  Matches that are dense overall but bunched far along the sort order (names starting with a
  county's name) make this walk long: the known slow case, see docs/BENCHMARKS.md.

Name substrings use ``directory_name_fts`` on SQLite (one token per character; a phrase query finds
consecutive characters) and a GIN index over the characters of ``lower(name)`` on PostgreSQL (see
migration 0002); both are followed by an exact ``instr``/``strpos`` test.

Public: ``SearchQuery``, ``SearchResult``, ``search``, ``SORTS``, ``CAP``, ``DRIVE_MAX``.
"""

from __future__ import annotations

import json
import logging
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


@dataclass
class _Filter:
    name: str
    plain: str  # the condition, index-usable
    blind: str  # the same condition written so that no index is used for it
    params: dict[str, Any] = field(default_factory=dict)
    count_sql: str | None = None  # count of this filter alone, if it can drive
    weight: float = 1.0  # cost of reading one candidate row through this filter's index
    ids_probe: bool = False  # count_sql lists the matching ids (kept as :name_ids) instead


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
        exact = "strpos(lower(e.name), :ql) > 0" if pg else "instr(lower(e.name), :ql) > 0"
        if pg:
            chars = sorted(set(ql))
            cond = "regexp_split_to_array(lower(e.name), '') @> CAST(:qchars AS text[])"
            out.append(
                _Filter(
                    "name",
                    f"{exact} AND {cond}",
                    exact,
                    {"ql": ql, "qchars": chars},
                    # strpos first: when the planner scans the table for a common character,
                    # it then splits only the names that match, not every name it passes.
                    _capped_count(f"{exact} AND {cond}"),
                )
            )
        else:
            phrase = v.query_tokens(qry.q)
            if phrase is None:
                out.append(_Filter("name", exact, exact, {"ql": ql}))
            else:
                # The probe returns the matching ids themselves: driving then reads them from
                # ``:name_ids`` instead of running the match a second time.
                fts = "SELECT rowid FROM directory_name_fts WHERE directory_name_fts MATCH :fts"
                out.append(
                    _Filter(
                        "name",
                        f"e.id IN (SELECT value FROM json_each(:name_ids)) AND {exact}",
                        exact,
                        {"ql": ql, "fts": phrase},
                        f"{fts} {cap}",
                        ids_probe=True,
                    )
                )
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


async def search(db: Database, qry: SearchQuery, subtree: str | None) -> SearchResult:
    """Run ``qry`` within ``subtree`` (a path; ``None`` for the whole directory)."""
    qry.check()
    async with db.sessions() as s:
        if subtree is not None and await _whole_tree(s, subtree):
            subtree = None
        filters = _filters(qry, subtree, db.dialect)
        params: dict[str, Any] = {}
        for f in filters:
            params.update(f.params)
        counts: dict[str, int] = {}
        for f in filters:
            if f.count_sql and f.ids_probe:
                found_ids = (await s.execute(text(f.count_sql), f.params)).scalars().all()
                counts[f.name] = len(found_ids)
                params["name_ids"] = json.dumps(list(found_ids))
            elif f.count_sql:
                counts[f.name] = int((await s.execute(text(f.count_sql), f.params)).scalar_one())
        weights = {f.name: f.weight for f in filters}
        driver = min(counts, key=lambda n: counts[n] * weights[n]) if counts else None
        key = qry.sort.lstrip("-")
        if driver is not None and counts[driver] * weights[driver] <= DRIVE_MAX:
            # Few candidates: read them through the driver's index with their sort key, then
            # sort and page here (one query gives both the page and the exact total).
            where = " AND ".join(f.plain if f.name == driver else f.blind for f in filters)
            sql = f"SELECT e.id, {_SORT_COLS[key]} FROM directory_entries e WHERE {where}"
            found = [(k, int(i)) for i, k in (await s.execute(text(sql), params)).all()]
            found.sort(reverse=qry.sort.startswith("-"))
            total, capped, plan = len(found), False, f"driver:{driver}"
            ids = [i for _, i in found[qry.offset : qry.offset + qry.limit]]
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
    return SearchResult(items, total, capped, plan)
