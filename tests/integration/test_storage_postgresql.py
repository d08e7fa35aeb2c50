"""PostgreSQL connection settings of a node's database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import make_config
from pg import PgCluster
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration


async def test_every_pooled_connection_runs_without_jit(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    """The node's statements are short; PostgreSQL's JIT, on by default in the server, would
    compile plans whose estimated cost passes jit_above_cost at a million rows (tens of ms)."""
    name = pg_cluster.create_database()
    ctx = await NodeContext.open(make_config(tmp_path, pg_cluster.url(name)))
    try:
        async with ctx.db.sessions() as a, ctx.db.sessions() as b:
            for s in (a, b):
                assert (await s.execute(text("SHOW jit"))).scalar_one() == "off"
            # The server's own default is untouched: a session may still ask for it.
            await a.execute(text("SET jit = on"))
            assert (await a.execute(text("SHOW jit"))).scalar_one() == "on"
    finally:
        await ctx.close()
        pg_cluster.drop_database(name)
