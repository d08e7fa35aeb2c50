"""Database engine and sessions (SQLAlchemy 2, async), shared by every capability.

SQLite (aiosqlite, a file in the data folder) is the default; PostgreSQL (asyncpg) by URL. Schema
changes go through Alembic only (``vmesh.storage.migrate``); nothing calls ``create_all``.

Public: ``Base``, ``Database``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

log = logging.getLogger(__name__)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, *, mmap_bytes: int) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA cache_size=-65536")
    # Off by default ([database] sqlite_mmap_mib): each pooled connection maps the file on its
    # own, and every page it has read through its map counts again in the node's resident
    # memory (docs/directory.md, "Memory").
    cur.execute(f"PRAGMA mmap_size={int(mmap_bytes)}")
    # Sorts of a search (a few thousand rows) in memory, not in a temporary file.
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


class Database:
    """One engine and its session factory. ``dialect`` is ``"sqlite"`` or ``"postgresql"``.

    ``sqlite_mmap_bytes``: how much of an SQLite file each connection reads through ``mmap``
    (``PRAGMA mmap_size``; 0, the default, reads through SQLite's own cache).
    """

    def __init__(self, url: str, *, echo: bool = False, sqlite_mmap_bytes: int = 0) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo}
        if url.startswith("postgresql"):
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            pragmas = functools.partial(_sqlite_pragmas, mmap_bytes=sqlite_mmap_bytes)
            event.listen(self.engine.sync_engine, "connect", pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
