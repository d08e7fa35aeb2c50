"""SQLite connection settings of a node's database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from vmesh.config import parse_config
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

NODE = {"code": "33000000002006000001", "name": "浙江省节点", "tier": "province"}


@pytest.mark.parametrize(("mib", "expected"), [(None, 0), (0, 0), (256, 256 * 2**20)])
async def test_connections_map_as_much_of_the_file_as_configured(
    tmp_path: Path, mib: int | None, expected: int
) -> None:
    database = {} if mib is None else {"sqlite_mmap_mib": mib}
    cfg = parse_config({"node": {**NODE, "data_dir": str(tmp_path)}, "database": database})
    ctx = await NodeContext.open(cfg)
    try:
        # Two connections at once: each pooled connection gets the setting, not only the first.
        async with ctx.db.sessions() as a, ctx.db.sessions() as b:
            for s in (a, b):
                assert (await s.execute(text("PRAGMA mmap_size"))).scalar_one() == expected
            conns = [(await s.connection()).sync_connection for s in (a, b)]
            assert conns[0] is not None and conns[1] is not None
            assert conns[0].connection.dbapi_connection is not conns[1].connection.dbapi_connection
    finally:
        await ctx.close()
