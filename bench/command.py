"""Emergency command: pull-camera-to-first-frame two tiers away, time to convene 20 units at
several tiers (``--tiers``); time to convene, to record an action, nearby search on one node.

``--tiers``: three real ``vmesh node run`` in network namespaces (``netns.vnet``'s chain: the
province ← 温州市 ← 文成县, nats-server, Janus, switch and fabric each; needs root). The province
opens an incident near the county's cameras; its room page in Chromium (Playwright, Debian's
``/usr/bin/chromium``) shows them among the nearby resources (from the catalogue). **Pull to
first frame**: from the click on a camera's *pull* button to the first frame of the wall tile's
new stream (``requestVideoFrameCallback``'s ``presentationTime``, the page's clock; the way
``bench/fabric.py ttff`` measures), the stream coming county → city → province through the
fabric. Cameras' sources keep running (``source_linger_seconds`` 600, each pulled once to warm
up), and each trial waits for the fabric's leases to close (``linger`` 1 s) so the path opens hop
by hop every time. **Convene**: ``POST …/convene`` at the province with a province main venue and
``--units`` sub-venues spread over the province, the city and the county (the remote ones from the
catalogue), timed to the answer (the conference created, the entry logged); ``--runs`` times.

Single node (default), in one process (the node's HTTP app over an ASGI transport, SQLite in a
temporary folder):

- **convene**: ``POST /api/command/incidents/{id}/convene`` with ``--units`` sub-venues (the
  conference created through the conference service, checked, audited, and the ``convene`` entry
  written to the incident's log with its audit row); p50/p99 over ``--runs`` incidents.
- **action**: ``POST …/actions {action: note}`` (fold of the log, check, entry, projection,
  audit row in one transaction) on an incident whose log grows to ``--entries`` entries.
- **nearby**: ``GET …/nearby`` among ``--cameras`` cameras with locations (directory rows; the
  catalogue is empty here).

Run: ``.venv/bin/python bench/command.py [--units 20] [--runs 20] [--entries 500]
[--cameras 2000]``, or ``.venv/bin/python bench/command.py --tiers [--units 20] [--runs 10]``;
prints JSON.
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
sys.path.insert(0, str(ROOT / "bench"))

from benchinfo import machine  # noqa: E402
from fabric import FIRST_FRAME_JS  # noqa: E402
from factories import TEST_ACTOR, add_entry, add_region, add_user, bearer  # noqa: E402
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


# --- across tiers ---------------------------------------------------------------------------

POINT = (27.80, 119.95)  # near 文成县
# The first frame of tile 0's new stream after clicking a camera's pull button: the same
# measure as ``bench/fabric.py ttff`` (which sets the wall's hash instead of clicking).
PULL_JS = FIRST_FRAME_JS.replace(
    'location.hash = "#/wall/" + code;',
    'document.querySelector(`[data-testid="pull-${code}"]`).click();',
)
assert PULL_JS != FIRST_FRAME_JS


def _venue(node: str, i: int) -> str:
    from netns.vnet import WENZHOU_CHAIN

    return WENZHOU_CHAIN[node].code[:6] + f"0000400000{i:04d}"


async def tiers(units: int, runs: int) -> dict[str, Any]:
    """Pull-to-first-frame two tiers away and convening ``units`` venues of three tiers."""
    from netns.fednodes import wait_until
    from netns.lab import Lab
    from netns.vnet import WENZHOU_CHAIN, Topology, console, start_network

    topo = Topology(
        dict(WENZHOU_CHAIN),
        media=True,
        linger=1.0,
        overrides={"media": {"source_linger_seconds": 600}},
    )
    cams = [WENZHOU_CHAIN["county"].code[:10] + f"13200000{i:02d}" for i in (1, 2, 3)]
    per = {"prov": 0, "city": units // 2, "county": units - units // 2}  # sub-venues per node

    async def setup(name: str, directory: Any, org: str) -> None:
        for i in range(per[name] + (name == "prov")):
            body = {"code": _venue(name, i), "parent_code": org}
            await directory.create(
                TEST_ACTOR, body | {"kind": "conference_terminal", "name": f"{name}分会场{i}"}
            )
        if name == "county":
            for i, cam in enumerate(cams):
                attrs = {"source": "synthetic", "width": 320, "height": 180, "fps": 25, "gop": 25}
                await directory.create(
                    TEST_ACTOR,
                    {
                        "code": cam,
                        "parent_code": org,
                        "kind": "camera",
                        "name": f"文成县摄像机{i + 1}",
                        "lat": POINT[0] + 0.002 * (i + 1),
                        "lon": POINT[1],
                        "attrs": attrs,
                    },
                )

    tmp = Path(tempfile.mkdtemp(prefix="bench-command-"))
    lab = Lab(tuple(WENZHOU_CHAIN), root_leg=True).up()
    pulls: list[float] = []
    convene: list[float] = []
    try:
        net = await start_network(tmp, lab, topo, setup)
        remote = [_venue("city", i) for i in range(per["city"])]
        remote += [_venue("county", i) for i in range(per["county"])]

        async def known() -> bool:
            for code in [*cams, *remote]:
                page = await net.get("prov", "/api/network/catalogue", code_prefix=code)
                if page["total"] != 1:
                    return False
            return True

        await wait_until(known, "the cameras and venues in the province's catalogue", within=180)
        body = {"type": "flood", "title": "bench", "severity": "II"}
        inc = await net.send(
            "prov",
            "POST",
            "/api/command/incidents",
            body | {"lat": POINT[0], "lon": POINT[1]},
        )
        async with console(net, "prov") as page:
            await page.goto(f"{net.url('prov')}/#/command/{inc['id']}")
            await page.wait_for_selector(f'[data-testid="pull-{cams[-1]}"]', timeout=60_000)

            async def one(cam: str) -> float | None:
                stop = page.get_by_test_id("tile-0-stop")
                if await stop.count() and await stop.is_visible():
                    await stop.click()
                await asyncio.sleep(topo.linger + 2.0)  # the previous path's leases close
                ms = await page.evaluate(PULL_JS, cam)
                await asyncio.sleep(0.5)
                return ms

            for cam in cams:  # warm-up: every source started once
                await one(cam)
            for i in range(runs):
                ms = await one(cams[i % len(cams)])
                if ms is not None:
                    pulls.append(round(ms, 1))
        for _ in range(runs):
            iid = (
                await net.send(
                    "prov",
                    "POST",
                    "/api/command/incidents",
                    body | {"lat": POINT[0], "lon": POINT[1]},
                )
            )["id"]
            t0 = time.perf_counter()
            r = await net.send(
                "prov",
                "POST",
                f"/api/command/incidents/{iid}/convene",
                {"main": _venue("prov", 0), "venues": remote},
            )
            convene.append((time.perf_counter() - t0) * 1000)
            assert len(r["venues"]) == units + 1, r
            await net.send("prov", "POST", f"/api/conferences/{r['conference']}/end", {})
    finally:
        lab.down()
    return {
        "units": units,
        "venues_per_node": {"prov (main)": 1, "city": per["city"], "county": per["county"]},
        "runs": runs,
        "pull_to_first_frame_ms_two_tiers": {
            "trials": pulls,
            "p50": pct(pulls, 0.5) if pulls else None,
            "p99": pct(pulls, 0.99) if pulls else None,
            "failed": runs - len(pulls),
        },
        "convene_ms": {
            "trials": [round(x, 1) for x in convene],
            "p50": pct(convene, 0.5),
            "p99": pct(convene, 0.99),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiers", action="store_true", help="three nodes in namespaces + Chromium")
    p.add_argument("--units", type=int, default=20)
    p.add_argument("--runs", type=int, default=None, help="default 20 (10 with --tiers)")
    p.add_argument("--entries", type=int, default=500)
    p.add_argument("--cameras", type=int, default=2000)
    a = p.parse_args()
    load0 = [round(x, 2) for x in os.getloadavg()]
    if a.tiers:
        res = asyncio.run(tiers(a.units, a.runs or 10))
    else:
        res = asyncio.run(run(a.units, a.runs or 20, a.entries, a.cameras))
    out = {"bench": "command.tiers" if a.tiers else "command", "machine": machine()}
    out |= {"loadavg_before": load0} | res | {"loadavg_after": os.getloadavg()}
    print(json.dumps(out, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
