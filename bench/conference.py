"""Conference roll call at the switch level: 100 light receive-only venues on one node.

What is measured: the time from the chair's roll call (the floor's event applied, its plan turned
into switch routes exactly as ``vmesh.conference.service.LiveConference`` does: one
``SwitchTransport.route`` per venue tile) to the first packet of the new speaker's picture at each
venue's UDP socket, p50/p99 over every venue and every roll call; bytes each venue received
(one copy of one stream per venue: no venue gets two) and bytes in per source; CPU and peak memory
of the process (switch, senders and receivers share it).

Set-up, all in this process on loopback: the switch's real UDP transport (``SwitchTransport``,
with its C data plane if built); three publishing venues (the main venue and two sub-venues) sent
as H.264-shaped RTP at 25 fps with a keyframe every 2 s (``bench/switch.py``'s stream), the last
payload byte tagging the venue, so a receiver can tell whose picture arrives after the stable
output SSRC and sequence rewrite; ``--venues`` receive-only venues, each one switch output (its
tile ``v0``) to a UDP socket of its own. The floor (``vmesh.conference.core.Floor``) picks what
each venue's tile shows. Not measured here: Janus and browsers (the browser tests in
``tests/e2e/test_conference_venues.py`` check what Chromium venues decode; a Janus Streaming
mountpoint adds its relay and the browser its jitter buffer).

Run: ``.venv/bin/python bench/conference.py [--venues 100] [--calls 40]``; prints JSON.

``--tiers``: bytes per link of a conference across three tiers instead: the network, venues and
roll call of ``tests/e2e/test_conference_tiers_live.py`` (province ← city ← county as real nodes in
network namespaces, one Chromium per venue at its own node, the county roll-called); over
``--seconds`` the switches' counters of every fabric output (``fabric/<stream>><next node>``) give,
per link and direction, each stream carried, its copies (one expected) and its bytes per second.
Needs root (namespaces), Janus, nats-server and Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchinfo import machine
from switch import stream
from vmesh.conference.core import Floor, Joined, RollCall
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, OutputSpec, Switch
from vmesh.switch.transport import SwitchTransport

FPS = 25
PER_FRAME = 4  # packets per frame in bench/switch.py's stream
SOURCES = ["main", "spk1", "spk2"]
DATAPLANE = os.environ.get("VMESH_DATAPLANE", "1") != "0"


class Venue(asyncio.DatagramProtocol):
    """A receive-only venue: notes when the awaited speaker's first packet arrives."""

    def __init__(self) -> None:
        self.want: int | None = None
        self.t0 = 0.0
        self.got: asyncio.Future[float] | None = None
        self.bytes = 0
        self.tags: set[int] = set()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.bytes += len(data)
        tag = data[-1]
        self.tags.add(tag)
        if self.want is not None and tag == self.want and self.got and not self.got.done():
            self.got.set_result(time.perf_counter() - self.t0)


async def send(port: int, tag: int, packets: list[bytes], stop: asyncio.Event) -> int:
    """Loop ``packets`` as one endless stream (sequence numbers and timestamps carried on, so the
    switch never sees a source restart), tagged with ``tag`` in the last payload byte."""
    loop = asyncio.get_running_loop()
    tr, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
    )
    sent = 0
    start = time.perf_counter()
    i = 0
    while not stop.is_set():
        for _ in range(PER_FRAME):
            p = bytearray(packets[i % len(packets)])
            p[-1] = tag
            struct.pack_into("!HI", p, 2, i & 0xFFFF, (i // PER_FRAME * 3600) & 0xFFFFFFFF)
            tr.sendto(p)
            sent += len(p)
            i += 1
        frame = i // PER_FRAME
        await asyncio.sleep(max(0.0, start + frame / FPS - time.perf_counter()))
    tr.close()
    return sent


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


async def run(n_venues: int, calls: int) -> dict[str, Any]:
    t = SwitchTransport(Switch(), dataplane=DATAPLANE)
    await t.start()
    loop = asyncio.get_running_loop()
    ports = {}
    for s in SOURCES:
        ports[s] = await t.add_input(InputSpec(f"{s}/video", Codec.h264), port=0)
    venues: list[Venue] = []
    for i in range(n_venues):
        v = Venue()
        tr, _ = await loop.create_datagram_endpoint(lambda v=v: v, local_addr=("127.0.0.1", 0))
        port = tr.get_extra_info("sockname")[1]
        await t.add_output(
            OutputSpec(
                f"venue-{i}/video",
                Codec.h264,
                ssrc=0x10000 + i,
                dest=("127.0.0.1", port),
                payload_type=96,
            )
        )
        venues.append(v)
    floor = Floor("main", ["spk1", "spk2"] + [f"venue-{i}" for i in range(n_venues)], layout="1")
    for s in SOURCES:
        floor.apply(Joined(s))
    packets = stream(FPS * 8)
    stop = asyncio.Event()
    senders = [asyncio.create_task(send(ports[s], n, packets, stop)) for n, s in enumerate(SOURCES)]

    def apply() -> None:
        plan = floor.plan()
        for i in range(n_venues):
            src = plan.venues[f"venue-{i}"].video[0]
            t.route(f"venue-{i}/video", f"{src}/video")

    apply()
    await asyncio.sleep(2.5)  # every source has a GOP in the switch's cache
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for v in venues:
        v.bytes = 0
    lat: list[float] = []
    for c in range(calls):
        speaker = SOURCES[1 + c % 2]
        tag = SOURCES.index(speaker)
        t0 = time.perf_counter()
        for v in venues:
            v.want, v.t0, v.got = tag, t0, loop.create_future()
        floor.apply(RollCall(speaker))  # the chair's roll call …
        apply()  # … becomes one route per venue tile
        got = await asyncio.wait_for(asyncio.gather(*(v.got for v in venues if v.got)), 10)
        lat += [x * 1000 for x in got]
        await asyncio.sleep(0.3 + (c % 7) * 0.1)  # another GOP phase next time
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    stop.set()
    sent = await asyncio.gather(*senders)
    received = [v.bytes for v in venues]
    outs = t.switch.snapshot().outputs.values()
    replayed = sum(o.replayed for o in outs)
    send_errors = sum(o.send_errors for o in outs)
    await t.close()
    return {
        "venues": n_venues,
        "roll_calls": calls,
        "switch_ms": {
            "p50": round(statistics.median(lat), 2),
            "p99": round(pct(lat, 0.99), 2),
            "max": round(max(lat), 2),
        },
        "bytes_per_venue_per_s": {
            "min": round(min(received) / wall),
            "max": round(max(received) / wall),
        },
        # GOP replays at the splices, and copies the kernel refused (full socket buffer).
        "replayed_packets": replayed,
        "send_errors": send_errors,
        "bytes_in_per_source_per_s": round(statistics.mean(sent) / (wall + 2.5)),
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "dataplane": t.use_dataplane,
    }


TESTS = Path(__file__).resolve().parents[1] / "tests"


async def tiers(seconds: float) -> dict[str, Any]:
    """Bytes per link of the three-tier conference (see the module docstring)."""
    import re
    import tempfile

    sys.path.insert(0, str(TESTS))
    from e2e.test_conference_tiers_live import COUNTY, TOPO, _venues, start_conference, venue_pages
    from netns.fednodes import wait_until
    from netns.lab import Lab
    from netns.vnet import start_network

    names = {spec.code: n for n, spec in TOPO.nodes.items()}
    out_re = re.compile(r'^vmesh_switch_output_bytes_total\{output="fabric/([^>]+)>(\d{20})"\}$')
    tmp = Path(tempfile.mkdtemp(prefix="bench-conference-tiers-"))
    lab = Lab(tuple(TOPO.nodes), root_leg=True).up()
    try:
        net = await start_network(tmp, lab, TOPO, _venues)
        conf = await start_conference(net)
        async with venue_pages(net, conf, tmp) as _pages:

            async def joined() -> bool:
                c = await net.get("prov", f"/api/conferences/{conf}")
                return {v["status"] for v in c["venues"]} == {"joined"}

            await wait_until(joined, "every venue joined", 120)
            action = {"action": "roll_call", "venue": COUNTY}
            await net.send("prov", "POST", f"/api/conferences/{conf}/actions", action)
            await asyncio.sleep(8)  # the roll call's streams opened along the tree

            async def sample() -> dict[tuple[str, str, str], float]:
                got: dict[tuple[str, str, str], float] = {}
                for n in TOPO.nodes:
                    for k, v in (await net.metrics(n)).items():
                        m = out_re.match(k)
                        if m:
                            got[(n, names.get(m.group(2), m.group(2)), m.group(1))] = v
                return got

            first, t0 = await sample(), time.monotonic()
            await asyncio.sleep(seconds)
            last, dt = await sample(), time.monotonic() - t0
    finally:
        lab.down()
    links: dict[str, dict[str, Any]] = {}
    for (frm, to, code), v in sorted(last.items()):
        link = links.setdefault(f"{frm}->{to}", {"streams": {}, "kB_per_s": 0.0})
        rate = (v - first.get((frm, to, code), 0.0)) / dt / 1000
        entry = link["streams"].setdefault(code, {"copies": 0, "kB_per_s": 0.0})
        entry["copies"] += 1
        entry["kB_per_s"] = round(entry["kB_per_s"] + rate, 1)
        link["kB_per_s"] = round(link["kB_per_s"] + rate, 1)
    return {"seconds": round(dt, 1), "links": links}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--venues", type=int, default=100)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--tiers", action="store_true", help="bytes per link across three tiers")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    load0 = [round(x, 2) for x in os.getloadavg()]
    if args.tiers:
        result = asyncio.run(tiers(args.seconds))
        result["loadavg_before"] = load0
    else:
        result = asyncio.run(run(args.venues, args.calls))
    result["machine"] = machine()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
