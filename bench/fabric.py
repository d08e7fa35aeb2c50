"""Fabric and catalogue benchmarks (issue 4): time to first frame by hop count, added latency per
hop, the catalogue's full sync at 1,000,000 endpoints and one change's propagation. Prints JSON.

``catalogue``: a province node's real catalogue path — its nats-server (JetStream domain = its
code, mutual-TLS leaf listener), its ``CAT_`` stream sourcing the counties' streams across the
leaf link, ``CatalogueApplier`` writing ``catalogue_entries`` in the province's database — fed by
one simulator nats-server that publishes as ``--counties`` county nodes (a ``CAT_<county>``
stream each, capturing only that county's subjects, every message with its ``Nats-Msg-Id``, in
the wire format ``CataloguePublisher`` sends — format 2, ``encode_batch`` — or with
``--wire-format 1`` one message per entry as before), as issue 4 allows ("the counties may be
simulated by fewer processes publishing as many nodes"). ``apply_transactions``: how many
``apply_changes`` calls and their seconds; ``sync_cpu_s``: this process's CPU over the sync. The
counties' streams are filled first (``--endpoints`` camera entries spread evenly); then the
province's stream is created and the clock runs until every entry is in the province's database
(``full_sync_s``; ``sourced_s`` when the province's stream held them all). Then ``--changes``
single changes, one at a time, each a new version of a random county's entry: published at the
simulator, timed until the province's database row has that version (polled every 2 ms).

``latency``: five fabric agents in a chain (province ← city ← county ← township ← village; a
``FabricService`` + its own ``SwitchTransport`` each, one nats-server for the bus, UDP on
loopback), each node in its own OS process (``bench/fabric_hops.py node``: uvloop and
``settle_gc`` as ``vmesh node run``), so that a node's stalls delay only its own hop, as between
real nodes. A camera at the viewer's node and cameras 1, 2 and 4 hops away (each in its node's
process) send 25 frames/s × 4 packets with the send time (``time.time_ns``) in the payload; the
viewer's node routes each stream to an output to a UDP socket of this process, read by a thread
with the kernel's receive timestamps (``SO_TIMESTAMPNS``; the thread's read time is kept as
``app_read``). Added latency per hop = (pN − p0) / N for p50, p99 and p99.9 over ``--seconds``
(after ``--warmup``). ``--one-process`` also runs the old layout — all five nodes in one process,
one event loop — after it, reported beside it (``per_process`` / ``one_process``). Every node
process stops when its stdin closes (end, error, Ctrl-C: node processes and the nats-server are
in process groups of their own, so Ctrl-C reaches this process, which stops the nodes, then the
bus) and dies with this process (``PR_SET_PDEATHSIG``), as does the nats-server.

``ttff``: see ``tests/e2e`` — five real ``vmesh node run`` in network namespaces
(``netns.vnet``: province ← city ← county ← township ← village, nats-server, Janus, switch and
fabric each), Chromium (Playwright, Debian's ``/usr/bin/chromium``) at the province watching, by
turns, a camera of the province itself (0 hops), the city (1), the county (2) and the village
(4). Sources keep running (``source_linger_seconds`` 600, warmed up once) but each trial waits
for the fabric's leases to close (``linger`` 1 s), so every remote trial opens its path hop by
hop. TTFF = from setting the wall's hash (``#/wall/<code>``) to the first frame of the tile's
new stream (``requestVideoFrameCallback``'s ``presentationTime``), in the page's clock; between
trials the tile is stopped. Needs root (namespaces).

``failover``: the dual-homing topology of ``tests/e2e/test_fabric_dualhome.py`` (province, city,
city2, county with both cities as parents; Chromium at the province playing the county's camera).
``--cuts`` times: wait until the province's standby leg flows (its ``/metrics``), blackhole the
county's link to the parent carrying the stream now (both ways), take the longest stretch
without a newly decoded frame in the page from the cut on (sampled every 20 ms), restore the
link once frames flow again; the next cut takes the other parent's link. Needs root.

Run: ``.venv/bin/python bench/fabric.py catalogue [--endpoints 1000000 --counties 90]``,
``... latency [--seconds 20] [--one-process]``, ``... ttff [--runs 5]``,
``... failover [--cuts 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from benchinfo import machine  # noqa: E402
from fabric_hops import percentile  # noqa: E402

log = logging.getLogger("bench.fabric")

PROV = "33000000002006000001"
SIM = "33010000002006000099"  # the simulator's own node code (its JetStream domain)


# --- catalogue ---------------------------------------------------------------------------


def county_code(i: int) -> str:
    return f"3301{i:02d}00002006000001"


def entry_code(county: int, n: int) -> str:
    return f"3301{county:02d}0000132{n:07d}"


async def catalogue(endpoints: int, counties: int, changes: int, wire: int) -> dict[str, Any]:
    import nats
    from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource
    from sqlalchemy import func, select

    from netns.fednodes import free_ports, make_ca, node_server
    from vmesh.config import parse_config
    from vmesh.federation import catalogue as cat
    from vmesh.federation.models import CatalogueEntry
    from vmesh.node.context import NodeContext

    tmp = Path(tempfile.mkdtemp(prefix="bench-fabric-cat-"))
    ca = make_ca(tmp)
    p_client, p_mon, p_leaf, s_client, s_mon = free_ports(5)
    prov = node_server(
        tmp, PROV, ca_dir=ca, sans=["127.0.0.1"], client_port=p_client, monitor_port=p_mon,
        leaf_host="127.0.0.1", leaf_port=p_leaf, advertise=f"127.0.0.1:{p_leaf}",
        max_file_mb=8192,
    )  # fmt: skip
    sim = node_server(
        tmp, SIM, ca_dir=ca, sans=["127.0.0.1"], client_port=s_client, monitor_port=s_mon,
        leaf_port=0, parents=(f"nats-leaf://127.0.0.1:{p_leaf}",), max_file_mb=8192,
    )  # fmt: skip
    for server in (prov, sim):  # a loaded box must not get them restarted mid-run
        server.process.spec = dataclasses.replace(
            server.process.spec, health_interval=10.0, health_failures=30
        )
    cfg = parse_config({"node": {"code": PROV, "name": "省", "tier": "province",
                                 "data_dir": str(tmp / "prov-node")}})  # fmt: skip
    ctx = await NodeContext.open(cfg)
    await prov.start()
    await sim.start()
    snc = await nats.connect(sim.client_url)
    pnc = await nats.connect(prov.client_url)
    out: dict[str, Any] = {
        "endpoints": endpoints, "counties": counties, "db": "sqlite", "wire_format": wire,
    }  # fmt: skip
    busy = [0.0, 0]  # seconds inside apply_changes (the transactions), how many

    async def timed_apply(*a: Any, **k: Any) -> tuple[int, int]:
        t = time.perf_counter()
        try:
            return await real_apply(*a, **k)
        finally:
            busy[0] += time.perf_counter() - t
            busy[1] += 1

    real_apply = cat.apply_changes
    cat.apply_changes = timed_apply  # the applier's own function, timed (phase breakdown)
    try:
        sjs = snc.jetstream(timeout=30)
        per = [
            endpoints // counties + (1 if i < endpoints % counties else 0) for i in range(counties)
        ]
        now = datetime.now(UTC)
        messages = 0
        t0 = time.perf_counter()
        for i in range(counties):
            origin = county_code(i + 1)
            await sjs.add_stream(
                StreamConfig(
                    name=cat.stream_name(origin),
                    subjects=[f"{cat.SUBJECT_ROOT}.{origin}.>"],
                    storage=StorageType.FILE,
                    duplicate_window=cat.DUPLICATE_WINDOW_SECONDS,
                )
            )
            county = [
                cat.CatalogueChange(origin, code, 1, now, _entry(origin, code, "v1"))
                for code in (entry_code(i + 1, n + 1) for n in range(per[i]))
            ]
            for n, (subj, body, msg_id) in enumerate(_messages(cat, wire, origin, county)):
                await snc.publish(subj, body, headers={"Nats-Msg-Id": msg_id})
                messages += 1
                if n % 2000 == 1999:  # let the servers' health checks (this loop) run
                    await snc.flush(timeout=60)
            await snc.flush(timeout=60)
        out["messages"] = messages
        total = 0
        while total < messages:
            total = 0
            for i in range(counties):
                info = await sjs.stream_info(cat.stream_name(county_code(i + 1)))
                total += info.state.messages
            await asyncio.sleep(0.2)
        out["published_s"] = round(time.perf_counter() - t0, 2)
        print(f"counties' streams hold {total} messages", file=sys.stderr)

        async def count() -> int:
            async with ctx.db.sessions() as s:
                return int(await s.scalar(select(func.count()).select_from(CatalogueEntry)) or 0)

        pjs = pnc.jetstream(timeout=30)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        await pjs.add_stream(
            StreamConfig(
                name=cat.stream_name(PROV),
                subjects=[f"{cat.SUBJECT_ROOT}.{PROV}.>"],
                storage=StorageType.FILE,
                duplicate_window=cat.DUPLICATE_WINDOW_SECONDS,
                sources=[
                    StreamSource(
                        name=cat.stream_name(county_code(i + 1)),
                        external=ExternalStream(api=f"$JS.{SIM}.API"),
                    )
                    for i in range(counties)
                ],
            )
        )
        applier = cat.CatalogueApplier(ctx.db, pjs, PROV)
        await applier.start()
        task = asyncio.create_task(applier.run())
        sourced = None
        while True:
            if sourced is None:
                with contextlib.suppress(nats.errors.TimeoutError):  # a busy server: next time
                    info = await pjs.stream_info(cat.stream_name(PROV))
                    if info.state.messages >= messages:
                        sourced = time.perf_counter() - t0
            if applier.stats.applied >= endpoints:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.1)
        out["full_sync_s"] = round(time.perf_counter() - t0, 2)
        # This process's CPU over the sync (decoding and applying, both threads; the
        # nats-servers are other processes): less load-dependent than the wall time.
        out["sync_cpu_s"] = round(time.process_time() - cpu0, 2)
        out["sourced_s"] = round(sourced, 2) if sourced is not None else None
        out["rows_at_province"] = await count()
        out["apply_rate_per_s"] = round(endpoints / out["full_sync_s"])
        out["apply_transactions"] = {"n": busy[1], "seconds": round(busy[0], 2)}
        busy[:] = [0.0, 0]

        lat = []
        rng = random.Random(1)
        for k in range(changes):
            i = rng.randrange(counties)
            origin = county_code(i + 1)
            code = entry_code(i + 1, rng.randrange(per[i]) + 1)
            version = 2 + k
            change = cat.CatalogueChange(
                origin, code, version, datetime.now(UTC), _entry(origin, code, f"v{version}")
            )
            t1 = time.perf_counter()
            [(subj, body, msg_id)] = _messages(cat, wire, origin, [change])
            await snc.publish(subj, body, headers={"Nats-Msg-Id": msg_id})
            await snc.flush()
            while True:
                async with ctx.db.sessions() as s:
                    v = await s.scalar(
                        select(CatalogueEntry.version).where(CatalogueEntry.code == code)
                    )
                if v == version:
                    break
                await asyncio.sleep(0.002)
            lat.append((time.perf_counter() - t1) * 1000)
        out["change_ms"] = {
            "n": len(lat),
            "p50": round(percentile(lat, 0.5), 1),
            "p99": round(percentile(lat, 0.99), 1),
            "max": round(max(lat), 1),
        }
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await applier.stop()
    finally:
        cat.apply_changes = real_apply
        await snc.close()
        await pnc.close()
        await sim.stop()
        await prov.stop()
        await ctx.close()
    return out


def _messages(cat: Any, wire: int, origin: str, changes: list[Any]) -> list[tuple[str, bytes, str]]:
    """(subject, body, Nats-Msg-Id) of ``changes`` as the county's publisher sends them: format 2
    (``encode_batch``, what ``CataloguePublisher`` publishes) or format 1, one per entry (what it
    published before, kept for comparison)."""
    if wire == 1:
        return [(cat.subject(origin, c.code), cat.encode(c), c.msg_id) for c in changes]
    return [(cat.batch_subject(origin), b, i) for b, i in cat.encode_batch(origin, changes)]


def _entry(origin: str, code: str, name: str) -> dict[str, Any]:
    return {
        "parent_code": origin[:10] + "2166000001",
        "kind": "camera",
        "tier": None,
        "name": f"camera {code[-7:]} {name}",
        "status": "online",
        "lat": 28.0 + random.random(),
        "lon": 120.0 + random.random(),
        "tags": ["bench"],
        "attrs": {"source": "gb28181"},
    }


# --- latency -------------------------------------------------------------------------------------


async def latency(
    seconds: float, one_process: bool, warmup: float, loop: str, nice: int | None
) -> dict[str, Any]:
    """``fabric_hops.measure``: ``per_process`` (five node processes) and, with ``one_process``,
    the old layout (one process for all five). ``nice``: this process, what it starts and this
    session's scheduler group at that nice value (``bench_switch_udp.set_nice``, as
    ``bench/switch.py --nice``), put back to 0 at the end."""
    from bench_switch_udp import set_nice
    from fabric_hops import CHAIN, measure

    res: dict[str, Any] = {"seconds": seconds, "warmup_s": warmup, "loop": loop, "nice": nice}
    if nice is not None:  # inherited by the node processes and the nats-server
        res["autogroup"] = set_nice(nice)
    layouts = {"per_process": [[c] for c in CHAIN]}
    if one_process:
        layouts["one_process"] = [list(CHAIN)]
    try:
        res |= await measure(layouts, seconds, warmup, loop)
    finally:
        if nice is not None:  # the session's group outlives this process: put it back
            set_nice(0)
    res["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return res


# --- ttff ----------------------------------------------------------------------------------------

TTFF_NODES = {  # name: (code, tier, org unit, org name, parent)
    "prov": ("33000000002006000001", "province", "33000000002166000001", "浙江省", None),
    "city": ("33030000002006000001", "city", "33030000002166000001", "温州市", "prov"),
    "county": ("33032800002006000001", "county", "33032800002166000001", "文成县", "city"),
    "town": ("33032810002006000001", "township", "33032810002166000001", "玉壶镇", "county"),
    "village": ("33032810102006000001", "village", "33032810102166000001", "东溪村", "town"),
}
TTFF_CAMERAS = {"prov": 0, "city": 1, "county": 2, "village": 4}  # camera node: hops
FIRST_FRAME_JS = """async (code) => {
  const old = document.querySelector('[data-testid="tile-0-video"]');
  const prev = old ? old.srcObject : null;
  const t0 = performance.now();
  location.hash = "#/wall/" + code;
  for (;;) {
    await new Promise((r) => requestAnimationFrame(r));
    const v = document.querySelector('[data-testid="tile-0-video"]');
    if (v && v.srcObject && v.srcObject !== prev) {
      return await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(null), 30000);
        v.requestVideoFrameCallback((now, md) => {
          clearTimeout(timer);
          resolve(md.presentationTime - t0);
        });
      });
    }
    if (performance.now() - t0 > 30000) return null;
  }
}"""


def _ttff_camera(name: str) -> str:
    return TTFF_NODES[name][0][:10] + "1320000001"


async def ttff(runs: int) -> dict[str, Any]:
    from netns.fednodes import wait_until
    from netns.lab import Lab
    from netns.vnet import NodeSpec, Topology, camera, console, start_network

    topo = Topology(
        {
            n: NodeSpec(code, tier, org, org_name, (parent,) if parent else ())
            for n, (code, tier, org, org_name, parent) in TTFF_NODES.items()
        },
        media=True,
        linger=1.0,
        channels=2,
        overrides={"media": {"source_linger_seconds": 600}},
    )

    async def setup(name: str, directory: Any, org: str) -> None:
        if name in TTFF_CAMERAS:
            await camera(directory, org, _ttff_camera(name), f"{org_name(name)}摄像机")

    def org_name(name: str) -> str:
        return TTFF_NODES[name][3]

    tmp = Path(tempfile.mkdtemp(prefix="bench-fabric-ttff-"))
    lab = Lab(tuple(TTFF_NODES), root_leg=True).up()
    trials: dict[int, list[float]] = {h: [] for h in TTFF_CAMERAS.values()}
    try:
        net = await start_network(tmp, lab, topo, setup)

        async def known() -> bool:
            for name in TTFF_CAMERAS:
                cam = _ttff_camera(name)
                if name != "prov":
                    page = await net.get("prov", "/api/network/catalogue", code_prefix=cam)
                    if page["total"] != 1:
                        return False
            return True

        await wait_until(known, "every camera in the province's catalogue", within=120)
        async with console(net, "prov") as page:

            async def one(name: str) -> float | None:
                stop = page.get_by_test_id("tile-0-stop")
                if await stop.count() and await stop.is_visible():
                    await stop.click()
                await page.evaluate("() => { location.hash = '#/wall'; }")
                await asyncio.sleep(topo.linger + 2.0)  # the previous path's leases close
                ms = await page.evaluate(FIRST_FRAME_JS, _ttff_camera(name))
                await asyncio.sleep(0.5)
                return ms

            for name in TTFF_CAMERAS:  # warm-up: every source started once
                await one(name)
            order = list(TTFF_CAMERAS)
            rng = random.Random(1)
            for _ in range(runs):
                rng.shuffle(order)
                for name in order:
                    ms = await one(name)
                    if ms is not None:
                        trials[TTFF_CAMERAS[name]].append(round(ms, 1))
    finally:
        lab.down()
    res: dict[str, Any] = {"runs": runs, "by_hops": {}}
    base_ms = statistics.median(trials[0]) if trials[0] else None
    for h, v in trials.items():
        med = statistics.median(v) if v else None
        res["by_hops"][h] = {
            "trials_ms": v,
            "median_ms": med,
            "p90_ms": percentile(v, 0.9) if v else None,
            "ratio_to_0": round(med / base_ms, 2) if med and base_ms else None,
        }
    return res


# --- failover: hot standby, cut after cut -------------------------------------------------------


def _metric(m: dict[str, float], name: str, **labels: str) -> dict[str, float]:
    """The series of ``name`` whose labels include ``labels``: {label text: value}."""
    out = {}
    for key, value in m.items():
        if key.split("{")[0] == name and all(f'{k}="{v}"' in key for k, v in labels.items()):
            out[key] = value
    return out


async def failover(cuts: int) -> dict[str, Any]:
    """The dual-homing topology of ``tests/e2e/test_fabric_dualhome.py`` (province, city, city2,
    county with parents city and city2; Chromium at the province playing the county's camera).
    Before each cut the province's standby leg must be flowing (its ``/metrics``); then the
    county's link to the parent that carries the stream now is blackholed both ways, the gap is
    the longest stretch without a newly decoded frame in the page from the cut on, and the link
    is restored once frames flow again. The next cut takes the other parent's link."""
    from e2e.test_fabric_dualhome import CAM, RECORD_JS, TOPO, _camera
    from netns.fednodes import wait_until
    from netns.lab import Lab
    from netns.vnet import console, start_network

    tmp = Path(tempfile.mkdtemp(prefix="bench-fabric-failover-"))
    lab = Lab(list(TOPO.nodes), root_leg=True).up()
    runs: list[dict[str, Any]] = []
    try:
        net = await start_network(tmp, lab, TOPO, _camera)
        names = {net.code(n): n for n in TOPO.nodes}

        async def known() -> bool:
            page = await net.get("prov", "/api/network/catalogue", code_prefix=CAM)
            return bool(page["total"] == 1)

        await wait_until(known, "the county camera at the province", within=120)
        async with console(net, "prov") as page:
            await page.goto(f"{net.url('prov')}/#/wall/{CAM}")
            await page.wait_for_function(
                """() => Number(document.querySelector('[data-testid="tile-0"]')
                    ?.dataset.framesDecoded || 0) > 30""",
                timeout=60_000,
            )
            await page.evaluate(RECORD_JS)

            async def legs() -> tuple[str, str] | None:
                """(upstream, standby) at the province once the standby leg is flowing."""
                m = await net.metrics("prov")
                ups = _metric(m, "vmesh_fabric_link_in_packets_total", stream=CAM)
                stand = _metric(m, "vmesh_fabric_standby_packets_total", stream=CAM)
                if len(ups) != 1 or len(stand) != 1 or next(iter(stand.values())) <= 0:
                    return None
                up = next(iter(ups)).split('upstream="')[1].split('"')[0]
                sb = next(iter(stand)).split('standby="')[1].split('"')[0]
                return up, sb

            for i in range(cuts):
                up, sb = await wait_until(legs, "a flowing standby leg", within=180)
                await asyncio.sleep(1.0)
                cut_at = await page.evaluate("() => performance.now()")
                net.blackhole("county", names[up], "add")
                try:
                    n0 = await page.evaluate("() => window.__frames.at(-1)[1]")
                    await page.wait_for_function(
                        f"() => window.__frames.at(-1)[1] > {n0 + 50}", timeout=60_000
                    )
                    frames = await page.evaluate("() => window.__frames")
                finally:
                    net.blackhole("county", names[up], "del")
                before = [(t, n) for t, n in frames if t < cut_at][-1:]
                after = before + [(t, n) for t, n in frames if t >= cut_at]
                gap, at = max((t1 - t0, t0) for (t0, _), (t1, _) in itertools.pairwise(after))
                runs.append(
                    {
                        "cut": f"county-{names[up]}",
                        "standby_was": names[sb],
                        "gap_ms": round(gap, 1),
                        "gap_from_cut_ms": round(at - cut_at, 1),
                    }
                )
                log.warning("cut %d: %s", i + 1, runs[-1])
    finally:
        lab.down()
    gaps = [r["gap_ms"] for r in runs]
    return {
        "cuts": runs,
        "gap_median_ms": statistics.median(gaps) if gaps else None,
        "gap_max_ms": max(gaps) if gaps else None,
    }


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("catalogue")
    c.add_argument("--endpoints", type=int, default=1_000_000)
    c.add_argument("--counties", type=int, default=90)
    c.add_argument("--changes", type=int, default=200)
    c.add_argument("--wire-format", type=int, choices=(1, 2), default=2)
    la = sub.add_parser("latency")
    la.add_argument("--seconds", type=float, default=20.0, help="measured window per layout")
    la.add_argument("--warmup", type=float, default=2.0, help="paths open, before the window")
    la.add_argument(
        "--one-process",
        action="store_true",
        help="also the old layout (all five nodes in one process), after the per-process one",
    )
    la.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the node processes' loop"
    )
    la.add_argument(
        "--nice",
        type=int,
        default=None,
        help="this bench, its node processes and nats-server, and this session's scheduler "
        "group at this nice value (negative: root), as bench/switch.py --nice",
    )
    tt = sub.add_parser("ttff")
    tt.add_argument("--runs", type=int, default=5)
    fo = sub.add_parser("failover")
    fo.add_argument("--cuts", type=int, default=5, help="primary links cut, one after the other")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load0 = [round(x, 2) for x in os.getloadavg()]
    run: Callable[[], Any]
    if args.what == "catalogue":
        run = lambda: catalogue(  # noqa: E731
            args.endpoints, args.counties, args.changes, args.wire_format
        )
    elif args.what == "latency":
        run = lambda: latency(  # noqa: E731
            args.seconds, args.one_process, args.warmup, args.loop, args.nice
        )
    elif args.what == "failover":
        run = lambda: failover(args.cuts)  # noqa: E731
    else:
        run = lambda: ttff(args.runs)  # noqa: E731
    result = asyncio.run(run())
    print(
        json.dumps(
            {"bench": f"fabric.{args.what}", "machine": machine(), "loadavg_before": load0}
            | result,
            ensure_ascii=False,
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
