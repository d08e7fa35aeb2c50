"""Directory import and export: CSV and JSON files, applied all or nothing.

File format (docs/directory.md has the full description): columns ``code, parent_code, kind,
tier, name, lat, lon, tags, status, attrs``; one entry per row; a parent must be in the
directory already or on an earlier row. CSV is UTF-8 (a BOM is accepted), header first, tags
space-separated, attrs as JSON text. JSON is an array of objects with the same keys (tags a
list, attrs an object); export writes one object per line.

An import checks every row, collecting every error by row and field (``vmesh.errors.ErrorList``):
bad values, bad or duplicate codes, unknown parents, codes already in the directory (unless
``update``), division or kind not fitting the parent, rows outside the caller's scope. It is fed
a chunk of rows at a time (``_Import``; a CSV file is parsed chunk by chunk too), in one
transaction with its audit row under the directory writers' lock: while one chunk is written the
next is parsed and checked; after the first error nothing more is written, the rest is still
checked, and the errors raised at the end roll back what was written, so a file is applied all
or nothing. ``dry_run`` only checks. Python's cyclic garbage collector is off while a file is
checked (``_gc_paused``). From ``SEPARATE_CHECKS_ROWS`` lines, a big CSV import into an empty SQLite
directory is checked by ``vmesh.directory.checkproc`` in a process of its own, which sends back
``Checked`` chunks. Export orders rows by depth, then code, so parents come first
and the file does not depend on internal ids: export → import into an empty node → export gives
the same bytes.

Public: ``ImportReport``, ``parse_file``, ``import_file``, ``import_rows``, ``export_lines``,
``FORMATS``, ``Checked`` and ``SEPARATE_CHECKS_ROWS`` (``checkproc``, ``bench/directory.py``).
"""

from __future__ import annotations

import asyncio
import csv
import gc
import io
import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from vmesh.audit.log import AuditLog
from vmesh.auth.principal import Principal
from vmesh.directory import validate as v
from vmesh.directory.models import Entry, EntryTag
from vmesh.directory.store import Who, in_subtree, index_name, write_lock
from vmesh.directory.validate import KINDS, TIERS
from vmesh.errors import ErrorList, FieldError, InvalidInput
from vmesh.identity.codes import (
    KIND_TYPES,
    TIER_DEPTH,
    TIER_ORDER,
    TYPE_NAMES,
    Kind,
    Tier,
    check_child_code,
    division_depth,
    parse_code,
)
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

FORMATS = ("csv", "json")
CHUNK = 10_000
IN_FLIGHT = 2  # chunks handed to the database driver and not yet written
BULK_REBUILD_ROWS = 50_000  # from this many new rows, rebuild indexes instead of updating them
# From this many lines, a CSV import into an empty SQLite directory is checked in a process of
# its own (``vmesh.directory.checkproc``); None: never. On a quiet 2-core machine 1,000,000 rows
# took 23.6 s this way against 30.2 s in one process (42,400 against 33,100 rows/s, 2026-11-30);
# under load it was not faster and took a fifth more CPU (starting the process, pickling).
SEPARATE_CHECKS_ROWS: int | None = 100_000
VACUUM_FLUSH_WAIT_S = 5.0  # PostgreSQL: the longest wait for the WAL flush before the VACUUM
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class ImportReport:
    rows: int
    created: int
    updated: int
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "dry_run": self.dry_run,
        }


# -- parsing ---------------------------------------------------------------------------------


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInput.one(
            "file", f"is not UTF-8 text (bad byte at offset {e.start})"
        ) from None


# A row as read: its fields by column, or (a CSV file with the export's header) its cells.
Raw = dict[str, Any] | list[str]
Chunks = Iterator[list[tuple[int, Raw]]]

_BLOCK = 1 << 20  # characters of plain CSV lines split at a time


def _csv_records(text_: str) -> Iterator[list[str]]:
    """The records of CSV text, as ``csv.reader`` gives them (``[]`` for a blank line).

    Up to the first line holding a quote, lines are split on commas here: there a line is a
    record and a comma a separator, and ``str.split`` costs a fraction of ``csv.reader`` (an
    ordinary directory file has no quotes at all; an export quotes only ``attrs`` objects and
    names with commas). From that line on, ``csv.reader`` reads the rest. Text with carriage
    returns or NULs goes to ``csv.reader`` whole. Raises ``InvalidInput`` on text that is not CSV.
    """
    q = text_.find('"')
    if "\r" in text_ or "\x00" in text_:
        cut = 0
    elif q < 0:
        cut = len(text_)
    else:
        cut = text_.rfind("\n", 0, q) + 1
    pos = lines_before = 0
    while pos < cut:
        end = min(cut, text_.find("\n", pos + _BLOCK) + 1 or cut)
        lines = text_[pos:end].split("\n")
        if text_[end - 1] == "\n":
            lines.pop()
        lines_before += len(lines)
        for line in lines:
            yield line.split(",") if line else []
        pos = end
    if cut < len(text_):
        reader = csv.reader(io.StringIO(text_[cut:], newline=""))
        try:
            yield from reader
        except csv.Error as e:
            lineno = lines_before + reader.line_num
            raise InvalidInput.one("file", f"is not valid CSV (line {lineno}: {e})") from None


def _csv_chunks(text_: str, errors: ErrorList, *, cells: bool = False) -> Chunks:
    """Rows of a CSV file as ``(row number, fields)``, ``CHUNK`` at a time; malformed rows (wrong
    number of cells) are left out and added to ``errors``. Raises at once on a bad header or
    text that is not CSV. With ``cells``, when the header is ``FIELDS`` in order (the export's),
    a row is its list of cells (no dictionary per row: ``_Import._fields`` reads both)."""
    records = _csv_records(text_)
    first = next(records, None)
    if first is None:
        raise InvalidInput.one("file", "is empty (expected a header row)")
    header = [h.strip() for h in first]
    _check_columns(header)
    width = len(header)
    as_cells = cells and tuple(header) == v.FIELDS
    chunk: list[tuple[int, Raw]] = []
    for n, record in enumerate(records, start=1):
        if len(record) == width:
            chunk.append((n, record if as_cells else dict(zip(header, record, strict=True))))
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        elif record:
            errors.add(
                FieldError("columns", f"has {len(record)} cells, the header has {width}", None, n)
            )
    if chunk:
        yield chunk


def _parse_csv(text_: str) -> list[tuple[int, dict[str, Any]]]:
    errors = ErrorList()
    rows = [(n, r) for chunk in _csv_chunks(text_, errors) for n, r in chunk if isinstance(r, dict)]
    errors.raise_if_any("the file has malformed rows")
    return rows


def _check_columns(header: list[str]) -> None:
    errors = ErrorList()
    allowed = ", ".join(v.FIELDS)
    seen: set[str] = set()
    for h in header:
        if h not in v.FIELDS:
            errors.add(FieldError(h or "(empty)", f"unknown column (allowed: {allowed})"))
        elif h in seen:
            errors.add(FieldError(h, "column appears twice"))
        seen.add(h)
    for req in v.REQUIRED_FIELDS:
        if req not in seen:
            errors.add(FieldError(req, "required column is missing"))
    errors.raise_if_any("the file's columns are wrong")


def _parse_json(text_: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        doc = json.loads(text_)
    except json.JSONDecodeError as e:
        raise InvalidInput.one("file", f"is not valid JSON (line {e.lineno}: {e.msg})") from None
    if isinstance(doc, dict) and isinstance(doc.get("entries"), list):
        doc = doc["entries"]
    if not isinstance(doc, list):
        raise InvalidInput.one("file", 'must be a JSON array of entries (or {"entries": [...]})')
    errors = ErrorList()
    rows: list[tuple[int, dict[str, Any]]] = []
    for n, obj in enumerate(doc, start=1):
        if not isinstance(obj, dict):
            errors.add(FieldError("entry", "must be a JSON object", json.dumps(obj)[:40], n))
            continue
        for k in obj:
            if k not in v.FIELDS:
                errors.add(
                    FieldError(k, f"unknown field (allowed: {', '.join(v.FIELDS)})", None, n)
                )
        for req in v.REQUIRED_FIELDS:
            if req not in obj:
                errors.add(FieldError(req, "is missing", None, n))
        rows.append((n, obj))
    errors.raise_if_any("the file has malformed entries")
    return rows


def parse_file(data: bytes | str, fmt: str) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a file as ``(row number, raw fields)``; raises on malformed files or columns."""
    if fmt not in FORMATS:
        raise InvalidInput.one("format", f"must be one of {', '.join(FORMATS)}", fmt)
    text_ = _decode(data)
    return _parse_csv(text_) if fmt == "csv" else _parse_json(text_)


# -- checking --------------------------------------------------------------------------------


# A row that passed its own checks (``_Import._fields``), to be placed: row number, fields, code,
# parent code.
# A tuple, not an object: a million rows.
_Candidate = tuple[int, v.EntryFields, str, str | None]


@dataclass(slots=True)
class _Row:
    """A row that updates an existing entry (``update``)."""

    n: int
    f: v.EntryFields
    code: str
    parent: str | None
    existing_id: int | None = None
    old_name: str | None = None


@dataclass(slots=True)
class _Known:
    """What the checks need to know about a parent: from the database or an earlier row."""

    kind: str
    tier: str | None
    id: int | None
    path: str | None
    parent_id: int | None = None
    name: str | None = None


@dataclass(slots=True)
class Checked:
    """One chunk checked in ``checkproc``: its row count, the statement parameters of its new
    entries, tags and name index as flat lists (``_Import.entries``; empty once the file has an
    error), and the next free id."""

    rows: int
    entries: list[Any]
    tags: list[Any]
    names: list[Any]
    next_id: int


async def _lookup(s: AsyncSession, codes: Iterable[str]) -> dict[str, _Known]:
    found: dict[str, _Known] = {}
    batch: list[str] = []

    async def flush() -> None:
        res = await s.execute(
            select(
                Entry.code,
                Entry.kind,
                Entry.tier,
                Entry.id,
                Entry.path,
                Entry.parent_id,
                Entry.name,
            ).where(Entry.code.in_(batch))
        )
        for r in res.all():
            found[r.code] = _Known(r.kind, r.tier, r.id, r.path, r.parent_id, r.name)
        batch.clear()

    for c in codes:
        batch.append(c)
        if len(batch) >= 500:
            await flush()
    if batch:
        await flush()
    return found


@lru_cache(maxsize=65536)
def _center_depth(center: str) -> int | None:
    """Depth of a valid 8-digit division centre, ``None`` if it has a gap or no province."""
    try:
        parse_code(center + "001326000001")
    except InvalidInput:
        return None
    return division_depth(center)


_KIND_VALUE: dict[Kind, str] = {k: k.value for k in Kind}
_TIER_VALUE: dict[Tier | None, str | None] = {None: None, **{t: t.value for t in Tier}}
_parent_kind_why = lru_cache(maxsize=None)(v.check_parent_kind)  # a few kinds, a million rows


def _code_fast(code: str) -> bool:
    return (
        len(code) == 20
        and code.isascii()
        and code.isdigit()
        and code[10:13] in TYPE_NAMES
        and _center_depth(code[:8]) is not None
    )


def _child_fast(code: str, f: v.EntryFields, parent: str | None, ptier: Tier | None) -> bool:
    """The common case of ``check_child_code`` with cached division lookups; False = ask it."""
    if code[10:13] not in KIND_TYPES[f.kind]:
        return False
    if f.kind is Kind.region:
        assert f.tier is not None
        if _center_depth(code[:8]) != TIER_DEPTH[f.tier]:
            return False
        if parent is not None:
            i = TIER_ORDER.index(f.tier)
            if i == 0 or ptier is not TIER_ORDER[i - 1]:
                return False
    if parent is None:
        return True
    depth = _center_depth(parent[:8]) or 0
    return code[:8].startswith(parent[: 2 * depth])


def _code_errors(code: str, field: str, n: int, errors: ErrorList) -> bool:
    """Add why ``code`` is not a valid code; True if it was bad."""
    try:
        parse_code(code, field)
    except InvalidInput as e:
        for fe in e.errors:
            errors.add(FieldError(fe.field, fe.reason, fe.value, n))
        return True
    return False


class _Import:
    """One import fed a chunk of rows at a time, in file order, inside the caller's transaction.

    Each chunk is checked (every error collected by row and field, as the whole file would be) and,
    while no row so far had an error, its new entries go to the driver, which writes them in the
    background (aiosqlite's thread, PostgreSQL's server) while the next chunk is parsed and checked.
    An error in a later chunk raises at the end, and the transaction's rollback takes back what was
    written: the file stays all or nothing. ``write=False`` (a dry run) only checks.
    """

    def __init__(
        self,
        s: AsyncSession,
        db: Database,
        who: Who,
        *,
        update_existing: bool,
        write: bool,
        progress: Progress | None,
        total: int,
    ) -> None:
        self.s, self.db, self.progress, self.total = s, db, progress, total
        scope = who.scope_path if isinstance(who, Principal) else None
        self._init_checks(scope, db.is_sqlite, write=write, update_existing=update_existing)
        self.empty = True
        # The columns every new entry has the same value in: SQL text on SQLite, values for COPY.
        self._fixed: dict[str, Any] = {}
        # Chunks handed to the driver and not yet written, oldest first (at most ``IN_FLIGHT``).
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.rebuild: list[str] | None = None  # None: not decided yet (see ``_decide``)
        self.existing = 0
        # The driver connection whose CHECK constraints a big SQLite import turned off.
        self.unchecked: Any = None

    @classmethod
    def checks_only(cls, scope: str | None, sqlite: bool) -> _Import:
        """The checks of an import into an empty directory, without a database (``checkproc``):
        ``_fields``, ``_place`` and ``judge_parents``."""
        imp = cls.__new__(cls)
        imp._init_checks(scope, sqlite, write=True, update_existing=False)
        return imp

    def _init_checks(
        self, scope: str | None, sqlite: bool, *, write: bool, update_existing: bool
    ) -> None:
        self.scope, self.sqlite, self.write = scope, sqlite, write
        self.update_existing = update_existing
        self.errors = ErrorList()
        self.first_row: dict[str, int] = {}  # code → the row it is first on
        self.good_parents: set[str] = set()  # parent codes whose form was checked
        self.known: dict[str, _Known] = {}  # what the checks know of codes: DB or earlier rows
        self.in_db: set[str] = set()
        self.parent_later: list[tuple[int, str]] = []  # (row, parent) not known on its row
        self.next_id = 1
        self.updates: list[_Row] = []
        self.now = datetime.now(UTC)
        self.rows = self.created = 0
        # New rows waiting for the driver. On SQLite each list is flat, the values of one row
        # after another (``_ENTRY_COLUMNS``; entry id and tag; rowid and tokens), as the
        # statements bind them: no tuple per row to build, pickle (``checkproc``) and take apart
        # again. PostgreSQL's COPY takes a tuple per row.
        self.width = len(_ENTRY_COLUMNS) if sqlite else 1
        self.entries: list[Any] = []
        self.tags: list[Any] = []
        self.names: list[Any] = []

    async def start(self) -> None:
        s = self.s
        self.empty = (await s.execute(select(Entry.id).limit(1))).first() is None
        if self.write:
            self.existing = int(await s.scalar(select(func.coalesce(func.max(Entry.id), 0))) or 0)
            self.next_id = self.existing + 1
            # SQLite keeps datetimes as text in SQLAlchemy's format; asyncpg takes the datetime.
            if self.db.is_sqlite:  # written into the statements' text, not bound per row
                stamp = self.now.strftime("%Y-%m-%d %H:%M:%S.%f")
                self._fixed = {"last_seen": "NULL", "version": "1", "updated_at": f"'{stamp}'"}
            else:
                self._fixed = {"last_seen": None, "version": 1, "updated_at": self.now}

    async def add(self, chunk: list[tuple[int, Raw]]) -> None:
        rows = self._fields(chunk)
        if not self.empty:
            # What the database holds of this chunk's codes and of parents not seen yet.
            wanted = {code for _, _, code, _ in rows} | {
                parent
                for _, _, _, parent in rows
                if parent and parent not in self.known and parent not in self.first_row
            }
            await self._drain()  # one statement at a time on the connection
            found = await _lookup(self.s, wanted)
            self.in_db.update(found)
            self.known.update(found)
        self._place(rows)
        await self._take(len(chunk))

    async def add_checked(self, checked: Checked) -> None:
        """A chunk checked by ``checkproc`` (an import into an empty directory): its new rows."""
        self.entries += checked.entries
        self.tags += checked.tags
        self.names += checked.names
        self.created += checked.next_id - self.next_id
        self.next_id = checked.next_id
        await self._take(checked.rows)

    async def _take(self, rows: int) -> None:
        """Count ``rows`` more rows; hand new entries to the driver once a chunk is waiting."""
        self.rows += rows
        if self.errors:  # nothing of this file will be kept: stop writing, keep checking
            self.entries, self.tags, self.names = [], [], []
        elif self.write:
            waiting = len(self.entries) // self.width
            if self.rebuild is None and waiting >= self._bulk_threshold():
                await self._decide()
            if self.rebuild is not None and waiting >= CHUNK:
                await self._flush()
        if self.progress:
            self.progress("import", min(self.rows, self.total), self.total)

    def _fields(self, chunk: list[tuple[int, Raw]]) -> list[_Candidate]:
        """Each row's own checks: fields, code forms, duplicates within the file."""
        errors, first_row, good_parents = self.errors, self.first_row, self.good_parents
        rows: list[_Candidate] = []
        for n, raw in chunk:
            if isinstance(raw, list):  # cells in ``FIELDS`` order
                f = v.fast_cells(raw)
                if f is None:
                    f = v.check_fields(dict(zip(v.FIELDS, raw, strict=True)), errors, n)
            else:
                f = v.fast_fields(raw)
                if f is None:
                    f = v.check_fields(raw, errors, n)
            if f is None:
                continue
            code, parent = f.code, f.parent_code
            if code is None:
                errors.add(FieldError("code", "is required in an import file", None, n))
                continue
            if not _code_fast(code) and _code_errors(code, "code", n, errors):
                continue
            if parent is not None and parent not in good_parents:
                if not _code_fast(parent) and _code_errors(parent, "parent_code", n, errors):
                    continue
                good_parents.add(parent)
            if code in first_row:
                errors.add(FieldError("code", f"duplicate: also on row {first_row[code]}", code, n))
                continue
            first_row[code] = n
            rows.append((n, f, code, parent))
        return rows

    def _place(self, rows: list[_Candidate]) -> None:
        """Checks against the directory and earlier rows; new entries get their id and path."""
        errors, known, in_db, scope = self.errors, self.known, self.in_db, self.scope
        sqlite = self.sqlite
        add_entry, add_tag = (
            (self.entries.extend, self.tags.extend)
            if sqlite
            else (self.entries.append, self.tags.append)
        )
        add_name = self.names.extend
        next_id, write, name_tokens = self.next_id, self.write, v.name_tokens
        failed = errors.errors  # collected errors (the list itself: it grows as rows fail)
        for n, f, code, parent_code in rows:
            existing = known.get(code) if code in in_db else None
            if existing is not None and not self.update_existing:
                errors.add(FieldError("code", "already exists in the directory", code, n))
                continue
            if (
                existing is not None
                and scope is not None
                and not (existing.path or "").startswith(scope)
            ):
                errors.add(FieldError("code", "already exists outside your scope", code, n))
                continue
            parent: _Known | None = None
            if parent_code is not None:
                parent = known.get(parent_code)
                if parent is None:
                    # Its reason depends on whether the parent is on a later row: at the end.
                    self.parent_later.append((n, parent_code))
                    continue
                if (
                    scope is not None
                    and parent.path is not None
                    and not parent.path.startswith(scope)
                ):
                    errors.add(FieldError("parent_code", "is outside your scope", parent_code, n))
                    continue
            elif scope is not None:
                errors.add(
                    FieldError(
                        "parent_code",
                        "is required (a new root can only be imported from the node's command "
                        "line)",
                        None,
                        n,
                    )
                )
                continue
            why = _parent_kind_why(f.kind, KINDS[parent.kind] if parent else None)
            if why:
                errors.add(FieldError("parent_code", why, parent_code, n))
                continue
            ptier = TIERS[parent.tier] if parent is not None and parent.tier else None
            if not _child_fast(code, f, parent_code, ptier):
                try:
                    check_child_code(
                        parse_code(code),
                        f.kind,
                        parse_code(parent_code) if parent_code else None,
                        f.tier,
                        ptier if f.kind is Kind.region else None,
                    )
                except InvalidInput as e:
                    for fe in e.errors:
                        errors.add(FieldError(fe.field, fe.reason, fe.value, n))
                    continue
            if existing is not None:
                if existing.kind != f.kind.value:
                    errors.add(
                        FieldError(
                            "kind",
                            f"the existing entry is a {existing.kind}; an import cannot change "
                            "an entry's kind",
                            f.kind.value,
                            n,
                        )
                    )
                    continue
                parent_id = parent.id if parent else None
                if existing.parent_id != parent_id:
                    errors.add(
                        FieldError(
                            "parent_code",
                            "differs from the existing entry's parent; an import cannot move "
                            "entries",
                            parent_code,
                            n,
                        )
                    )
                    continue
                self.updates.append(_Row(n, f, code, parent_code, existing.id, existing.name))
                continue
            # A new entry: later rows may hang under it.
            eid = next_id
            next_id += 1
            path = f"{parent.path if parent else '/'}{eid}/"
            tier = _TIER_VALUE[f.tier]
            kind = _KIND_VALUE[f.kind]
            known[code] = _Known(kind, tier, eid, path)
            if failed or not write:  # (a list's truth, not ``ErrorList.__bool__``: a million rows)
                continue
            add_entry(
                (
                    eid,
                    code,
                    parent.id if parent else None,
                    path,
                    kind,
                    tier,
                    f.name,
                    f.lat,
                    f.lon,
                    " ".join(f.tags),
                    f.status,
                    f.attrs,
                )
            )
            for t in f.tags:
                add_tag((eid, t))
            if sqlite:
                add_name((eid, name_tokens(f.name)))
        self.created += next_id - self.next_id
        self.next_id = next_id

    def _bulk_threshold(self) -> int:
        # As many new rows as ``BULK_REBUILD_ROWS`` and half the entries there are: cheaper to
        # drop the secondary indexes and build them again than to insert into them.
        return max(BULK_REBUILD_ROWS, self.existing // 2)

    async def _decide(self) -> None:
        """Drop the secondary indexes for a big import (the rows so far reached the threshold)
        or, at the end of a small one, keep them."""
        big = len(self.entries) // self.width >= self._bulk_threshold()
        self.rebuild = await _drop_secondary_indexes(self.s, self.db) if big else []
        if big and self.db.is_sqlite:
            await _fts_hashsize(self.s, FTS_BULK_HASH)
            # Every row was checked against the rules of the table's CHECK constraints (status,
            # lat, lon: ``validate``) before it got here; SQLite checking them again was a tenth
            # of the node's instructions for a big import (valgrind). This connection only,
            # until ``restore``.
            self.unchecked = await _driver(self.s)
            await _closed(self.unchecked.execute("PRAGMA ignore_check_constraints = ON"))

    async def restore(self) -> None:
        """Turn the connection's CHECK constraints back on (after the import, whatever its end:
        the connection goes back to the pool). SQLite expires the statements compiled without
        them, so none is run again unchecked."""
        if self.unchecked is None:
            return
        driver, self.unchecked = self.unchecked, None
        try:  # (shielded: a cancelled import still leaves the connection checking)
            await asyncio.shield(_closed(driver.execute("PRAGMA ignore_check_constraints = OFF")))
        except Exception:
            log.exception("directory import: CHECK constraints not back on; connection dropped")
            await (await self.s.connection()).invalidate()

    async def _drain(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` chunks are still being written."""
        while len(self.pending) > keep:
            await self.pending.popleft()

    async def _flush(self, last: bool = False) -> None:
        # Chunks go to the driver in order; this one is written while the caller parses and
        # checks the next. On SQLite one more may wait queued in aiosqlite's thread behind it,
        # so that thread does not idle while this one checks, and no more, so memory stays a few
        # chunks; asyncpg runs one operation at a time on a connection.
        await self._drain(IN_FLIGHT - 1 if self.db.is_sqlite else 0)
        e, t, n = self.entries, self.tags, self.names
        self.entries, self.tags, self.names = [], [], []
        if self.db.is_sqlite and not last:
            # A chunk's tags are rarely a whole number of statements, and a statement of another
            # size is compiled anew (~9 ms for 8,000 tags): the tags beyond the last whole
            # statement wait for the next chunk (their entries are written by then).
            cut = len(t) - len(t) % _full_params(_TAG_COLUMNS)
            t, self.tags = t[:cut], t[cut:]
        if self.db.is_sqlite:
            # Every statement of the chunk is queued in aiosqlite's thread now, in order (tasks
            # start in the order they are made): queued one after another, the tags and the
            # name index would each wait for this thread to come back from its checks.
            driver = await _driver(self.s)
            written: asyncio.Future[Any] = asyncio.gather(
                *(
                    _closed(driver.executemany(sql, p) if many else driver.execute(sql, p))
                    for table, cols, recs in (
                        ("directory_entries", _ENTRY_COLUMNS, e),
                        ("entry_tags", _TAG_COLUMNS, t),
                        ("directory_name_fts", ("rowid", "tokens"), n),
                    )
                    for sql, p, many in _sqlite_inserts(
                        table, cols, recs, self._fixed if recs is e else None
                    )
                )
            )
        else:
            written = asyncio.ensure_future(self._copy_chunk(e, t))
        self.pending.append(written)
        await asyncio.sleep(0)  # let the chunk reach the driver before going on

    async def _copy_chunk(self, e: list[Any], t: list[Any]) -> None:
        driver = await _driver(self.s)
        fixed = tuple(self._fixed.values())
        await driver.copy_records_to_table(
            "directory_entries",
            records=[r + fixed for r in e],
            columns=[*_ENTRY_COLUMNS, *self._fixed],
        )
        await driver.copy_records_to_table("entry_tags", records=t, columns=["entry_id", "tag"])

    def judge_parents(self) -> None:
        """Add the errors of parents not known on their rows (defined later, or nowhere) and sort
        every error by row."""
        for n, parent in self.parent_later:
            later = self.first_row.get(parent)
            reason = (
                f"is defined later in the file (row {later}); parents must come first"
                if later is not None
                else "unknown parent: not in the directory or on an earlier row"
            )
            self.errors.add(FieldError("parent_code", reason, parent, n))
        self.parent_later = []
        self.errors.errors.sort(key=lambda fe: fe.row or 0)

    async def finish(self, parse_errors: ErrorList | None = None) -> tuple[int, int]:
        """Raise every error of the file, or write what is left and rebuild indexes: returns
        (created, updated)."""
        if parse_errors:
            await self._drain()  # (asyncpg: no rollback while a COPY is still running)
            parse_errors.raise_if_any("the file has malformed rows")
        self.judge_parents()
        if self.errors:
            await self._drain()  # (its work is rolled back with the transaction)
        self.errors.raise_if_any("the file was not imported")
        if not self.write:
            return self.created, len(self.updates)
        if self.rebuild is None:
            await self._decide()
        await self._flush(last=True)
        await self._drain()
        for r in self.updates:
            await _update_one(self.s, self.db, r, self.now)
        assert self.rebuild is not None
        if self.rebuild:
            if self.progress:
                self.progress("index", self.total, self.total)
            for sql in self.rebuild:
                await self.s.execute(text(sql))
            if self.db.is_sqlite:
                await _fts_hashsize(self.s, FTS_HASH)
            if not self.db.is_sqlite:
                await self.s.execute(text("ANALYZE directory_entries"))
        return self.created, len(self.updates)


# -- writing ---------------------------------------------------------------------------------


def _chunks_of(rows: list[tuple[int, dict[str, Any]]]) -> Chunks:
    for i in range(0, len(rows), CHUNK):
        yield list[tuple[int, Raw]](rows[i : i + CHUNK])


async def import_rows(
    db: Database,
    audit: AuditLog,
    who: Who,
    raw_rows: list[tuple[int, dict[str, Any]]],
    *,
    dry_run: bool = False,
    update_existing: bool = False,
    fmt: str = "",
    source: str = "",
    progress: Progress | None = None,
) -> ImportReport:
    """Check every row of a parsed file, then (unless ``dry_run``) write them all in one
    transaction."""
    return await _run(
        db,
        audit,
        who,
        _chunks_of(raw_rows),
        len(raw_rows),
        None,
        dry_run=dry_run,
        update_existing=update_existing,
        fmt=fmt,
        source=source,
        progress=progress,
    )


async def import_file(
    db: Database,
    audit: AuditLog,
    who: Who,
    data: bytes | str,
    fmt: str,
    *,
    dry_run: bool = False,
    update_existing: bool = False,
    source: str = "",
    progress: Progress | None = None,
) -> ImportReport:
    """Parse, check and (unless ``dry_run``) write a file, all or nothing. A CSV file is parsed a
    chunk at a time while the previous chunk is being written; its malformed rows are reported
    (alone, as ``parse_file`` does) once the whole file has been read."""
    if fmt not in FORMATS:
        raise InvalidInput.one("format", f"must be one of {', '.join(FORMATS)}", fmt)
    text_ = _decode(data)
    parse_errors: ErrorList | None = None
    elsewhere: str | None = None
    if fmt == "csv":
        parse_errors = ErrorList()
        chunks = _csv_chunks(text_, parse_errors, cells=True)
        total = text_.count("\n")  # rows, for progress (quoted line breaks make it an estimate)
        separate = SEPARATE_CHECKS_ROWS is not None and total >= SEPARATE_CHECKS_ROWS
        if separate and db.is_sqlite and not dry_run and not update_existing:
            elsewhere = text_
    else:
        rows = _parse_json(text_)
        chunks, total = _chunks_of(rows), len(rows)
    return await _run(
        db,
        audit,
        who,
        chunks,
        total,
        parse_errors,
        elsewhere=elsewhere,
        dry_run=dry_run,
        update_existing=update_existing,
        fmt=fmt,
        source=source,
        progress=progress,
    )


async def _run(
    db: Database,
    audit: AuditLog,
    who: Who,
    chunks: Chunks,
    total: int,
    parse_errors: ErrorList | None,
    *,
    elsewhere: str | None = None,
    dry_run: bool,
    update_existing: bool,
    fmt: str,
    source: str,
    progress: Progress | None,
) -> ImportReport:
    async def feed(s: AsyncSession) -> tuple[int, int]:
        imp = _Import(
            s,
            db,
            who,
            update_existing=update_existing,
            write=not dry_run,
            progress=progress,
            total=total,
        )
        try:
            await imp.start()
            if elsewhere is not None and imp.empty:
                return await imp.finish(await _check_elsewhere(imp, elsewhere))
            for chunk in chunks:
                await imp.add(chunk)
            return await imp.finish(parse_errors)
        finally:
            await imp.restore()

    if dry_run:
        async with db.sessions() as s:
            with _gc_paused():
                created, updated = await feed(s)
        return ImportReport(created + updated, created, updated, True)
    async with audit.transaction() as s:
        await write_lock(s, db.dialect)
        with _gc_paused():
            created, updated = await feed(s)
        audit.record(
            s,
            who,
            "directory.import",
            "",
            "ok",
            {
                "rows": created + updated,
                "created": created,
                "updated": updated,
                "format": fmt,
                "source": source,
            },
        )
    if created >= BULK_REBUILD_ROWS and not db.is_sqlite:
        await _vacuum(db)
    log.info(
        "directory import rows=%d created=%d updated=%d by=%s",
        created + updated,
        created,
        updated,
        who.username,
    )
    return ImportReport(created + updated, created, updated, False)


async def _check_elsewhere(imp: _Import, text_: str) -> ErrorList:
    """Have ``checkproc`` parse and check a CSV file for an import into an empty directory, and
    write the chunks it sends back as they come; returns the file's malformed rows (``finish``
    reports them), with the checks' errors in ``imp.errors``."""
    from vmesh.directory.checkproc import read_frame  # (it imports this module)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vmesh.directory.checkproc",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def send() -> None:
        stdin.write(json.dumps({"scope": imp.scope}).encode() + b"\n")
        stdin.write(text_.encode())
        await stdin.drain()
        stdin.close()

    sending = asyncio.ensure_future(send())
    try:
        while True:
            try:
                msg = await read_frame(stdout)
            except asyncio.IncompleteReadError:
                await proc.wait()
                raise RuntimeError(
                    f"the import's checking process ended early (exit status {proc.returncode})"
                ) from None
            if isinstance(msg, Checked):
                await imp.add_checked(msg)
                continue
            await sending
            if msg[0] == "invalid":
                raise InvalidInput(msg[1], errors=msg[2])
            _, errors, parse_errors = msg
            imp.errors = errors
            return cast(ErrorList, parse_errors)
    finally:
        sending.cancel()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a file is checked.

    An import keeps what it has read until it ends (each new entry's ``_Known``, the chunk being
    written), so every collection walks a heap that only grows: about a third of the checking
    thread's CPU (200,000 rows: 6.6 s with the collector, 4.7 s without). Nothing of an import
    is cyclic garbage; reference counting still frees everything. Turned back on only if this
    import turned it off, so an import that overlaps another (waiting for the writers' lock)
    never leaves it off.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


async def _vacuum(db: Database) -> None:
    """After a big import on PostgreSQL: mark the new pages all-visible, so that searches within
    a subtree count and sort from the ``(path, name) INCLUDE (id)`` index alone (index-only scans)
    instead of fetching every row from the table; autovacuum would do it, but later. The tags
    too: else autovacuum takes them on while the node serves its first searches.

    Where the server runs with ``synchronous_commit = off``, the commits just made (the
    import's, the audit seal's) may not be on disk yet, and until they are VACUUM may neither set
    the rows' committed hint bits nor mark their pages all-visible: it left 0 of 22,667 pages
    all-visible at 1M rows, and every search within a county then read ~11,000 table pages
    (40 ms a statement instead of 5). So it first waits, up to ``VACUUM_FLUSH_WAIT_S``, until
    the server's WAL is flushed up to where it was when the import ended (the WAL writer does it
    within three ``wal_writer_delay``; a synchronous commit of our own would not: PostgreSQL
    commits a transaction that wrote nothing else asynchronously)."""
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        end = (await conn.execute(text("SELECT pg_current_wal_insert_lsn()"))).scalar_one()
        flushed = text("SELECT pg_current_wal_flush_lsn() >= CAST(:end AS pg_lsn)")
        deadline = time.monotonic() + VACUUM_FLUSH_WAIT_S
        while not (await conn.execute(flushed, {"end": end})).scalar_one():
            if time.monotonic() > deadline:
                log.warning("directory import: WAL not flushed after %ss; vacuuming anyway",
                            VACUUM_FLUSH_WAIT_S)  # fmt: skip
                break
            await asyncio.sleep(0.05)
        await conn.execute(text("VACUUM (ANALYZE) directory_entries, entry_tags"))


# A new entry's own values, in the order ``_Import._place`` gives them; ``last_seen``,
# ``version`` and ``updated_at`` are the same for all (``_Import._fixed``).
_ENTRY_COLUMNS = (
    "id",
    "code",
    "parent_id",
    "path",
    "kind",
    "tier",
    "name",
    "lat",
    "lon",
    "tags",
    "status",
    "attrs",
)


_TAG_COLUMNS = ("entry_id", "tag")

SQLITE_PARAMS = 32_766  # SQLite's bound-parameter limit per statement (3.32 and later)


def _full_params(columns: tuple[str, ...]) -> int:
    """Parameters of a full ``_sqlite_inserts`` statement: as many whole rows as SQLite binds."""
    return SQLITE_PARAMS // len(columns) * len(columns)


def _values_sql(
    table: str, columns: tuple[str, ...], rows: int, fixed: dict[str, str] | None = None
) -> str:
    """``INSERT … VALUES (?, …), …`` of ``rows`` rows; ``fixed`` columns get the same SQL
    literal in every row instead of a bound parameter."""
    fixed = fixed or {}
    one = "(" + ", ".join(["?"] * len(columns) + list(fixed.values())) + ")"
    names = ", ".join((*columns, *fixed))
    return f"INSERT INTO {table} ({names}) VALUES " + ", ".join([one] * rows)


async def _closed(cursor: Any) -> None:
    """Run an aiosqlite statement and close its cursor in aiosqlite's thread.

    A cursor dropped in this thread resets its (cached, shared) statement here, which would race
    with that thread running the same statement for a later chunk already queued behind it."""
    async with cursor:
        pass


async def _driver(s: AsyncSession) -> Any:
    """The session's own driver connection (aiosqlite or asyncpg), inside its transaction: bulk
    rows go to it directly, as SQLAlchemy's per-row parameter handling would cost more than the
    database."""
    conn = await s.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def _sqlite_inserts(
    table: str,
    columns: tuple[str, ...],
    values: list[Any],
    fixed: dict[str, str] | None = None,
) -> Iterator[tuple[str, list[Any], bool]]:
    """SQLite statements that insert the rows of ``values`` (flat: one row's ``columns`` after
    another): ``(sql, parameters, executemany)``; ``fixed``
    columns are SQL literals in the statement's text (the import's time stamp: binding fewer
    parameters is a fifth less of SQLite's time per entry).

    Statements of as many rows as SQLite binds at once (``INSERT … VALUES (…), (…), …``, about
    2,000 entries or 16,000 name-index rows), the full ones in one ``executemany``, then the
    rest. (PostgreSQL takes a chunk by ``COPY``.) A plain ``executemany`` of one row per statement
    hands the GIL back and forth for every row between aiosqlite's thread and this one, which
    checks the next chunk meanwhile: each row waited for the interpreter's switch interval (an
    import of 1M rows took minutes). One JSON document per chunk (``json_each``) avoided that but
    cost twice the CPU (encoding here, parsing again for every column in SQLite): 7.3 s against
    3.4 s per 300,000 entries, measured with the raw driver.
    """
    width = len(columns)
    size = _full_params(columns)
    per = size // width
    full = len(values) // size
    if full:
        batches = [values[i * size : (i + 1) * size] for i in range(full)]
        yield _values_sql(table, columns, per, fixed), batches, True
    if rest := values[full * size :]:
        yield _values_sql(table, columns, len(rest) // width, fixed), rest, False


FTS_HASH = 1 << 20  # FTS5's default ``hashsize``: pending name-index data flushed per MiB
FTS_BULK_HASH = 256 << 20


async def _fts_hashsize(s: AsyncSession, size: int) -> None:
    """Set how much pending name-index data FTS5 keeps in memory before writing a segment.

    A big import raises it, so the whole import's tokens are written as one segment at commit
    instead of a segment per MiB merged again and again (about a fifth of the index's cost,
    measured with the raw driver), and sets it back before committing: the setting is stored in
    the index's config table, in the same transaction."""
    await s.execute(
        text("INSERT INTO directory_name_fts(directory_name_fts, rank) VALUES ('hashsize', :n)"),
        {"n": size},
    )


_KEPT_IN_BULK = ("ix_directory_entries_updated", "ix_directory_entries_parent_status")


async def _drop_secondary_indexes(s: AsyncSession, db: Database) -> list[str]:
    """Drop ``directory_entries``' secondary indexes before a big insert; returns the SQL that
    recreates them, run in the same transaction so the import stays all or nothing.

    Inserting a million rows into indexes on name, path and (on PostgreSQL) the characters of
    names means millions of random index inserts; building each index afterwards is one sort.
    On PostgreSQL the foreign keys go too and come back the same way.
    SQLite readers are unaffected (in WAL mode they read the committed snapshot). PostgreSQL
    readers of the table wait for the import to commit: a big import is a loading event.

    On SQLite the indexes on ``updated_at`` and ``(parent_id, status)`` stay: an import's new
    rows all have the same ``updated_at`` and, parents coming first, rising parent ids, so
    their entries are appended at the end of those indexes. That costs more CPU than building
    them afterwards, but it is spent while the next chunk is checked, whereas rebuilding comes
    after the last chunk, with nothing beside it (300,000 rows: 0.5–0.8 s less after the last
    chunk).
    """
    dialect = db.dialect
    if dialect == "sqlite":
        kept = ", ".join(f"'{name}'" for name in _KEPT_IN_BULK)
        sql = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            f"AND tbl_name = 'directory_entries' AND sql IS NOT NULL AND name NOT IN ({kept})"
        )
    else:
        sql = (
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'directory_entries' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'directory_entries'::regclass)"
        )
        await s.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
    rows = (await s.execute(text(sql))).all()
    for name, _ in rows:
        await s.execute(text(f'DROP INDEX "{name}"'))
    rebuild = [definition for _, definition in rows]
    if dialect != "sqlite":
        # Foreign keys check every inserted row with a trigger; added back, they check all rows
        # in one join.
        fks = (
            await s.execute(
                text(
                    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                    "FROM pg_constraint WHERE contype = 'f' AND conrelid IN "
                    "('directory_entries'::regclass, 'entry_tags'::regclass)"
                )
            )
        ).all()
        for table, name, _ in fks:
            await s.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
        rebuild += [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {d}' for table, name, d in fks]
    return rebuild


async def _update_one(s: AsyncSession, db: Database, r: _Row, now: datetime) -> None:
    f = r.f
    assert r.existing_id is not None
    await s.execute(
        update(Entry)
        .where(Entry.id == r.existing_id)
        .values(
            name=f.name,
            lat=f.lat,
            lon=f.lon,
            tags=" ".join(f.tags),
            status=f.status,
            attrs=f.attrs,
            version=Entry.version + 1,
            updated_at=now,
        )
    )
    await s.execute(delete(EntryTag).where(EntryTag.entry_id == r.existing_id))
    if f.tags:
        await s.execute(insert(EntryTag), [{"entry_id": r.existing_id, "tag": t} for t in f.tags])
    if r.old_name != f.name:
        await index_name(s, db.dialect, r.existing_id, r.old_name, f.name)


# -- export ----------------------------------------------------------------------------------


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


async def export_lines(
    db: Database, fmt: str, subtree: str | None = None, batch: int = 5000
) -> AsyncIterator[str]:
    """The export file as text chunks: parents before children, then by code."""
    if fmt not in FORMATS:
        raise InvalidInput.one("format", f"must be one of {', '.join(FORMATS)}", fmt)
    p = Entry.__table__.alias("p")
    e = Entry.__table__
    depth = func.length(e.c.path) - func.length(func.replace(e.c.path, "/", ""))
    q = (
        select(
            e.c.code,
            p.c.code.label("parent_code"),
            e.c.kind,
            e.c.tier,
            e.c.name,
            e.c.lat,
            e.c.lon,
            e.c.tags,
            e.c.status,
            e.c.attrs,
        )
        .select_from(e.outerjoin(p, p.c.id == e.c.parent_id))
        .order_by(depth, e.c.code)
    )
    if subtree is not None:
        q = q.where(in_subtree(subtree, db.dialect))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if fmt == "csv":
        writer.writerow(v.FIELDS)
    else:
        buf.write("[")
    first = True
    async with db.sessions() as s:
        result = await s.stream(q.execution_options(yield_per=batch))
        async for part in result.partitions(batch):
            for r in part:
                if fmt == "csv":
                    writer.writerow(
                        [
                            r.code,
                            r.parent_code or "",
                            r.kind,
                            r.tier or "",
                            r.name,
                            _num(r.lat),
                            _num(r.lon),
                            r.tags,
                            r.status,
                            "" if r.attrs in ("", "{}") else r.attrs,
                        ]
                    )
                else:
                    obj = {
                        "code": r.code,
                        "parent_code": r.parent_code,
                        "kind": r.kind,
                        "tier": r.tier,
                        "name": r.name,
                        "lat": r.lat,
                        "lon": r.lon,
                        "tags": r.tags.split() if r.tags else [],
                        "status": r.status,
                        "attrs": json.loads(r.attrs or "{}"),
                    }
                    buf.write(("\n" if first else ",\n") + json.dumps(obj, ensure_ascii=False))
                    first = False
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    if fmt == "json":
        buf.write("\n]\n")
    yield buf.getvalue()
