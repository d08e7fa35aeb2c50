"""Shared fixtures: a node configuration, an opened node context and an HTTP client on it.

``db_url`` is parametrised by the ``--db`` option: SQLite always; PostgreSQL when the tests started
a server (see ``tests/pg.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from vmesh.api.app import create_app
from vmesh.config import NodeConfig, parse_config
from vmesh.node.context import NodeContext

PROVINCE_NODE = "33000000002006000001"


def make_config(tmp_path: Path, db_url: str = "") -> NodeConfig:
    return parse_config(
        {
            "node": {"code": PROVINCE_NODE, "name": "浙江省节点", "tier": "province",
                     "data_dir": str(tmp_path / "data")},
            "database": {"url": db_url},
        }
    )


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return ""


@pytest.fixture
async def ctx(tmp_path: Path, db_url: str) -> AsyncIterator[NodeContext]:
    context = await NodeContext.open(make_config(tmp_path, db_url))
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def client(ctx: NodeContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as c:
        yield c
