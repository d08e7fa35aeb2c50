"""Directory import and export: all or nothing, errors by row and field, identical round trip."""

from __future__ import annotations

import csv
import gc
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from conftest import make_config
from directory_sample import SYSTEM, build_sample
from vmesh.audit.models import AuditRecord
from vmesh.directory import transfer
from vmesh.directory.models import Entry
from vmesh.directory.search import SearchQuery, search
from vmesh.directory.store import Directory
from vmesh.errors import InvalidInput
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

HEADER = "code,parent_code,kind,tier,name,lat,lon,tags,status,attrs\n"
GOOD = HEADER + (
    "33000000002166000001,,region,province,浙江省,,,,,\n"
    "33030000002166000001,33000000002166000001,region,city,温州市,,,,,\n"
    "33030200002166000001,33030000002166000001,region,county,鹿城区,28.0,120.6,,online,\n"
    '33030200001326000001,33030200002166000001,camera,,五马街口,28.01,120.65,hd 商圈,online,"{""rtsp"":""rtsp://10.0.0.1/1""}"\n'
)


async def export(ctx: NodeContext, fmt: str) -> str:
    return "".join([c async for c in transfer.export_lines(ctx.db, fmt)])


async def import_text(
    ctx: NodeContext, text: str, fmt: str = "csv", **kw: bool
) -> transfer.ImportReport:
    return await transfer.import_rows(
        ctx.db, ctx.audit, SYSTEM, transfer.parse_file(text, fmt), fmt=fmt, **kw
    )


def errors_of(e: pytest.ExceptionInfo[InvalidInput]) -> list[tuple[int | None, str, str]]:
    return [(x.row, x.field, x.reason) for x in e.value.errors]


async def test_a_good_file_is_imported_and_audited(ctx: NodeContext) -> None:
    report = await import_text(ctx, GOOD)
    assert report.as_dict() == {"rows": 4, "created": 4, "updated": 0, "dry_run": False}
    res = await search(ctx.db, SearchQuery(q="五马"), None)
    assert [(i["name"], i["tags"], i["status"]) for i in res.items] == [
        ("五马街口", ["hd", "商圈"], "online")
    ]
    d = Directory(ctx.db, ctx.audit)
    cam = await d.get(SYSTEM, "33030200001326000001", audit_view=False)
    assert cam["attrs"] == {"rtsp": "rtsp://10.0.0.1/1"}
    assert [p["name"] for p in cam["path"]] == ["浙江省", "温州市", "鹿城区", "五马街口"]
    async with ctx.db.sessions() as s:
        row = (
            await s.execute(select(AuditRecord).where(AuditRecord.action == "directory.import"))
        ).scalar_one()
    assert row.username == "test-setup" and '"created": 4' in row.detail


async def test_a_bad_file_is_rejected_whole_with_reasons_by_row(ctx: NodeContext) -> None:
    await import_text(ctx, GOOD)
    before = await export(ctx, "csv")
    bad = HEADER + (
        "33030200001326000002,33030200002166000001,camera,,好的一行,,,,,\n"  # 1 fine
        "3303020000132600000X,33030200002166000001,camera,,坏码,,,,,\n"  # 2 bad code
        "33030200001326000001,33030200002166000001,camera,,库里已有,,,,,\n"  # 3 in the DB
        "33030200001326000002,33030200002166000001,camera,,文件内重复,,,,,\n"  # 4 dup of row 1
        "33030200001326000003,33039900002166000001,camera,,无父,,,,,\n"  # 5 unknown parent
        "33030200001326000004,33030200002166000001,camera,,坐标,91,120,,,\n"  # 6 bad lat
        "33040000001326000005,33030200002166000001,camera,,区划,,,,,\n"  # 7 wrong division
        "33030200001326000006,33030200001326000007,camera,,父在后,,,,,\n"  # 8 parent later
        "33030200001326000007,33030200002166000001,camera,,相机,,,,,\n"  # 9 fine
        "33030200001326000008,33030200002166000001,carema,,类型,,,,,\n"  # 10 bad kind
    )
    with pytest.raises(InvalidInput) as e:
        await import_text(ctx, bad)
    got = errors_of(e)
    assert [(r, f) for r, f, _ in got] == [
        (2, "code"),
        (3, "code"),
        (4, "code"),
        (5, "parent_code"),
        (6, "lat"),
        (7, "code"),
        (8, "parent_code"),
        (10, "kind"),
    ]
    reasons = {r: why for r, _, why in got}
    assert reasons[3] == "already exists in the directory"
    assert reasons[4] == "duplicate: also on row 1"
    assert reasons[5].startswith("unknown parent")
    assert reasons[8] == "is defined later in the file (row 9); parents must come first"
    assert await export(ctx, "csv") == before
    assert not (await search(ctx.db, SearchQuery(q="好的一行"), None)).items


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        (
            "code,parent,kind,name\n",
            "csv",
            [
                (None, "parent", "unknown column"),
                (None, "parent_code", "required column is missing"),
            ],
        ),
        (HEADER + "1,2,3\n", "csv", [(1, "columns", "has 3 cells, the header has 10")]),
        (
            '[{"code": "33000000002166000001", "kind": "region", "name": "x", "colour": 1}]',
            "json",
            [(1, "colour", "unknown field"), (1, "parent_code", "is missing")],
        ),
        ("{not json", "json", [(None, "file", "is not valid JSON")]),
        ("", "csv", [(None, "file", "is empty")]),
    ],
)
async def test_malformed_files_name_the_column_or_row(
    ctx: NodeContext, text: str, fmt: str, expected: list[tuple[int | None, str, str]]
) -> None:
    with pytest.raises(InvalidInput) as e:
        await import_text(ctx, text, fmt)
    got = errors_of(e)
    assert [(r, f) for r, f, _ in got] == [(r, f) for r, f, _ in expected]
    assert all(why.startswith(w) for (_, _, why), (_, _, w) in zip(got, expected, strict=True))
    async with ctx.db.sessions() as s:
        assert (
            await s.scalar(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "directory.import")
            )
            == 0
        )


async def test_dry_run_checks_but_writes_nothing(ctx: NodeContext) -> None:
    report = await import_text(ctx, GOOD, dry_run=True)
    assert report.as_dict() == {"rows": 4, "created": 4, "updated": 0, "dry_run": True}
    assert await Directory(ctx.db, ctx.audit).count() == 0


async def test_update_mode_changes_existing_entries(ctx: NodeContext) -> None:
    await import_text(ctx, GOOD)
    changed = GOOD.replace(
        "五马街口,28.01,120.65,hd 商圈,online", "五马街东口,28.01,120.65,商圈,offline"
    )
    with pytest.raises(InvalidInput):
        await import_text(ctx, changed)
    report = await import_text(ctx, changed, update_existing=True)
    assert (report.created, report.updated) == (0, 4)
    [hit] = (await search(ctx.db, SearchQuery(q="东口"), None)).items
    assert (hit["tags"], hit["status"]) == (["商圈"], "offline")
    assert not (await search(ctx.db, SearchQuery(q="马街口"), None)).items


@pytest.fixture
def second_url(request: pytest.FixtureRequest, db_url: str) -> Iterator[str]:
    """Another empty database of the same kind as ``db_url``."""
    if not db_url:
        yield ""  # SQLite: a new file in the other node's data folder
        return
    cluster = request.getfixturevalue("pg_cluster")
    name = cluster.create_database()
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_export_import_export_is_identical(
    ctx: NodeContext, tmp_path: Path, fmt: str, second_url: str
) -> None:
    await build_sample(ctx)
    await import_text(
        ctx,
        HEADER + "33032801001326000777,33032800002166000001,camera,,"
        '"引号,逗号""测试",27.78,119.99,,offline,"{""b"":[1,2],""a"":""x""}"\n',
    )
    first = await export(ctx, fmt)
    assert first.count("\n") == (15 if fmt == "csv" else 16)
    other = await NodeContext.open(make_config(tmp_path / "other", second_url))
    try:
        report = await transfer.import_rows(
            other.db, other.audit, SYSTEM, transfer.parse_file(first.encode(), fmt)
        )
        assert report.created == 14
        assert await export(other, fmt) == first
    finally:
        await other.close()


async def schema_objects(ctx: NodeContext) -> set[str]:
    if ctx.db.is_sqlite:
        sql = "SELECT name FROM sqlite_master WHERE tbl_name IN ('directory_entries', 'entry_tags')"
    else:
        sql = (
            "SELECT indexname FROM pg_indexes WHERE tablename IN ('directory_entries', "
            "'entry_tags') UNION SELECT conname FROM pg_constraint WHERE conrelid IN "
            "('directory_entries'::regclass, 'entry_tags'::regclass)"
        )
    async with ctx.db.sessions() as s:
        return set((await s.execute(text(sql))).scalars().all())


async def test_a_big_import_rebuilds_indexes_and_keys(
    ctx: NodeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big imports drop and rebuild indexes (and keys on PostgreSQL) inside their transaction.
    On SQLite rows go in as statements of several rows (here three, as at most 45 parameters are
    bound at once): a full statement and the rest."""
    monkeypatch.setattr(transfer, "BULK_REBUILD_ROWS", 2)
    monkeypatch.setattr(transfer, "SQLITE_PARAMS", 45)
    before = await schema_objects(ctx)
    bad = GOOD + "33030200001326000009,33039900002166000001,camera,,无父,,,,,\n"
    with pytest.raises(InvalidInput):
        await import_text(ctx, bad)
    await import_text(ctx, GOOD)
    assert await schema_objects(ctx) == before
    assert await export(ctx, "csv") == GOOD.replace(",,,,,\n", ",,,,unknown,\n")
    res = await search(ctx.db, SearchQuery(q="五马", code_prefix="3303"), None)
    assert [i["name"] for i in res.items] == ["五马街口"]
    res = await search(ctx.db, SearchQuery(q="鹿"), None)
    assert [i["name"] for i in res.items] == ["鹿城区"]
    with pytest.raises(InvalidInput):  # and a second import of the same codes is refused
        await import_text(ctx, GOOD)


async def test_an_error_in_the_last_chunk_undoes_the_chunks_already_written(
    ctx: NodeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file is checked and written a chunk at a time: an error found after earlier chunks were
    written rolls them back, and every error is still reported by its row."""
    monkeypatch.setattr(transfer, "CHUNK", 2)
    monkeypatch.setattr(transfer, "BULK_REBUILD_ROWS", 2)
    await import_text(ctx, GOOD)
    before = await export(ctx, "csv")
    schema = await schema_objects(ctx)
    cams = "".join(
        f"330302000013260001{i:02d},33030200002166000001,camera,,路口{i},,,,,\n"
        for i in range(1, 8)
    )
    bad = (
        HEADER
        + cams  # rows 1-7: fine, written in chunks of two before the errors are met
        + "33030200001326000201,33030200001326000299,camera,,父在后,,,,,\n"  # 8: parent later
        + "33030200001326000202,33030200002166000001,camera,,坐标,91,120,,,\n"  # 9: bad lat
        + "33030200001326000299,33030200002166000001,camera,,后来的父,,,,,\n"  # 10: fine
    )
    with pytest.raises(InvalidInput) as e:
        await transfer.import_file(ctx.db, ctx.audit, SYSTEM, bad.encode(), "csv")
    assert [(r, f, why) for r, f, why in errors_of(e)] == [
        (8, "parent_code", "is defined later in the file (row 10); parents must come first"),
        (9, "lat", "must be a number from -90 to 90"),
    ]
    assert await export(ctx, "csv") == before
    assert await schema_objects(ctx) == schema
    assert not (await search(ctx.db, SearchQuery(q="路口"), None)).items
    # The same file without its errors goes in whole, through the same chunks.
    good = HEADER + cams + bad.splitlines(keepends=True)[-1]
    report = await transfer.import_file(ctx.db, ctx.audit, SYSTEM, good.encode(), "csv")
    assert (report.rows, report.created) == (8, 8)
    assert (await search(ctx.db, SearchQuery(q="路口"), None)).total == 7


async def test_malformed_rows_of_a_streamed_file_are_reported_alone(ctx: NodeContext) -> None:
    text_ = GOOD + "1,2,3\n" + "33030200001326000009,33039900002166000001,camera,,无父,,,,,\n"
    with pytest.raises(InvalidInput) as e:
        await transfer.import_file(ctx.db, ctx.audit, SYSTEM, text_.encode(), "csv")
    assert [(r, f) for r, f, _ in errors_of(e)] == [(5, "columns")]
    assert await Directory(ctx.db, ctx.audit).count() == 0


async def test_the_garbage_collector_is_back_on_after_an_import(ctx: NodeContext) -> None:
    """An import checks its rows with Python's cyclic collector off; it is on again afterwards,
    whether the file went in or was refused, and stays off if it was off before."""
    assert gc.isenabled()
    await import_text(ctx, GOOD, dry_run=True)
    assert gc.isenabled()
    with pytest.raises(InvalidInput):
        await transfer.import_file(ctx.db, ctx.audit, SYSTEM, GOOD + "1,2,3\n", "csv")
    assert gc.isenabled()
    await transfer.import_file(ctx.db, ctx.audit, SYSTEM, GOOD, "csv")
    assert gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(InvalidInput):
            await transfer.import_file(ctx.db, ctx.audit, SYSTEM, GOOD, "csv")
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_imported_entries_carry_the_import_time_and_first_version(
    ctx: NodeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The columns every new entry shares (written as SQL text on SQLite, not bound per row)
    read back as the ORM writes them: version 1, never seen, updated at the import's time."""
    monkeypatch.setattr(transfer, "BULK_REBUILD_ROWS", 2)
    monkeypatch.setattr(transfer, "SQLITE_PARAMS", 45)
    before = datetime.now(UTC)
    await import_text(ctx, GOOD)
    after = datetime.now(UTC)
    async with ctx.db.sessions() as s:
        rows = (await s.execute(select(Entry).order_by(Entry.id))).scalars().all()
    assert [(e.version, e.last_seen) for e in rows] == [(1, None)] * 4
    stamps = {e.updated_at.replace(tzinfo=e.updated_at.tzinfo or UTC) for e in rows}
    assert len(stamps) == 1 and before <= stamps.pop() <= after


def permuted(text_: str) -> str:
    """The same CSV with its columns in another order (read by column name, one dict per row)."""
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    rows = list(csv.reader(io.StringIO(text_)))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([[r[i] for i in order] for r in rows])
    return out.getvalue()


async def test_rows_read_as_cells_import_as_rows_read_by_column(
    ctx: NodeContext, tmp_path: Path, second_url: str
) -> None:
    """A CSV file with the export's header is checked from its cells (no dictionary per row);
    the same file with its columns reordered goes through dictionaries: same errors, and the
    same entries, tags and name index."""
    bad = GOOD + (
        "33030200001326000002,33030200002166000001,camera,,坐标,91,120,,,\n"
        '33030200001326000003,33030200002166000001,camera,,属性,,,,,"{""a"":1"\n'
        "33030200001326000004,33030200002166000001,camera,, 空格 ,,,,,\n"
    )
    errors = []
    for text_ in (bad, permuted(bad)):
        with pytest.raises(InvalidInput) as e:
            await transfer.import_file(ctx.db, ctx.audit, SYSTEM, text_.encode(), "csv")
        errors.append(errors_of(e))
    assert errors[0] == errors[1] and [(r, f) for r, f, _ in errors[0]] == [
        (5, "lat"),
        (6, "attrs"),
    ]
    good = GOOD + "33030200001326000004,33030200002166000001,camera,, 空格  两个 ,,,x y x,,\n"
    other = await NodeContext.open(make_config(tmp_path / "other", second_url))
    try:
        await transfer.import_file(ctx.db, ctx.audit, SYSTEM, good.encode(), "csv")
        await transfer.import_file(other.db, other.audit, SYSTEM, permuted(good).encode(), "csv")
        assert await export(ctx, "csv") == await export(other, "csv")
        for q in (SearchQuery(q="两个"), SearchQuery(q="五马"), SearchQuery(tag="x")):
            got = [(await search(c.db, q, None)).items for c in (ctx, other)]
            assert got[0] == got[1] and len(got[0]) == 1
    finally:
        await other.close()


async def test_a_file_checked_in_its_own_process_imports_as_in_this_one(
    ctx: NodeContext, tmp_path: Path, second_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big CSV import into an empty SQLite directory is parsed and checked by
    ``vmesh.directory.checkproc``: the same errors by row and field, and the same entries,
    tags and name index as when this process checks it (PostgreSQL always checks here)."""
    monkeypatch.setattr(transfer, "CHUNK", 2)
    monkeypatch.setattr(transfer, "BULK_REBUILD_ROWS", 2)
    cams = "".join(
        f"330302000013260001{i:02d},33030200002166000001,camera,,路口{i},28.0,120.{i},t{i % 3},,\n"
        for i in range(1, 8)
    )
    bad = (
        GOOD
        + cams
        + "33030200001326000201,33030200001326000299,camera,,父在后,,,,,\n"
        + "33030200001326000202,33030200002166000001,camera,,坐标,91,120,,,\n"
        + "33030200001326000299,33030200002166000001,camera,,后来的父,,,,,\n"
        + "33030200001326000101,33030200002166000001,camera,,重复,,,,,\n"
    )
    good = GOOD + cams
    results = []
    for separate in (False, True):
        monkeypatch.setattr(transfer, "SEPARATE_CHECKS_ROWS", 1 if separate else None)
        outcome = []
        for text_ in (bad, GOOD + "1,2,3\n", "code,name\n", bad.replace("\n", "\r\n")):
            with pytest.raises(InvalidInput) as e:
                await transfer.import_file(ctx.db, ctx.audit, SYSTEM, text_.encode(), "csv")
            outcome.append((e.value.detail, errors_of(e)))
        assert await Directory(ctx.db, ctx.audit).count() == 0
        results.append(outcome)
    assert results[0] == results[1]
    assert [(r, f) for r, f, _ in results[1][0][1]] == [
        (12, "parent_code"),
        (13, "lat"),
        (15, "code"),
    ]
    other = await NodeContext.open(make_config(tmp_path / "other", second_url))
    try:
        monkeypatch.setattr(transfer, "SEPARATE_CHECKS_ROWS", None)
        await transfer.import_file(other.db, other.audit, SYSTEM, good.encode(), "csv")
        monkeypatch.setattr(transfer, "SEPARATE_CHECKS_ROWS", 1)
        report = await transfer.import_file(ctx.db, ctx.audit, SYSTEM, good.encode(), "csv")
        assert (report.rows, report.created) == (11, 11)
        assert await export(ctx, "csv") == await export(other, "csv")
        for q in (SearchQuery(q="路口"), SearchQuery(q="口3"), SearchQuery(tag="t1")):
            got = [(await search(c.db, q, None)).items for c in (ctx, other)]
            assert got[0] == got[1] and got[0]
    finally:
        await other.close()


async def test_tags_beyond_a_whole_statement_wait_for_the_next_chunk(
    ctx: NodeContext, tmp_path: Path, second_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a chunk's tags go in as whole statements only (here 22 tags a statement, 45
    parameters), the rest with a later chunk or the last one: every tag arrives (after its
    entry), whether this process or the checking process checks the file."""
    monkeypatch.setattr(transfer, "CHUNK", 2)
    monkeypatch.setattr(transfer, "BULK_REBUILD_ROWS", 2)
    monkeypatch.setattr(transfer, "SQLITE_PARAMS", 45)
    cams = "".join(
        f"330302000013261{i:05d},33030200002166000001,camera,,路口{i},,,a b{i % 2} c{i % 5},,\n"
        for i in range(1, 42)
    )
    good = GOOD + cams
    other = await NodeContext.open(make_config(tmp_path / "other", second_url))
    try:
        for c, separate in ((ctx, False), (other, True)):
            monkeypatch.setattr(transfer, "SEPARATE_CHECKS_ROWS", 1 if separate else None)
            report = await transfer.import_file(c.db, c.audit, SYSTEM, good.encode(), "csv")
            assert report.created == 45
            assert await export(c, "csv") == good.replace(",,,,,\n", ",,,,unknown,\n").replace(
                ",,\n", ",unknown,\n"
            )
            totals = [
                (await search(c.db, SearchQuery(tag=t, limit=50), None)).total
                for t in ("a", "b1", "c0", "hd")
            ]
            assert totals == [41, 21, 8, 1]
            if c.db.is_sqlite:  # the names are kept as text
                async with c.db.sessions() as s:
                    kinds = await s.execute(
                        text("SELECT DISTINCT typeof(name) FROM directory_entries")
                    )
                    assert kinds.all() == [("text",)]
    finally:
        await other.close()


async def test_a_big_sqlite_import_leaves_its_connection_checking_constraints(
    ctx: NodeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big SQLite import skips the table's CHECK constraints (its rows were checked before)
    on its own connection only while it runs: after it, imported or rolled back, that pooled
    connection checks them again."""
    if not ctx.db.is_sqlite:
        pytest.skip("SQLite only")
    monkeypatch.setattr(transfer, "CHUNK", 2)
    monkeypatch.setattr(transfer, "BULK_REBUILD_ROWS", 2)
    drivers = []
    driver_of = transfer._driver

    async def recorded(s: object) -> object:
        drivers.append(await driver_of(s))  # type: ignore[arg-type]
        return drivers[-1]

    monkeypatch.setattr(transfer, "_driver", recorded)
    bad = GOOD + "33030200001326000202,33030200002166000001,camera,,坐标,91,120,,,\n"
    for text_ in (bad, GOOD):
        if text_ is bad:
            with pytest.raises(InvalidInput):
                await transfer.import_file(ctx.db, ctx.audit, SYSTEM, text_.encode(), "csv")
        else:
            await transfer.import_file(ctx.db, ctx.audit, SYSTEM, text_.encode(), "csv")
        assert drivers
        for driver in set(drivers):
            async with driver.execute("PRAGMA ignore_check_constraints") as cur:
                assert await cur.fetchone() == (0,)
        drivers.clear()
    assert await Directory(ctx.db, ctx.audit).count() == 4
    async with ctx.db.sessions() as s:  # and the table still refuses what breaks its rules
        with pytest.raises(Exception, match="CHECK constraint failed"):
            await s.execute(text("UPDATE directory_entries SET status = 'bogus'"))


async def test_after_a_big_import_searches_within_a_subtree_read_no_table_rows(
    ctx: NodeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a big import ends with a VACUUM that marks the new pages all-visible, so a
    count within a county reads the ``(path, name)`` index alone. The test cluster commits
    asynchronously (``synchronous_commit = off``, as many tuned servers do): a VACUUM run before
    the commits reach disk marks nothing, and every search within a county then read the table
    (1M rows: 40 ms a statement instead of 5)."""
    if ctx.db.is_sqlite:
        pytest.skip("PostgreSQL only")
    monkeypatch.setattr(transfer, "BULK_REBUILD_ROWS", 2)
    async with ctx.db.sessions() as s:
        assert (await s.execute(text("SHOW synchronous_commit"))).scalar_one() == "off"
    cams = "".join(
        f"330302000013260{i:05d},33030200002166000001,camera,,五马街口{i}号,,,,,\n"
        for i in range(100, 3100)
    )
    await import_text(ctx, GOOD + cams)
    async with ctx.db.sessions() as s:
        pages, visible = (
            await s.execute(
                text(
                    "SELECT relpages, relallvisible FROM pg_class "
                    "WHERE relname = 'directory_entries'"
                )
            )
        ).one()
        assert pages > 20 and visible == pages
        path = (
            await s.execute(select(Entry.path).where(Entry.code == "33030200002166000001"))
        ).scalar_one()
        # The index, as the planner chooses it for one county of a million rows.
        await s.execute(text("SET LOCAL enable_bitmapscan = off"))
        await s.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            (
                await s.execute(
                    text(
                        "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM directory_entries e "
                        'WHERE e.path COLLATE "C" >= :lo AND e.path COLLATE "C" < :hi'
                    ),
                    {"lo": path, "hi": path[:-1] + "0"},
                )
            ).scalars()
        )
    assert "Index Only Scan" in plan and "Heap Fetches: 0" in plan, plan
