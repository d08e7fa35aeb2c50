"""The catalogue's bulk apply on SQLite and PostgreSQL: thousands of changes in one transaction,
idempotent by (code, version), a tombstone keeping what was known, and a batch failing midway
leaving nothing written (neither rows nor the applied sequence)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from vmesh.federation.catalogue import (
    LAST_SEQ,
    CatalogueChange,
    apply_changes,
    get_state,
    origin_stats,
    search,
)
from vmesh.federation.models import CatalogueEntry
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

COUNTY = "33032800002006000001"
AT = datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)
N = 5000  # more rows than one SQLite multi-row statement takes (32,766 parameters / 15 columns)


def code(k: int) -> str:
    return f"3303280000132{k:07d}"


def cam(k: int, version: int = 1, name: str = "", origin: str = COUNTY) -> CatalogueChange:
    entry = {
        "parent_code": "33032800002166000001",
        "kind": "camera",
        "tier": None,
        "name": name or f"西坑村口摄像机{k}",
        "status": "online",
        "lat": 27.5,
        "lon": 120.25,
        "tags": ["村口", "高清"],
        "attrs": {"rtsp": f"rtsp://10.0.0.1/{k}"},
    }
    return CatalogueChange(origin, code(k), version, AT, entry)


async def count(ctx: NodeContext) -> int:
    async with ctx.db.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(CatalogueEntry)) or 0)


async def applied_seq(ctx: NodeContext) -> str | None:
    async with ctx.db.sessions() as s:
        return await get_state(s, LAST_SEQ)


async def test_thousands_of_changes_apply_once_and_never_regress(ctx: NodeContext) -> None:
    changes = [cam(k) for k in range(1, N + 1)]
    assert await apply_changes(ctx.db, changes, last_seq=7) == (N, 0)
    assert await count(ctx) == N and await applied_seq(ctx) == "7"
    [item], total = await search(ctx.db, code_prefix_scope="", q="西坑村口摄像机4321")
    assert total == 1
    assert (item["code"], item["origin_node"], item["version"]) == (code(4321), COUNTY, 1)
    assert (item["tags"], item["attrs"], item["lat"]) == (
        ["村口", "高清"],
        {"rtsp": "rtsp://10.0.0.1/4321"},
        27.5,
    )
    assert item["changed_at"] == AT

    # The same batch again (a re-delivery after a crash): nothing applied, all counted ignored.
    assert await apply_changes(ctx.db, changes, last_seq=8) == (0, N)
    # A mix: a rename (v2), a stale v1 of another, a tombstone (v2), a new entry.
    mixed = [
        cam(1, 2, "更名后的摄像机"),
        cam(2, 1, "不应出现"),
        CatalogueChange(COUNTY, code(3), 2, AT, None),
        cam(N + 1),
    ]
    assert await apply_changes(ctx.db, mixed, last_seq=9) == (3, 1)
    async with ctx.db.sessions() as s:
        rows = {
            r.code: r
            for r in await s.scalars(
                select(CatalogueEntry).where(CatalogueEntry.code.in_([code(k) for k in (1, 2, 3)]))
            )
        }
    assert (rows[code(1)].name, rows[code(1)].version) == ("更名后的摄像机", 2)
    assert (rows[code(2)].name, rows[code(2)].version) == ("西坑村口摄像机2", 1)
    # The tombstone keeps the name and kind it had, for display; search leaves it out.
    tomb = rows[code(3)]
    assert (tomb.deleted, tomb.version, tomb.name, tomb.kind) == (
        True,
        2,
        "西坑村口摄像机3",
        "camera",
    )
    assert (await search(ctx.db, code_prefix_scope="", code_prefix=code(3)))[1] == 0
    stats = (await origin_stats(ctx.db))[COUNTY]
    assert (stats["applied"], stats["ignored"], stats["entries"]) == (N + 3, N + 1, N)
    assert await applied_seq(ctx) == "9"


async def test_a_batch_failing_midway_leaves_nothing_written(ctx: NodeContext) -> None:
    await apply_changes(ctx.db, [cam(1)], last_seq=3)
    # The last change has no origin: the database refuses its row (origin_node NOT NULL) after
    # the statements before it went through — inside the same transaction.
    bad = [cam(k, 2) for k in range(1, N + 1)] + [cam(N + 1, origin=None)]  # type: ignore[arg-type]
    with pytest.raises(Exception, match=r"(?i)null"):
        await apply_changes(ctx.db, bad, last_seq=4)
    assert await count(ctx) == 1
    assert await applied_seq(ctx) == "3"
    [item], _ = await search(ctx.db, code_prefix_scope="", code_prefix=code(1))
    assert item["version"] == 1
    assert (await origin_stats(ctx.db))[COUNTY]["applied"] == 1
