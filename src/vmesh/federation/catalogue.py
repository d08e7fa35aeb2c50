"""The catalogue: every node's directory flowing up, durably, to the province.

Owns the catalogue's wire format, the publishing of this node's directory changes into its own
JetStream stream, and the applying of its stream (own changes and everything its children's
streams brought) into ``catalogue_entries``.

Streams and subjects. Each node has one stream ``CAT_<node>`` capturing ``vmesh.cat.<node>.>``
only (disjoint from every other node's subjects: two domains capturing the same subjects lose
messages during a cut) and **sourcing** the streams of its direct children across the leaf links
(``external.api = $JS.<child>.API``). Sourced messages keep their subject, so a city's stream
holds its counties' changes too and the province's ends with the whole network's.

Wire formats. Format 2 (what the publisher sends) packs up to ``PACK`` changes of one origin in a
message: subject ``vmesh.cat.<origin>.batch``, body ``{"format": 2, "origin", "changes": [{code,
version, changed_at, entry}, …]}`` (at most ``MAX_MESSAGE_BYTES``), ``Nats-Msg-Id``
``batch:<digest of its (code, version) list>``. Format 1 is one change per message: subject
``vmesh.cat.<origin>.<code>``, ``Nats-Msg-Id`` ``<code>:<version>``; the org tree still sends it
and a node of an older release may, so ``decode_message`` reads both (JetStream drops a
re-publish of the same message within the duplicate window). One message per entry made a full
sync of 1,000,000 entries cost a million JetStream publishes, source copies and consumer
deliveries (docs/BENCHMARKS.md, "Catalogue at 1,000,000 endpoints").

Versions. The catalogue version of an entry is the directory's version, except that it never goes
back: a deletion publishes a tombstone at the next version, and an entry re-created with the same
code continues after it (``next_version``). Applying is idempotent by (code, version): a change is
written only when its version is above the one held (``plan_apply``, and the SQL upsert checks it
again), so a change delivered twice or out of order never regresses an entry.

Publishing (``CataloguePublisher``) scans ``directory_entries`` by ``(updated_at, id)`` from a
persisted watermark (this covers every writer, bulk imports included, with no hook in them) and
``catalogue_deletions`` (filled by a database trigger on delete); it publishes with acks and only
then records what it published, so a crash in between re-publishes (dropped as duplicate or
ignored by version). Applying (``CatalogueApplier``) reads the node's own stream with an ordered
consumer from the last applied stream sequence and writes what has arrived, up to ``batch``
changes, in ONE transaction: one chunked ``SELECT`` of the versions held, one bulk upsert
(``INSERT … ON CONFLICT(code) DO UPDATE … WHERE catalogue_entries.version < excluded.version``)
per row shape, the per-origin counters and the applied sequence. A crash mid-batch rolls it all
back and the consumer restarts after the last committed sequence: the batch is re-applied, with
the same effect (idempotent by code and version).

Public: ``CatalogueChange``, ``stream_name``, ``subject``, ``batch_subject``, ``encode``,
``decode``, ``encode_batch``, ``decode_message``, ``next_version``, ``plan_apply``,
``stream_config``, ``sourced_stream_config`` (the shape of every federation stream: also the org
tree's and the command logs'), ``entry_body``, ``CataloguePublisher``, ``CatalogueApplier``,
``search``, ``origin_stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from vmesh.directory.models import Entry
from vmesh.directory.transfer import _driver, _sqlite_inserts
from vmesh.errors import FieldError, InvalidInput
from vmesh.federation.models import (
    CatalogueDeletion,
    CatalogueEntry,
    CatalogueOrigin,
    CataloguePublished,
    FederationState,
)
from vmesh.identity.codes import parse_code
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

FORMAT = 1  # one change per message
BATCH_FORMAT = 2  # several changes of one origin per message
BATCH_TOKEN = "batch"  # the last subject token of a format-2 message
PACK = 1000  # changes per format-2 message at most
MAX_MESSAGE_BYTES = 512 * 1024  # a format-2 message's body at most (nats-server's limit: 1 MiB)
SUBJECT_ROOT = "vmesh.cat"
DUPLICATE_WINDOW_SECONDS = 600
ENTRY_FIELDS = ("parent_code", "kind", "tier", "name", "status", "lat", "lon", "tags", "attrs")


def stream_name(node_code: str) -> str:
    return f"CAT_{parse_code(node_code, 'node').text}"


def subject(origin: str, code: str) -> str:
    return f"{SUBJECT_ROOT}.{origin}.{code}"


def batch_subject(origin: str, root: str = SUBJECT_ROOT) -> str:
    return f"{root}.{origin}.{BATCH_TOKEN}"


@dataclass(frozen=True)
class CatalogueChange:
    """An entry at at ``version`` as published by its origin node (``entry`` None: deleted)."""

    origin: str
    code: str
    version: int
    changed_at: datetime
    entry: Mapping[str, Any] | None = None
    seq: int = 0  # stream sequence where it was read (0: not read from a stream)

    @property
    def deleted(self) -> bool:
        return self.entry is None

    @property
    def msg_id(self) -> str:
        return f"{self.code}:{self.version}"


def _change_body(c: CatalogueChange) -> dict[str, Any]:
    return {
        "code": c.code,
        "version": c.version,
        "changed_at": c.changed_at.isoformat(),
        "entry": None if c.entry is None else {k: c.entry.get(k) for k in ENTRY_FIELDS},
    }


def _dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def encode(c: CatalogueChange) -> bytes:
    """Format 1: one change (subject ``subject(origin, code)``)."""
    return _dumps({"format": FORMAT, "origin": c.origin} | _change_body(c))


def encode_batch(
    origin: str,
    changes: Sequence[CatalogueChange],
    *,
    pack: int = PACK,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> list[tuple[bytes, str]]:
    """Format 2: ``changes`` (all of ``origin``) packed in order into messages of at most
    ``pack`` changes and ``max_bytes`` bytes; (body, ``Nats-Msg-Id``) each. A change bigger than
    ``max_bytes`` on its own travels alone (nats-server refuses it if above its own limit)."""
    head = len(_dumps({"format": BATCH_FORMAT, "origin": origin, "changes": []}))
    out: list[tuple[bytes, str]] = []
    parts: list[bytes] = []
    ids: list[str] = []
    size = head

    def flush() -> None:
        if not parts:
            return
        body = (
            f'{{"format":{BATCH_FORMAT},"origin":"{origin}","changes":['.encode()
            + b",".join(parts)
            + b"]}"
        )
        digest = hashlib.sha256(",".join(ids).encode()).hexdigest()[:40]
        out.append((body, f"{BATCH_TOKEN}:{digest}"))
        parts.clear()
        ids.clear()

    for c in changes:
        if c.origin != origin:
            raise ValueError(f"change of {c.origin} in a batch of {origin}")
        part = _dumps(_change_body(c))
        if parts and (len(parts) >= pack or size + len(part) + 1 > max_bytes):
            flush()
            size = head
        parts.append(part)
        ids.append(c.msg_id)
        size += len(part) + 1
    flush()
    return out


def _check_subject(subj: str, root: str, origin: str, last: str) -> None:
    """Under ``SUBJECT_ROOT`` the subject is ``<root>.<origin>.<last>``; under another root
    (the downward org tree, ``orgtree.py``) ``<root>.<publisher>.<last>``, the publisher being
    any node that passes the entry on."""
    if root == SUBJECT_ROOT:
        ok = subj == f"{root}.{origin}.{last}"
    else:
        parts = subj.split(".")
        ok = subj.startswith(root + ".") and len(parts) == root.count(".") + 3
        ok = ok and parts[-1] == last
    if not ok:
        raise InvalidInput.one(
            "subject", f"does not match origin and code ({origin}, {last})", subj
        )


def _parse_change(body: Mapping[str, Any], origin: str, seq: int, at: str = "") -> CatalogueChange:
    """One change's fields (``at``: the prefix naming it in errors, e.g. ``changes[3].``)."""
    code = parse_code(body.get("code"), f"{at}code").text
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidInput.one(f"{at}version", "must be a whole number ≥ 1", str(version))
    try:
        changed_at = datetime.fromisoformat(str(body.get("changed_at")))
    except ValueError:
        raise InvalidInput.one(
            f"{at}changed_at", "must be an ISO 8601 time", str(body.get("changed_at"))
        ) from None
    if changed_at.tzinfo is None:
        changed_at = changed_at.replace(tzinfo=UTC)
    entry = body.get("entry")
    if entry is not None:
        if not isinstance(entry, dict):
            raise InvalidInput.one(f"{at}entry", "must be an object or null")
        for name in ("kind", "name", "status"):
            if not isinstance(entry.get(name), str) or not entry[name]:
                raise InvalidInput.one(
                    f"{at}entry.{name}", "is required text", str(entry.get(name))
                )
    return CatalogueChange(origin, code, version, changed_at, entry, seq)


def _load(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError as e:
        raise InvalidInput.one("body", f"not JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidInput.one("body", "must be a JSON object")
    return body


def decode(subj: str, data: bytes, seq: int = 0, *, root: str = SUBJECT_ROOT) -> CatalogueChange:
    """Parse a format-1 message; ``InvalidInput`` naming the field that is wrong."""
    body = _load(data)
    if body.get("format") != FORMAT:
        raise InvalidInput.one("format", f"must be {FORMAT}", str(body.get("format")))
    return _decode_one(subj, body, seq, root)


def _decode_one(subj: str, body: Mapping[str, Any], seq: int, root: str) -> CatalogueChange:
    origin = parse_code(body.get("origin"), "origin").text
    code = parse_code(body.get("code"), "code").text
    _check_subject(subj, root, origin, code)
    return _parse_change(body, origin, seq)


def decode_message(
    subj: str, data: bytes, seq: int = 0, *, root: str = SUBJECT_ROOT
) -> list[CatalogueChange]:
    """The changes of a message of either format, in order; ``InvalidInput`` naming the field
    that is wrong (``changes[i].…`` in a format-2 message: the whole message is refused)."""
    body = _load(data)
    fmt = body.get("format")
    if fmt == FORMAT:
        return [_decode_one(subj, body, seq, root)]
    if fmt != BATCH_FORMAT:
        raise InvalidInput.one("format", f"must be {FORMAT} or {BATCH_FORMAT}", str(fmt))
    origin = parse_code(body.get("origin"), "origin").text
    _check_subject(subj, root, origin, BATCH_TOKEN)
    items = body.get("changes")
    if not isinstance(items, list) or not items:
        raise InvalidInput.one("changes", "must be a non-empty list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput.one(f"changes[{i}]", "must be an object")
        out.append(_parse_change(item, origin, seq, f"changes[{i}]."))
    return out


def next_version(published: int | None, entry_version: int) -> int:
    """The catalogue version to publish for a local entry now at ``entry_version``."""
    if published is None:
        return entry_version
    return max(published + 1, entry_version)


def plan_apply(
    held: Mapping[str, int], changes: Iterable[CatalogueChange]
) -> tuple[dict[str, CatalogueChange], list[CatalogueChange], list[CatalogueChange]]:
    """Which ``changes`` (in stream order) to take given the versions ``held`` per code.

    A change is applied when its version is above everything known of its code so far (held, or
    taken earlier in ``changes``); otherwise it is ignored (a re-delivery or a late older one).
    Returns (the newest applied change per code: what to write, applied, ignored)."""
    floor = dict(held)
    writes: dict[str, CatalogueChange] = {}
    applied: list[CatalogueChange] = []
    ignored: list[CatalogueChange] = []
    for c in changes:
        if c.version <= floor.get(c.code, 0):
            ignored.append(c)
            continue
        floor[c.code] = c.version
        writes[c.code] = c
        applied.append(c)
    return writes, applied, ignored


def sourced_stream_config(
    stream_of: Callable[[str], str], root: str, node_code: str, sources: Sequence[str]
) -> Any:
    """The ``StreamConfig`` of a node's stream ``stream_of(node)`` holding ``<root>.<node>.>``
    (file storage, the federation's duplicate window), sourcing the streams ``stream_of(s)`` of
    the nodes ``sources`` through their JetStream domains (``$JS.<s>.API``).

    The one shape of the federation's streams: the catalogue and the command logs flow up (a
    node sources its children's), the org tree flows down (a node sources its parent's)."""
    from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

    return StreamConfig(
        name=stream_of(node_code),
        subjects=[f"{root}.{node_code}.>"],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        sources=[
            StreamSource(name=stream_of(c), external=ExternalStream(api=f"$JS.{c}.API"))
            for c in sorted(set(sources))
        ]
        or None,
    )


def stream_config(node_code: str, children: Sequence[str]) -> Any:
    """The ``StreamConfig`` of a node's catalogue stream sourcing ``children``'s streams."""
    return sourced_stream_config(stream_name, SUBJECT_ROOT, node_code, children)


def entry_body(r: Any) -> dict[str, Any]:
    """The wire body of a directory row (``parent_code``, ``kind`` … ``attrs`` as a dict; attrs
    that are not valid JSON travel as ``{}``)."""
    try:
        attrs = json.loads(r.attrs or "{}")
    except ValueError:
        attrs = {}
    return {
        "parent_code": r.parent_code,
        "kind": r.kind,
        "tier": r.tier,
        "name": r.name,
        "status": r.status,
        "lat": r.lat,
        "lon": r.lon,
        "tags": r.tags.split() if r.tags else [],
        "attrs": attrs,
    }


# --- small persistent state -----------------------------------------------------------------------


async def get_state(s: AsyncSession, key: str) -> str | None:
    return await s.scalar(select(FederationState.value).where(FederationState.key == key))


async def set_state(s: AsyncSession, dialect: str, key: str, value: str) -> None:
    ins = _insert(dialect, FederationState).values(key=key, value=value)
    await s.execute(ins.on_conflict_do_update(index_elements=["key"], set_={"value": value}))


def _insert(dialect: str, table: Any) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _utc(d: datetime | None) -> datetime | None:
    if d is None:
        return None
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


# --- publishing -----------------------------------------------------------------------------------

WATERMARK = "catalogue.watermark"


@dataclass
class PublishStats:
    published: int = 0
    last_published_at: datetime | None = None
    last_error: str = ""


class CataloguePublisher:
    """Publishes this node's directory changes into its stream; see the module docstring."""

    def __init__(self, db: Database, js: Any, node_code: str, *, batch: int = 2000) -> None:
        """``batch``: directory rows looked at per scan (published as ⌈batch / PACK⌉ messages)."""
        self.db = db
        self.js = js
        self.node = node_code
        self.batch = batch
        self.stats = PublishStats()

    async def _publish(self, changes: Sequence[CatalogueChange]) -> None:
        """Publish ``changes`` packed in format-2 messages, all in flight at once, their acks
        awaited together (an error in any: nothing is recorded, the next round re-publishes)."""

        async def one(body: bytes, msg_id: str) -> None:
            await self.js.publish(
                batch_subject(self.node),
                body,
                # No ``stream=``: its Nats-Expected-Stream header would travel with the message
                # and make every parent refuse it when sourcing ("expected stream does not match").
                headers={"Nats-Msg-Id": msg_id},
            )

        await asyncio.gather(*(one(b, i) for b, i in encode_batch(self.node, changes)))
        self.stats.published += len(changes)
        self.stats.last_published_at = datetime.now(UTC)

    async def run_once(self) -> int:
        """Publish what changed since the last run; the number of rows looked at."""
        n = 0
        while True:
            k = await self._deletions()
            k += await self._upserts()
            n += k
            if k == 0:
                return n

    async def _deletions(self) -> int:
        async with self.db.sessions() as s:
            rows = (
                await s.execute(
                    select(CatalogueDeletion.id, CatalogueDeletion.code)
                    .order_by(CatalogueDeletion.id)
                    .limit(self.batch)
                )
            ).all()
            if not rows:
                return 0
            codes = {r.code for r in rows}
            alive = set((await s.scalars(select(Entry.code).where(Entry.code.in_(codes)))).all())
            published = {
                p.code: p
                for p in (
                    await s.scalars(
                        select(CataloguePublished).where(CataloguePublished.code.in_(codes))
                    )
                ).all()
            }
        now = datetime.now(UTC)
        changes = []
        for code in sorted(codes - alive):
            p = published.get(code)
            if p is None or p.deleted:
                continue  # never published, or its tombstone is out already
            changes.append(CatalogueChange(self.node, code, p.version + 1, now, None))
        if changes:
            await self._publish(changes)
        async with self.db.transaction() as s:
            await self._record(s, [(c.code, 0, c.version) for c in changes], True)
            await s.execute(
                delete(CatalogueDeletion).where(CatalogueDeletion.id <= max(r.id for r in rows))
            )
        return len(rows)

    async def _record(
        self, s: AsyncSession, versions: Sequence[tuple[str, int, int]], deleted: bool
    ) -> None:
        """Record (code, entry version, catalogue version) as published: one statement for all."""
        if not versions:
            return
        ins = _insert(self.db.dialect, CataloguePublished)
        cols = ("entry_version", "version", "deleted")
        await s.execute(
            ins.on_conflict_do_update(
                index_elements=["code"], set_={k: getattr(ins.excluded, k) for k in cols}
            ),
            [
                {"code": c, "entry_version": ev, "version": v, "deleted": deleted}
                for c, ev, v in versions
            ],
        )

    async def _upserts(self) -> int:
        parent = aliased(Entry)
        async with self.db.sessions() as s:
            wm = await get_state(s, WATERMARK)
            q = (
                select(
                    Entry.id,
                    Entry.code,
                    Entry.kind,
                    Entry.tier,
                    Entry.name,
                    Entry.status,
                    Entry.lat,
                    Entry.lon,
                    Entry.tags,
                    Entry.attrs,
                    Entry.version,
                    Entry.updated_at,
                    parent.code.label("parent_code"),
                    CataloguePublished.entry_version.label("pub_entry_version"),
                    CataloguePublished.version.label("pub_version"),
                    CataloguePublished.deleted.label("pub_deleted"),
                )
                .outerjoin(parent, parent.id == Entry.parent_id)
                .outerjoin(CataloguePublished, CataloguePublished.code == Entry.code)
                .order_by(Entry.updated_at, Entry.id)
                .limit(self.batch)
            )
            if wm:
                at_text, _, id_text = wm.rpartition("|")
                at = datetime.fromisoformat(at_text)
                q = q.where(
                    or_(
                        Entry.updated_at > at,
                        and_(Entry.updated_at == at, Entry.id > int(id_text)),
                    )
                )
            rows = (await s.execute(q)).all()
        if not rows:
            return 0
        changes: list[CatalogueChange] = []
        versions: list[tuple[str, int, int]] = []
        for r in rows:
            if r.pub_entry_version == r.version and not r.pub_deleted:
                continue  # already out (a re-scan after a restart)
            v = next_version(r.pub_version, r.version)
            changed = _utc(r.updated_at) or datetime.now(UTC)
            changes.append(CatalogueChange(self.node, r.code, v, changed, entry_body(r)))
            versions.append((r.code, r.version, v))
        if changes:
            await self._publish(changes)
        last = rows[-1]
        async with self.db.transaction() as s:
            await self._record(s, versions, False)
            await set_state(
                s, self.db.dialect, WATERMARK, f"{last.updated_at.isoformat()}|{last.id}"
            )
        return len(rows)

    async def run(self, interval: float) -> None:
        """Publish every ``interval`` seconds until cancelled; errors are logged and retried."""
        while True:
            try:
                n = await self.run_once()
                if n:
                    log.info("catalogue node=%s published=%d", self.node, n)
                self.stats.last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the bus or the database; try again next round
                self.stats.last_error = f"{type(e).__name__}: {e}"
                log.warning(
                    "catalogue node=%s publish failed: %s", self.node, self.stats.last_error
                )
            await asyncio.sleep(interval)


# --- applying -------------------------------------------------------------------------------------

LAST_SEQ = "catalogue.applied_seq"


@dataclass
class ApplyStats:
    applied: int = 0
    ignored: int = 0
    malformed: int = 0
    last_seq: int = 0
    errors: list[str] = field(default_factory=list)


_ENTRY_COLUMNS = (
    "code", "origin_node", "parent_code", "kind", "tier", "name", "status", "lat", "lon", "tags",
    "attrs", "version", "deleted", "changed_at", "applied_at",
)  # fmt: skip


def _db_time(db: Database, at: datetime) -> Any:
    """``at`` as the driver takes it: SQLite stores SQLAlchemy's text form (UTC), PostgreSQL the
    aware time."""
    if db.is_sqlite:
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return at


async def _upsert_entries(
    s: AsyncSession, db: Database, rows: list[tuple[Any, ...]], *, keep: Sequence[str] = ()
) -> None:
    """Bulk upsert of ``rows`` (``_ENTRY_COLUMNS``, one per code) through the session's driver
    connection, in its transaction: a row whose code is held at a version ≥ its own is left as
    it is; ``keep``: columns an existing row keeps. SQLite gets multi-row ``VALUES`` statements
    (``directory.transfer``'s), PostgreSQL one prepared statement for all rows (asyncpg's
    ``executemany``). SQLAlchemy's per-row parameter handling (its ORM bulk path) cost about
    0.4 ms a row, more than SQLite itself."""
    cols = [c for c in _ENTRY_COLUMNS if c != "code" and c not in keep]
    suffix = (
        " ON CONFLICT (code) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in cols)
        + " WHERE catalogue_entries.version < excluded.version"
    )
    driver = await _driver(s)
    if db.is_sqlite:
        flat = [v for row in rows for v in row]  # one row's columns after another
        for sql, params, many in _sqlite_inserts("catalogue_entries", _ENTRY_COLUMNS, flat):
            if many:
                await driver.executemany(sql + suffix, params)
            else:
                await driver.execute(sql + suffix, params)
        return
    marks = ", ".join(f"${i}" for i in range(1, len(_ENTRY_COLUMNS) + 1))
    sql = f"INSERT INTO catalogue_entries ({', '.join(_ENTRY_COLUMNS)}) VALUES ({marks})"
    await driver.executemany(sql + suffix, rows)


async def _held_versions(s: AsyncSession, db: Database, codes: Sequence[str]) -> dict[str, int]:
    """The versions held of ``codes``: one ``IN (…)`` query per ``_IN_CHUNK`` codes, through
    the driver connection (SQLAlchemy's expansion of a 5,000-value ``IN`` cost more than the
    query)."""
    driver = await _driver(s)
    held: dict[str, int] = {}
    for k in range(0, len(codes), _IN_CHUNK):
        part = list(codes[k : k + _IN_CHUNK])
        if db.is_sqlite:
            sql = "SELECT code, version FROM catalogue_entries WHERE code IN ("
            async with driver.execute(sql + ",".join("?" * len(part)) + ")", part) as cur:
                held.update(await cur.fetchall())
        else:
            sql = "SELECT code, version FROM catalogue_entries WHERE code = ANY($1::text[])"
            held.update((r[0], r[1]) for r in await driver.fetch(sql, part))
    return held


# Codes per ``IN (…)`` of the held-versions query (SQLite's bound-parameter limit is 32,766).
_IN_CHUNK = 5000
# What a tombstone leaves as it was on an existing row.
_TOMBSTONE_KEEPS = ("parent_code", "kind", "tier", "name", "status", "lat", "lon", "tags")


async def apply_changes(
    db: Database,
    changes: Sequence[CatalogueChange],
    *,
    last_seq: int = 0,
    seq_key: str = LAST_SEQ,
) -> tuple[int, int]:
    """Write ``changes`` into the catalogue in one transaction (idempotent by code and version);
    record ``last_seq`` as applied. Returns (applied, ignored)."""
    now = datetime.now(UTC)
    async with db.transaction() as s:
        held = await _held_versions(s, db, sorted({c.code for c in changes}))
        writes, applied, ignored = plan_apply(held, changes)
        rows: dict[bool, list[tuple[Any, ...]]] = {False: [], True: []}
        stamp = _db_time(db, now)
        times: dict[datetime, Any] = {}  # a bulk sync's changes share a few times
        for c in writes.values():
            e = c.entry or {}
            changed = times.get(c.changed_at)
            if changed is None:
                changed = times[c.changed_at] = _db_time(db, c.changed_at)
            if c.deleted:
                # A tombstone keeps what was known of the entry (name, kind) for display: those
                # columns are written only when the row is new.
                rows[True].append(
                    (c.code, c.origin, None, "deleted", None, "", "unknown", None, None, "",
                     "{}", c.version, True, changed, stamp)
                )  # fmt: skip
                continue
            rows[False].append(
                (
                    c.code,
                    c.origin,
                    e.get("parent_code"),
                    e.get("kind") or "deleted",
                    e.get("tier"),
                    e.get("name") or "",
                    e.get("status") or "unknown",
                    e.get("lat"),
                    e.get("lon"),
                    " ".join(e.get("tags") or []),
                    json.dumps(e.get("attrs") or {}, ensure_ascii=False),
                    c.version,
                    False,
                    changed,
                    stamp,
                )
            )
        for deleted, params in rows.items():
            if params:
                await _upsert_entries(s, db, params, keep=_TOMBSTONE_KEEPS if deleted else ())
        per_origin: dict[str, list[int]] = {}
        for c in applied:
            per_origin.setdefault(c.origin, [0, 0])[0] += 1
        for c in ignored:
            per_origin.setdefault(c.origin, [0, 0])[1] += 1
        for origin, (a, i) in per_origin.items():
            ins = _insert(db.dialect, CatalogueOrigin).values(
                origin_node=origin, applied=a, ignored=i, last_applied_at=now
            )
            await s.execute(
                ins.on_conflict_do_update(
                    index_elements=["origin_node"],
                    set_={
                        "applied": CatalogueOrigin.applied + a,
                        "ignored": CatalogueOrigin.ignored + i,
                        "last_applied_at": now,
                    },
                )
            )
        if last_seq:
            await set_state(s, db.dialect, seq_key, str(last_seq))
    return len(applied), len(ignored)


class CatalogueApplier:
    """Applies the node's own stream to ``catalogue_entries``; see the module docstring."""

    def __init__(
        self,
        db: Database,
        js: Any,
        node_code: str,
        *,
        batch: int = 5000,
        stream: str = "",
        root: str = SUBJECT_ROOT,
        seq_key: str = LAST_SEQ,
        accept: Callable[[str, CatalogueChange], bool] | None = None,
    ) -> None:
        """``batch``: changes written per transaction at most (a message is never split, so
        one transaction may hold a message's more); ``stream``/``root``/``seq_key``: which
        stream and subjects to read and where the applied sequence is kept (default: this
        node's ``CAT_`` stream); ``accept(subject, change)`` False: the change is skipped (not
        counted)."""
        self.db = db
        self.js = js
        self.node = node_code
        self.batch = batch
        self.stream = stream or stream_name(node_code)
        self.root = root
        self.seq_key = seq_key
        self.accept = accept
        self.stats = ApplyStats()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._sub: Any = None

    async def start(self) -> None:
        from nats.js.api import ConsumerConfig, DeliverPolicy

        async with self.db.sessions() as s:
            self.stats.last_seq = int(await get_state(s, self.seq_key) or 0)
        if self.stats.last_seq:
            cfg = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.stats.last_seq + 1,
            )
        else:
            cfg = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)

        async def on_msg(msg: Any) -> None:
            await self._queue.put(msg)

        self._sub = await self.js.subscribe(
            f"{self.root}.>",
            stream=self.stream,
            ordered_consumer=True,
            config=cfg,
            cb=on_msg,
        )

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def run(self) -> None:
        """Apply messages as they arrive, what has arrived (up to ``batch`` changes) in one
        transaction, until cancelled. The next batch is decoded while the previous one is being
        written (the database works in its driver's thread); transactions stay in stream order,
        one at a time."""
        seen = self.stats.last_seq
        writing: asyncio.Task[None] | None = None
        try:
            while True:
                changes: list[CatalogueChange] = []
                last = seen
                msg = await self._queue.get()
                while True:
                    last = self._take(msg, seen, last, changes)
                    if len(changes) >= self.batch or self._queue.empty():
                        break
                    msg = self._queue.get_nowait()
                if last == seen:
                    continue
                seen = last
                if writing is not None:
                    await writing
                writing = asyncio.create_task(self._write(changes, last))
        finally:
            if writing is not None and not writing.done():
                writing.cancel()  # rolled back: the next start re-applies from the last commit
                with contextlib.suppress(asyncio.CancelledError):
                    await writing

    async def _write(self, changes: list[CatalogueChange], last: int) -> None:
        while True:
            try:
                a, i = await apply_changes(self.db, changes, last_seq=last, seq_key=self.seq_key)
                break
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is busy or away: keep the order, retry
                log.warning("catalogue node=%s apply failed, retrying: %s", self.node, e)
                await asyncio.sleep(1.0)
        self.stats.applied += a
        self.stats.ignored += i
        self.stats.last_seq = last

    def _take(self, m: Any, seen: int, last: int, into: list[CatalogueChange]) -> int:
        """Decode ``m`` into ``into`` (the accepted changes); the highest sequence taken."""
        seq = int(m.metadata.sequence.stream)
        if seq <= seen:
            return last  # the ordered consumer restarted and re-sent it
        try:
            changes = decode_message(m.subject, m.data, seq, root=self.root)
        except InvalidInput as e:
            self.stats.malformed += 1
            log.warning(
                "catalogue node=%s seq=%d malformed message on %s: %s",
                self.node,
                seq,
                m.subject,
                "; ".join(f"{fe.field}: {fe.reason}" for fe in e.errors),
            )
        else:
            into.extend(c for c in changes if self.accept is None or self.accept(m.subject, c))
        return max(last, seq)


# --- reading --------------------------------------------------------------------------------------


def as_item(e: CatalogueEntry) -> dict[str, Any]:
    t = e.code[10:13]
    from vmesh.identity.codes import TYPE_NAMES

    try:
        attrs = json.loads(e.attrs or "{}")
    except ValueError:
        attrs = {}
    return {
        "code": e.code,
        "origin_node": e.origin_node,
        "name": e.name,
        "kind": e.kind,
        "tier": e.tier,
        "type_code": t,
        "type_name": TYPE_NAMES.get(t, t),
        "status": e.status,
        "lat": e.lat,
        "lon": e.lon,
        "tags": e.tags.split() if e.tags else [],
        "attrs": attrs,
        "parent_code": e.parent_code,
        "version": e.version,
        "changed_at": _utc(e.changed_at),
    }


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search(
    db: Database,
    *,
    code_prefix_scope: str,
    q: str = "",
    code_prefix: str = "",
    origin: str = "",
    kind: str = "",
    kinds: Iterable[str] = (),
    tier: str = "",
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int]:
    """Entries of the catalogue (deleted ones left out) whose code starts with
    ``code_prefix_scope`` (the caller's division), filtered; ordered by code."""
    if code_prefix and not code_prefix.isdigit():
        raise InvalidInput(
            "invalid search", errors=[FieldError("code_prefix", "must be digits", code_prefix)]
        )
    if origin:
        origin = parse_code(origin, "origin").text
    conds: list[Any] = [CatalogueEntry.deleted.is_(False)]
    if code_prefix_scope:
        conds.append(CatalogueEntry.code.like(f"{code_prefix_scope}%"))
    if code_prefix:
        conds.append(CatalogueEntry.code.like(f"{code_prefix}%"))
    if q:
        conds.append(CatalogueEntry.name.like(f"%{_like(q)}%", escape="\\"))
    if origin:
        conds.append(CatalogueEntry.origin_node == origin)
    if kind:
        conds.append(CatalogueEntry.kind == kind)
    if kinds:
        conds.append(CatalogueEntry.kind.in_(list(kinds)))
    if tier:
        conds.append(CatalogueEntry.tier == tier)
    async with db.sessions() as s:
        total = int(
            await s.scalar(select(func.count()).select_from(CatalogueEntry).where(*conds)) or 0
        )
        rows = (
            await s.scalars(
                select(CatalogueEntry)
                .where(*conds)
                .order_by(CatalogueEntry.code)
                .offset(offset)
                .limit(limit)
            )
        ).all()
    return [as_item(r) for r in rows], total


async def origin_stats(db: Database) -> dict[str, dict[str, Any]]:
    async with db.sessions() as s:
        rows = (await s.scalars(select(CatalogueOrigin))).all()
        counts = dict(
            (
                await s.execute(
                    select(CatalogueEntry.origin_node, func.count())
                    .where(CatalogueEntry.deleted.is_(False))
                    .group_by(CatalogueEntry.origin_node)
                )
            ).all()
        )
    return {
        r.origin_node: {
            "applied": r.applied,
            "ignored": r.ignored,
            "last_applied_at": _utc(r.last_applied_at),
            "entries": int(counts.get(r.origin_node, 0)),
        }
        for r in rows
    }
