"""Emergency command: time to convene 20 units, time to record an action, nearby search.

What is measured, in one process (the node's HTTP app over an ASGI transport, SQLite in a
temporary folder):

- **convene**: ``POST /api/command/incidents/{id}/convene`` with ``--units`` sub-venues (the
  conference created through the conference service, checked, audited, and the ``convene`` entry
  written to the incident's log with its audit row); p50/p99 over ``--runs`` incidents.
- **action**: ``POST …/actions {action: note}`` (fold of the log, check, entry, projection,
  audit row in one transaction) on an incident whose log grows to ``--entries`` entries.
- **nearby**: ``GET …/nearby`` among ``--cameras`` cameras with locations (directory rows; the
  catalogue is empty here).

Not measured here: pull-camera-to-first-frame for a camera two tiers away (the acceptance's
≤ 400 ms goal). That needs three media nodes in network namespaces and Chromium; the fabric's
and the wall's time to first frame are in ``bench/fabric.py`` and ``bench/ttff.py``, and the
room's pull is the wall's ``play`` plus one logged action (the ``action`` row above).

Run: ``.venv/bin/python bench/command.py [--units 20] [--runs 20] [--entries 500]
[--cameras 2000]``; prints JSON.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from factories import add_entry, add_region, add_user, bearer  # noqa: E402
from vmesh.api.app import create_app  # noqa: E402
from vmesh.config import parse_config  # noqa: E402
from vmesh.node.context import NodeContext  # noqa: E402

COUNTY = "33010600002166000001"
OPEN = {"type": "flood", "title": "bench", "severity": "III", "lat": 30.25, "lon": 120.13}


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))], 2)


async def run(units: int, runs: int, entries: int, cameras: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config(
            {
                "node": {
                    "code": "33010600002006000001",
                    "name": "西湖区节点",
                    "tier": "county",
                    "data_dir": str(Path(tmp) / "data"),
                }
            }
        )
        ctx = await NodeContext.open(cfg)
        try:
            async with ctx.db.transaction() as s:
                await add_region(s, COUNTY, "西湖区", "county")
                await add_entry(
                    s, "33010600004000000000", "指挥中心", "conference_terminal", parent=COUNTY
                )
                for i in range(1, units + 1):
                    await add_entry(
                        s,
                        f"330106000040000{i:05d}",
                        f"分会场{i}",
                        "conference_terminal",
                        parent=COUNTY,
                    )
                for i in range(cameras):
                    e = await add_entry(
                        s, f"330106000013200{i:05d}", f"摄像机{i}", "camera", parent=COUNTY
                    )
                    e.lat, e.lon = 30.0 + (i % 50) * 0.01, 120.0 + (i // 50) * 0.01
            h = bearer(await add_user(ctx, "cmdr", ["commander", "chair"], COUNTY))
            app = create_app(ctx)
            transport = httpx.ASGITransport(app=app)
            venues = [f"330106000040000{i:05d}" for i in range(1, units + 1)]
            convene, action, nearby = [], [], []
            async with httpx.AsyncClient(transport=transport, base_url="http://n") as c:
                for _ in range(runs):
                    iid = (await c.post("/api/command/incidents", json=OPEN, headers=h)).json()[
                        "id"
                    ]
                    t0 = time.perf_counter()
                    r = await c.post(
                        f"/api/command/incidents/{iid}/convene",
                        headers=h,
                        json={"main": "33010600004000000000", "venues": venues},
                    )
                    convene.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text
                for _ in range(entries):
                    t0 = time.perf_counter()
                    r = await c.post(
                        f"/api/command/incidents/{iid}/actions",
                        headers=h,
                        json={"action": "note", "text": "bench"},
                    )
                    action.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text
                for _ in range(runs):
                    t0 = time.perf_counter()
                    r = await c.get(f"/api/command/incidents/{iid}/nearby?km=5", headers=h)
                    nearby.append((time.perf_counter() - t0) * 1000)
                found = len(r.json())
        finally:
            await ctx.close()
    return {
        "units": units,
        "runs": runs,
        "entries": entries,
        "cameras": cameras,
        "convene_ms": {"p50": pct(convene, 0.5), "p99": pct(convene, 0.99)},
        "action_ms": {
            "p50": pct(action, 0.5),
            "p99": pct(action, 0.99),
            "first_50_p50": pct(action[:50], 0.5),
            "last_50_p50": pct(action[-50:], 0.5),
        },
        "nearby_ms": {"p50": pct(nearby, 0.5), "p99": pct(nearby, 0.99), "found": found},
        "loadavg": os.getloadavg(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--units", type=int, default=20)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--entries", type=int, default=500)
    p.add_argument("--cameras", type=int, default=2000)
    a = p.parse_args()
    print(json.dumps(asyncio.run(run(a.units, a.runs, a.entries, a.cameras)), indent=2))


if __name__ == "__main__":
    main()
