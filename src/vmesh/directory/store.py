"""The directory's database side: create, change, delete and read entries, and browse the tree.

Owns ``directory_entries``, ``entry_tags`` and the SQLite name index ``directory_name_fts`` (kept in
step here; PostgreSQL's expression index needs no care). Every method takes ``who``: a
``Principal`` is held to its scope (anything outside answers ``NotFound``, and the refusal is
audited with result ``denied``); an ``Actor`` (the CLI, the demo) is not. Changes are audited in the
same transaction as the change (``directory.create|update|delete``); viewing an entry's detail is
audited as ``directory.view``.

Writers serialise on one lock per database (an advisory lock on PostgreSQL, SQLite's write lock
taken up front), because ids, paths and generated codes are computed from what is there.

Calls: ``vmesh.identity.codes`` (code rules), ``vmesh.directory.validate`` (field rules),
``vmesh.audit.log``. Public: ``Directory``, ``in_subtree``, ``summary_columns``, ``tree_columns``,
``write_lock``, ``index_name``, ``as_summary``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Row, and_, delete, func, insert, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from vmesh.audit.log import Actor, AuditLog
from vmesh.auth.principal import Principal
from vmesh.directory import validate as v
from vmesh.directory.models import Entry, EntryTag
from vmesh.errors import Conflict, ErrorList, FieldError, InvalidInput, NotFound
from vmesh.identity.codes import (
    KIND_TYPES,
    TIER_DEPTH,
    TIER_ORDER,
    TYPE_NAMES,
    Code,
    Kind,
    Tier,
    check_child_code,
    child_center,
    compose,
    division_depth,
    parse_code,
)
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")
Who = Principal | Actor

_PG_DIRECTORY_LOCK = 0x766D657368_01  # "vmesh" + directory
UPDATABLE = ("name", "lat", "lon", "tags", "status", "attrs", "parent_code", "version")


class OutOfScope(Exception):
    """Internal: the entry exists but the caller may not see it (answered as NotFound)."""

    def __init__(self, code: str, action: str) -> None:
        super().__init__(code)
        self.code = code
        self.action = action


async def write_lock(session: AsyncSession, dialect: str) -> None:
    """Take the directory writers' lock for the rest of ``session``'s transaction."""
    if dialect == "sqlite":
        # A write statement first makes SQLite take its write lock now (waiting on busy_timeout)
        # rather than failing later when a read transaction tries to upgrade.
        await session.execute(text("UPDATE directory_entries SET version = version WHERE id = -1"))
    else:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_DIRECTORY_LOCK})


def in_subtree(path: str, dialect: str) -> ColumnElement[bool]:
    """Entries at or below ``path``: a range on the path index (byte order on PostgreSQL)."""
    lo, hi = v.path_range(path)
    col: Any = Entry.path.collate("C") if dialect == "postgresql" else Entry.path
    return and_(col >= lo, col < hi)


async def index_name(
    s: AsyncSession, dialect: str, entry_id: int, old: str | None, new: str | None
) -> None:
    """Keep SQLite's name index in step: remove ``old``'s tokens, add ``new``'s (either may be
    ``None``). PostgreSQL's index is an expression index and needs nothing."""
    if dialect != "sqlite":
        return
    if old is not None:
        await s.execute(
            text(
                "INSERT INTO directory_name_fts(directory_name_fts, rowid, tokens) "
                "VALUES('delete', :id, :t)"
            ),
            {"id": entry_id, "t": v.name_tokens(old)},
        )
    if new is not None:
        await s.execute(
            text("INSERT INTO directory_name_fts(rowid, tokens) VALUES (:id, :t)"),
            {"id": entry_id, "t": v.name_tokens(new)},
        )


def scope_of(who: Who) -> str | None:
    return who.scope_path if isinstance(who, Principal) else None


def in_scope(who: Who, path: str) -> bool:
    return not isinstance(who, Principal) or who.covers(path)


_parent = aliased(Entry)


def summary_columns() -> list[Any]:
    parent_code = (
        select(_parent.code)
        .where(_parent.id == Entry.parent_id)
        .scalar_subquery()
        .label("parent_code")
    )
    return [
        Entry.id,
        Entry.code,
        Entry.name,
        Entry.kind,
        Entry.tier,
        Entry.status,
        Entry.last_seen,
        Entry.lat,
        Entry.lon,
        Entry.tags,
        Entry.path,
        parent_code,
    ]


def tree_columns() -> list[Any]:
    g = aliased(Entry)
    child_count = (
        select(func.count()).select_from(g).where(g.parent_id == Entry.id).scalar_subquery()
    )
    online_count = (
        select(func.count())
        .select_from(g)
        .where(g.parent_id == Entry.id, g.status == "online")
        .scalar_subquery()
    )
    return [
        *summary_columns(),
        child_count.label("child_count"),
        online_count.label("online_count"),
    ]


def _utc(d: datetime | None) -> datetime | None:
    if d is None:
        return None
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def as_summary(r: Row[Any] | Mapping[str, Any]) -> dict[str, Any]:
    m = r._mapping if isinstance(r, Row) else r
    code = m["code"]
    t = code[10:13]
    return {
        "code": code,
        "name": m["name"],
        "kind": m["kind"],
        "tier": m["tier"],
        "type_code": t,
        "type_name": TYPE_NAMES.get(t, t),
        "status": m["status"],
        "last_seen": _utc(m["last_seen"]),
        "lat": m["lat"],
        "lon": m["lon"],
        "tags": m["tags"].split() if m["tags"] else [],
        "parent_code": m["parent_code"],
    }


def as_tree_node(r: Row[Any]) -> dict[str, Any]:
    d = as_summary(r)
    d["child_count"] = int(r.child_count)
    d["online_count"] = int(r.online_count)
    d["has_children"] = d["child_count"] > 0
    return d


class Directory:
    """The directory of one node's database."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    # -- refusals ---------------------------------------------------------------------------

    async def _guard(self, who: Who, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except OutOfScope as e:
            await self.audit.write(who, e.action, e.code, "denied", {"reason": "outside scope"})
            raise NotFound(f"no directory entry with code {e.code}") from None

    async def _entry(
        self, s: AsyncSession, who: Who, code: str, action: str, field: str = "code"
    ) -> Entry:
        entry = await s.scalar(select(Entry).where(Entry.code == code))
        if entry is None:
            raise NotFound(
                f"no directory entry with code {code}",
                errors=[FieldError(field, "no such entry", code)],
            )
        if not in_scope(who, entry.path):
            raise OutOfScope(code, action)
        return entry

    # -- reads ------------------------------------------------------------------------------

    async def get(self, who: Who, code: str, *, audit_view: bool = True) -> dict[str, Any]:
        """An entry's detail: summary + path from the caller's scope root, attrs and counts."""

        async def go() -> dict[str, Any]:
            async with self.db.sessions() as s:
                row = (
                    await s.execute(
                        select(*tree_columns(), Entry.attrs, Entry.version, Entry.updated_at).where(
                            Entry.code == code
                        )
                    )
                ).first()
                if row is None:
                    raise NotFound(
                        f"no directory entry with code {code}",
                        errors=[FieldError("code", "no such entry", code)],
                    )
                if not in_scope(who, row.path):
                    raise OutOfScope(code, "directory.view")
                ids = [int(x) for x in row.path.strip("/").split("/")]
                names = {
                    r.id: r
                    for r in (
                        await s.execute(
                            select(Entry.id, Entry.code, Entry.name, Entry.path).where(
                                Entry.id.in_(ids)
                            )
                        )
                    ).all()
                }
            d = as_tree_node(row)
            d["path"] = [
                {"code": names[i].code, "name": names[i].name}
                for i in ids
                if i in names and in_scope(who, names[i].path)
            ]
            d["attrs"] = json.loads(row.attrs or "{}")
            d["version"] = row.version
            d["updated_at"] = _utc(row.updated_at)
            if audit_view:
                await self.audit.write(who, "directory.view", code, "ok")
            return d

        return await self._guard(who, go)

    async def roots(self, who: Who) -> list[dict[str, Any]]:
        """The tree's top for ``who``: its scope root, or every root for an unscoped actor."""
        q = select(*tree_columns())
        if isinstance(who, Principal):
            q = q.where(Entry.code == who.scope_code)
        else:
            q = q.where(Entry.parent_id.is_(None)).order_by(Entry.code)
        async with self.db.sessions() as s:
            return [as_tree_node(r) for r in (await s.execute(q)).all()]

    async def children(
        self, who: Who, code: str, offset: int = 0, limit: int = 50
    ) -> tuple[list[dict[str, Any]], int]:
        """One level of the tree under ``code``: org units first, then by code; direct counts."""

        async def go() -> tuple[list[dict[str, Any]], int]:
            async with self.db.sessions() as s:
                parent = await self._entry(s, who, code, "directory.view")
                total = await s.scalar(
                    select(func.count()).select_from(Entry).where(Entry.parent_id == parent.id)
                )
                org_first = Entry.kind.not_in(
                    [k.value for k in (Kind.region, Kind.department, Kind.virtual_org)]
                )
                rows = (
                    await s.execute(
                        select(*tree_columns())
                        .where(Entry.parent_id == parent.id)
                        .order_by(org_first, Entry.code)
                        .offset(offset)
                        .limit(limit)
                    )
                ).all()
            return [as_tree_node(r) for r in rows], int(total or 0)

        return await self._guard(who, go)

    # -- writes -----------------------------------------------------------------------------

    async def create(self, who: Who, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create one entry; ``code`` is generated when omitted. Returns its detail."""

        async def go() -> str:
            errors = ErrorList()
            f = v.check_fields(data, errors)
            type_code = data.get("type_code")
            if (
                f is not None
                and type_code not in (None, "")
                and type_code not in KIND_TYPES[f.kind]
            ):
                errors.add(
                    FieldError(
                        "type_code",
                        f"a {f.kind.value} has type {' or '.join(KIND_TYPES[f.kind])}",
                        str(type_code),
                    )
                )
            errors.raise_if_any("the entry is not valid")
            assert f is not None
            async with self.audit.transaction() as s:
                await write_lock(s, self.db.dialect)
                parent = None
                if f.parent_code is not None:
                    parent = await self._entry(
                        s, who, f.parent_code, "directory.create", field="parent_code"
                    )
                elif isinstance(who, Principal):
                    raise InvalidInput.one(
                        "parent_code",
                        "is required (a new root can only be "
                        "created by an import from the node's command line)",
                    )
                code = await self._resolve_code(s, f, parent, type_code or None)
                new_id = int(await s.scalar(select(func.coalesce(func.max(Entry.id), 0))) or 0) + 1
                path = (parent.path if parent else "/") + f"{new_id}/"
                now = datetime.now(UTC)
                await s.execute(
                    insert(Entry).values(
                        id=new_id,
                        code=code,
                        parent_id=parent.id if parent else None,
                        path=path,
                        kind=f.kind.value,
                        tier=f.tier.value if f.tier else None,
                        name=f.name,
                        lat=f.lat,
                        lon=f.lon,
                        tags=" ".join(f.tags),
                        status=f.status,
                        last_seen=now if f.status == "online" else None,
                        attrs=f.attrs,
                        version=1,
                        updated_at=now,
                    )
                )
                if f.tags:
                    await s.execute(
                        insert(EntryTag), [{"entry_id": new_id, "tag": t} for t in f.tags]
                    )
                await index_name(s, self.db.dialect, new_id, None, f.name)
                self.audit.record(
                    s,
                    who,
                    "directory.create",
                    code,
                    "ok",
                    {
                        "name": f.name,
                        "kind": f.kind.value,
                        "parent_code": parent.code if parent else None,
                    },
                )
            log.info(
                "directory entry created code=%s kind=%s by=%s", code, f.kind.value, who.username
            )
            return code

        code = await self._guard(who, go)
        return await self.get(who, code, audit_view=False)

    async def _resolve_code(
        self, s: AsyncSession, f: v.EntryFields, parent: Entry | None, type_code: str | None
    ) -> str:
        why = v.check_parent_kind(f.kind, Kind(parent.kind) if parent else None)
        if why:
            raise InvalidInput.one("parent_code", why, parent.code if parent else None)
        parent_code = parse_code(parent.code) if parent else None
        parent_tier = Tier(parent.tier) if parent is not None and parent.tier else None
        if f.code is not None:
            code = parse_code(f.code)
            if type_code and code.type != type_code:
                raise InvalidInput.one(
                    "type_code", f"does not match the code's type {code.type}", type_code
                )
            check_child_code(
                code, f.kind, parent_code, f.tier, parent_tier if f.kind is Kind.region else None
            )
            if await s.scalar(select(Entry.id).where(Entry.code == code.text)) is not None:
                raise Conflict(
                    f"code {code.text} is already used",
                    errors=[FieldError("code", "already used by another entry", code.text)],
                )
            return code.text
        if parent_code is None:
            raise InvalidInput.one("code", "is required for a root entry")
        return await self.generate_code(
            s, f.kind, f.tier, parent, parent_code, parent_tier, type_code or KIND_TYPES[f.kind][0]
        )

    async def generate_code(
        self,
        s: AsyncSession,
        kind: Kind,
        tier: Tier | None,
        parent: Entry,
        parent_code: Code,
        parent_tier: Tier | None,
        type_code: str,
    ) -> str:
        """The next free code: a new division group for a city/county/township, else next serial."""
        center = parent_code.center
        if kind is Kind.region:
            assert tier is not None
            if parent_tier is None or TIER_ORDER.index(tier) != TIER_ORDER.index(parent_tier) + 1:
                raise InvalidInput.one(
                    "tier",
                    f"a {tier.value} cannot be under a "
                    f"{parent_tier.value if parent_tier else 'non-region'}",
                    tier.value,
                )
            if tier is not Tier.village:
                depth = TIER_DEPTH[tier]
                used = {
                    int(c[2 * depth - 2 : 2 * depth])
                    for c in (
                        await s.scalars(
                            select(Entry.code).where(
                                Entry.parent_id == parent.id, Entry.kind == Kind.region.value
                            )
                        )
                    ).all()
                    if division_depth(c[:8]) == depth
                }
                group = next((g for g in range(1, 100) if g not in used), 100)
                center = child_center(center, tier, group)
        prefix = f"{center}00{type_code}6"
        top = await s.scalar(
            select(func.max(Entry.code)).where(
                Entry.code >= prefix + "000000", Entry.code <= prefix + "999999"
            )
        )
        serial = int(top[14:]) + 1 if top else 1
        if serial > 999_999:
            raise InvalidInput.one("code", f"no free serial left for type {type_code} in {center}")
        return compose(center, type_code, serial)

    async def update(self, who: Who, code: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Change fields of an entry. ``version``, when given, must match (else 409)."""
        unknown = sorted(set(data) - set(UPDATABLE))
        if unknown:
            raise InvalidInput(
                f"cannot change {', '.join(unknown)}",
                errors=[
                    FieldError(k, f"cannot be changed (changeable: {', '.join(UPDATABLE)})")
                    for k in unknown
                ],
            )

        async def go() -> None:
            async with self.audit.transaction() as s:
                await write_lock(s, self.db.dialect)
                e = await self._entry(s, who, code, "directory.update")
                if "version" in data and data["version"] != e.version:
                    raise Conflict(
                        f"{code} was changed meanwhile (version {e.version}, "
                        f"you had {data['version']}); reload and retry",
                        errors=[FieldError("version", "is out of date", str(data["version"]))],
                    )
                current = {
                    "code": e.code,
                    "kind": e.kind,
                    "tier": e.tier,
                    "name": e.name,
                    "lat": e.lat,
                    "lon": e.lon,
                    "tags": e.tags,
                    "status": e.status,
                    "attrs": e.attrs,
                    "parent_code": None,
                }
                merged = {**current, **{k: val for k, val in data.items() if k != "version"}}
                errors = ErrorList()
                f = v.check_fields(merged, errors)
                errors.raise_if_any(f"the change to {code} is not valid")
                assert f is not None
                changes: dict[str, Any] = {}
                old = {
                    "name": e.name,
                    "lat": e.lat,
                    "lon": e.lon,
                    "tags": e.tags,
                    "status": e.status,
                    "attrs": e.attrs,
                }
                new = {
                    "name": f.name,
                    "lat": f.lat,
                    "lon": f.lon,
                    "tags": " ".join(f.tags),
                    "status": f.status,
                    "attrs": f.attrs,
                }
                changes = {k: new[k] for k in new if new[k] != old[k]}
                if f.parent_code is not None:
                    await self._move(s, who, e, f)
                    changes["parent_code"] = f.parent_code
                if not changes:
                    return
                now = datetime.now(UTC)
                values: dict[str, Any] = {
                    k: val for k, val in changes.items() if k != "parent_code"
                }
                if "status" in changes and f.status == "online":
                    values["last_seen"] = now
                await s.execute(
                    update(Entry)
                    .where(Entry.id == e.id)
                    .values(**values, version=Entry.version + 1, updated_at=now)
                )
                if "tags" in changes:
                    await s.execute(delete(EntryTag).where(EntryTag.entry_id == e.id))
                    if f.tags:
                        await s.execute(
                            insert(EntryTag), [{"entry_id": e.id, "tag": t} for t in f.tags]
                        )
                if "name" in changes:
                    await index_name(s, self.db.dialect, e.id, old["name"], f.name)
                self.audit.record(
                    s,
                    who,
                    "directory.update",
                    code,
                    "ok",
                    {k: {"from": old.get(k), "to": val} for k, val in changes.items()},
                )

        await self._guard(who, go)
        return await self.get(who, code, audit_view=False)

    async def _move(self, s: AsyncSession, who: Who, e: Entry, f: v.EntryFields) -> None:
        """Re-parent an endpoint (org units keep their place: their codes encode it)."""
        assert f.parent_code is not None
        if Kind(e.kind).is_org:
            raise InvalidInput.one(
                "parent_code",
                "org units cannot be moved (their code encodes "
                "their place); create a new one instead",
                f.parent_code,
            )
        parent = await self._entry(s, who, f.parent_code, "directory.update", field="parent_code")
        if parent.path.startswith(e.path):
            raise InvalidInput.one(
                "parent_code", "cannot move an entry under itself", f.parent_code
            )
        why = v.check_parent_kind(Kind(e.kind), Kind(parent.kind))
        if why:
            raise InvalidInput.one("parent_code", why, parent.code)
        check_child_code(
            parse_code(e.code), Kind(e.kind), parse_code(parent.code), field="parent_code"
        )
        old_path, new_path = e.path, f"{parent.path}{e.id}/"
        await s.execute(update(Entry).where(Entry.id == e.id).values(parent_id=parent.id))
        await s.execute(
            update(Entry)
            .where(in_subtree(old_path, self.db.dialect))
            .values(path=literal(new_path).op("||")(func.substr(Entry.path, len(old_path) + 1)))
            .execution_options(synchronize_session=False)
        )

    async def delete(self, who: Who, code: str) -> None:
        """Delete an entry that has no children (409 naming how many it has otherwise)."""

        async def go() -> None:
            async with self.audit.transaction() as s:
                await write_lock(s, self.db.dialect)
                e = await self._entry(s, who, code, "directory.delete")
                n = await s.scalar(
                    select(func.count()).select_from(Entry).where(Entry.parent_id == e.id)
                )
                if n:
                    raise Conflict(
                        f"{code} has {n} child entr{'y' if n == 1 else 'ies'}; "
                        "delete or move them first",
                        errors=[FieldError("code", f"has {n} children", code)],
                    )
                if isinstance(who, Principal) and e.path == who.scope_path:
                    raise InvalidInput.one(
                        "code", "is your own scope root and cannot be deleted", code
                    )
                await s.execute(delete(EntryTag).where(EntryTag.entry_id == e.id))
                await index_name(s, self.db.dialect, e.id, e.name, None)
                await s.execute(delete(Entry).where(Entry.id == e.id))
                self.audit.record(
                    s, who, "directory.delete", code, "ok", {"name": e.name, "kind": e.kind}
                )

        await self._guard(who, go)

    async def set_status(self, who: Who, code: str, status: str) -> None:
        """Record an endpoint's status (online also stamps ``last_seen``)."""
        await self.update(who, code, {"status": status})

    async def resolve_under(self, who: Who, code: str, action: str) -> str:
        """The path of entry ``code`` for a subtree filter, held to ``who``'s scope."""

        async def go() -> str:
            async with self.db.sessions() as s:
                return (await self._entry(s, who, code, action, field="under")).path

        return await self._guard(who, go)

    async def count(self) -> int:
        async with self.db.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(Entry)) or 0)
