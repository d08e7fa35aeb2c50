"""Shared fixtures: a node configuration, an opened node context and an HTTP client on it.

``db_url`` is parametrised over the databases named by ``--db`` (default ``sqlite,postgresql``), so
every test that uses ``ctx`` or ``client`` runs on both: ``""`` means the node's default SQLite
file, otherwise a fresh PostgreSQL database in the session's own cluster (``tests/pg.py``). Without
PostgreSQL binaries the PostgreSQL variants fail with a message saying what to install, unless
``VMESH_SKIP_PG=1`` (then they are skipped).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from pg import PgCluster, PgUnavailable
from vmesh.api.app import create_app
from vmesh.config import NodeConfig, parse_config
from vmesh.node.context import NodeContext
from vmesh.storage.migrate import upgrade_sync

PROVINCE_NODE = "33000000002006000001"


def make_config(tmp_path: Path, db_url: str = "") -> NodeConfig:
    return parse_config(
        {
            "node": {
                "code": PROVINCE_NODE,
                "name": "浙江省节点",
                "tier": "province",
                "data_dir": str(tmp_path / "data"),
            },
            "database": {"url": db_url},
        }
    )


DATABASES = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default=",".join(DATABASES),
        help="databases the db_url fixture runs on, comma-separated (default: sqlite,postgresql)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_url" in metafunc.fixturenames:
        chosen = [d.strip() for d in metafunc.config.getoption("--db").split(",") if d.strip()]
        unknown = sorted(set(chosen) - set(DATABASES))
        if unknown:
            raise pytest.UsageError(f"--db: unknown {unknown}; allowed: {', '.join(DATABASES)}")
        metafunc.parametrize("db_url", chosen, indirect=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL server for the whole session, with the schema migrated into a template."""
    if os.environ.get("VMESH_SKIP_PG") == "1":
        pytest.skip("VMESH_SKIP_PG=1: PostgreSQL variants skipped")
    problem = ""
    try:
        cluster = PgCluster()
        cluster.start()  # stops itself again if it cannot finish starting
    except PgUnavailable as e:
        problem = str(e)
    if problem:
        pytest.fail(f"PostgreSQL tests cannot run: {problem}", pytrace=False)
    try:
        cluster.migrate_template(upgrade_sync)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """``""`` (SQLite file in the node's data folder) or the URL of a fresh PostgreSQL database."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield ""
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = cluster.create_database()
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keep the call phase's report on the item (``item.rep_call``): fixtures that print what
    they know about a failure (pages, node logs) read it in their teardown."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
