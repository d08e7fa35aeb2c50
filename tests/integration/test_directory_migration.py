"""Migration 0017: codes unique by a named index; the table rebuilt on SQLite keeps every row."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from vmesh.storage.migrate import alembic_config, upgrade

pytestmark = pytest.mark.integration

ENTRY = (
    "INSERT INTO directory_entries (id, code, parent_id, path, kind, tier, name, lat, lon, tags, "
    "status, last_seen, attrs, version, updated_at) VALUES (:id, :code, :parent, :path, :kind, "
    ":tier, :name, :lat, :lon, :tags, :status, NULL, '{}', :version, '2026-11-30 01:00:00')"
)
ROWS = [
    {
        "id": 1,
        "code": "33000000002166000001",
        "parent": None,
        "path": "/1/",
        "kind": "region",
        "tier": "province",
        "name": "浙江省",
        "lat": None,
        "lon": None,
        "tags": "",
        "status": "unknown",
        "version": 1,
    },
    {
        "id": 2,
        "code": "33010000002166000001",
        "parent": 1,
        "path": "/1/2/",
        "kind": "region",
        "tier": "city",
        "name": "杭州市",
        "lat": 30.25,
        "lon": 120.16,
        "tags": "",
        "status": "online",
        "version": 3,
    },
    {
        "id": 7,
        "code": "33010000001326000001",
        "parent": 2,
        "path": "/1/2/7/",
        "kind": "camera",
        "tier": None,
        "name": "西湖区文三路口",
        "lat": 30.28,
        "lon": 120.13,
        "tags": "hd 雪亮",
        "status": "offline",
        "version": 1,
    },
]


@pytest.fixture
async def empty_url(tmp_path: Path, db_url: str) -> AsyncIterator[str]:
    """A database with no tables at all, of the kind ``db_url`` is."""
    if not db_url:
        yield f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
        return
    name = f"m_{uuid.uuid4().hex[:16]}"
    base, _, _ = db_url.rpartition("/")
    admin = create_async_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    async with admin.connect() as c:
        await c.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield f"{base}/{name}"
    finally:
        async with admin.connect() as c:
            await c.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        await admin.dispose()


async def snapshot(engine: AsyncEngine) -> dict[str, list[Any]]:
    async with engine.connect() as c:
        return {
            t: [tuple(r) for r in (await c.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2")))]
            for t in ("directory_entries", "entry_tags", "catalogue_deletions")
        }


async def refuses_a_duplicate_code(engine: AsyncEngine) -> bool:
    row = {**ROWS[2], "id": 8, "path": "/1/2/8/"}
    try:
        async with engine.begin() as c:
            await c.execute(text(ENTRY), row)
    except IntegrityError:
        return True
    return False


async def test_0017_keeps_rows_tags_trigger_and_unique_codes(empty_url: str) -> None:
    await upgrade(empty_url, "0003")
    engine = create_async_engine(empty_url)
    try:
        async with engine.begin() as c:
            for r in ROWS:
                await c.execute(text(ENTRY), r)
            await c.execute(
                text("INSERT INTO entry_tags (entry_id, tag) VALUES (7, 'hd'), (7, '雪亮')")
            )
        before = await snapshot(engine)
        await upgrade(empty_url, "0017")
        assert await snapshot(engine) == before
        async with engine.connect() as c:
            if engine.dialect.name == "sqlite":
                sql = "SELECT name FROM sqlite_master WHERE tbl_name = 'directory_entries'"
            else:
                sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'directory_entries'"
            names = set((await c.execute(text(sql))).scalars())
        assert "uq_directory_entries_code" in names
        assert not any(n.startswith("sqlite_autoindex") for n in names)
        assert await refuses_a_duplicate_code(engine)
        # The deletion trigger and the tags' foreign key (cascade) still work.
        async with engine.begin() as c:
            if engine.dialect.name == "sqlite":
                await c.execute(text("PRAGMA foreign_keys=ON"))
            await c.execute(text("DELETE FROM directory_entries WHERE id = 7"))
        after = await snapshot(engine)
        assert after["entry_tags"] == []
        assert [r[1] for r in after["catalogue_deletions"]] == ["33010000001326000001"]
        async with engine.begin() as c:
            await c.execute(text(ENTRY), ROWS[2])
        await asyncio.to_thread(command.downgrade, alembic_config(empty_url), "0003")
        assert (await snapshot(engine))["directory_entries"] == before["directory_entries"]
        assert await refuses_a_duplicate_code(engine)
    finally:
        await engine.dispose()
