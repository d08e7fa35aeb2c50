"""PostgreSQL's JIT and the directory's searches: one million-row PostgreSQL directory (the
test suite's throwaway cluster, or ``--pg-url``), served by two instances of the node's HTTP
application in one process, one with the server's JIT on and one with the node's default (off),
requests interleaved (ABBA), through ``httpx.ASGITransport`` (no TCP, no other node services).

    .venv/bin/python bench/pg_jit.py --rows 1000000 --queries 200

Same query sets as ``bench/directory.py``; prints JSON with p50/p99/max ms per kind and setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the PostgreSQL cluster helper

from sqlalchemy import text as sql  # noqa: E402

import directory as bench  # noqa: E402  (bench/directory.py)
from vmesh.api.app import create_app  # noqa: E402
from vmesh.config import parse_config  # noqa: E402
from vmesh.node.context import NodeContext  # noqa: E402
from vmesh.storage.db import Database  # noqa: E402


async def measure(cfg: dict[str, Any], sets: dict[str, list[str]]) -> dict[str, Any]:
    config = parse_config(cfg)
    base = await NodeContext.open(config)
    clients: dict[str, httpx.AsyncClient] = {}
    try:
        for name, jit in (("jit_on", True), ("jit_off", False)):
            db = Database(config.database.url, pg_jit=jit)
            async with db.sessions() as s:
                shown = (await s.execute(sql("SHOW jit"))).scalar_one()
            assert shown == ("on" if jit else "off"), shown
            app = create_app(NodeContext(config=config, db=db, audit=base.audit))
            c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n")
            login = {"username": "bench", "password": bench.PASSWORD}
            (await c.post("/api/auth/login", json=login)).raise_for_status()
            clients[name] = c
        out: dict[str, Any] = {}
        for kind, urls in sets.items():
            lat: dict[str, list[float]] = {k: [] for k in clients}
            for i, url in enumerate(urls):
                order = list(clients.items())
                if i % 2:
                    order.reverse()
                for name, c in order:
                    t0 = time.perf_counter()
                    r = await c.get(url)
                    lat[name].append(time.perf_counter() - t0)
                    r.raise_for_status()
            out[kind] = {
                k: {
                    "p50_ms": round(bench.pct(v, 50), 1),
                    "p99_ms": round(bench.pct(v, 99), 1),
                    "max_ms": round(max(v) * 1000, 1),
                }
                for k, v in lat.items()
            }
            print(kind, out[kind], file=sys.stderr)
        return out
    finally:
        for c in clients.values():
            await c.aclose()
        await base.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200, help="requests of each kind")
    ap.add_argument("--pg-url", help="an empty PostgreSQL database (default: a throwaway cluster)")
    args = ap.parse_args()
    load0 = os.getloadavg()
    text, levels = bench.generate(args.rows)
    sets = bench.query_sets(text, levels, args.queries)
    cluster = None
    url = args.pg_url
    if not url:
        from pg import PgCluster

        cluster = PgCluster()
        cluster.start()
        url = cluster.url(cluster.create_database())
    try:
        with tempfile.TemporaryDirectory(prefix="vmesh-bench-") as tmp:
            cfg = bench.node_config(Path(tmp) / "data", url, bench.free_port())
            imp = asyncio.run(bench.do_import(cfg, text))
            res = asyncio.run(measure(cfg, sets))
    finally:
        if cluster is not None:
            cluster.stop()
    report = {
        "rows": args.rows,
        "queries": args.queries,
        "import": imp,
        "load_avg": [round(x, 2) for x in (*load0, *os.getloadavg())],
        "results": res,
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
