"""Conference roll call: 100 light receive-only venues at the switch, and Chromium venues.

Default mode, what is measured: the time from the chair's roll call (the floor's event applied,
its plan turned into switch routes exactly as ``vmesh.conference.service.LiveConference`` does:
one ``SwitchTransport.route`` per venue tile, ``Replay.keyframe`` as ``feed_channel`` routes) to
the new speaker's **first frame** at each venue's UDP socket (its first packet: the replayed
keyframe) and to its **live** picture (the first packet of a later frame), p50/p99 over every
venue and every roll call; bytes each venue received (one copy of one stream per venue: about
one source's bytes) and bytes in per source; CPU and peak memory of the switch's process and of
the receivers' process.

Set-up, on loopback: the switch's real UDP transport (``SwitchTransport``, with its C data plane
if built) in this process; three publishing venues (the main venue and two sub-venues) sent as
H.264-shaped RTP at 25 fps with a keyframe every 2 s (``bench/switch.py``'s stream), the last
payload byte tagging the venue, each answering the switch's PLI with a keyframe at its next
frame (as a browser behind Janus does; ``--no-pli``: they ignore it); ``--venues`` receive-only
venues, each one switch output (its tile ``v0``) to a UDP socket of its own, all read by a
second process (``Receivers``). ``--replay gop`` splices as ordinary viewers do (the whole cached
GOP replayed to every venue at once), for comparison.

Run: ``.venv/bin/python bench/conference.py [--venues 100] [--calls 40] [--replay gop]``; prints
JSON.

``--tiers``: the network, venues and roll call of ``tests/e2e/test_conference_tiers_live.py``
(province ← city ← county as real nodes in network namespaces, one Chromium per venue at its own
node with a fake camera of its own colour, the county roll-called). Over ``--seconds`` the
switches' counters of every fabric output (``fabric/<stream>><next node>``) give, per link and
direction, each stream carried, its copies (one expected) and its bytes per second, and each
node's CPU and memory (``vmesh node run`` with its Janus and nats-server). Then ``--calls`` roll
calls (city and county in turn), each a click on the chair's page at the host (its roll-call
button, as a chair does; the page sends the action to the host's API): each other venue's page
times, on its own clock, the first video frame of its big tile presented in the called venue's
colour (``requestVideoFrameCallback``), from the click; ``roll_call_api_answer_ms`` is the chair
page's request to its answer (the browser's resource timing). ``--venues-alongside`` runs the
default mode with ``--venues`` light venues in a second process at the same time (same machine,
its own switch). Needs root (namespaces), Janus, nats-server and Chromium.
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
from vmesh.switch.core import InputSpec, KeyframeRequest, OutputSpec, Replay, Switch
from vmesh.switch.rtcp import RtcpPli, parse_compound
from vmesh.switch.transport import SwitchTransport

FPS = 25
PER_FRAME = 4  # packets per frame in bench/switch.py's stream
SOURCES = ["main", "spk1", "spk2"]
DATAPLANE = os.environ.get("VMESH_DATAPLANE", "1") != "0"


class Receivers:
    """The light receive-only venues, in a process of their own (so their Python receive loop
    does not share a core's time slice with the switch): one UDP socket per venue, drained with
    a selector. For each roll call (``want(tag)``) every venue notes its **first frame** (the
    first packet of the new speaker's picture) and its **live** picture (the first packet of a
    later frame of that speaker, by RTP timestamp: after the replayed keyframe, the live
    stream)."""

    def __init__(self, n: int) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=self._main, args=(n, child), daemon=True)
        self.proc.start()
        self.ports: list[int] = self.conn.recv()

    @staticmethod
    def _main(n: int, conn: Any) -> None:
        import selectors
        import socket

        socks = []
        for _ in range(n):
            so = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            so.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            so.bind(("127.0.0.1", 0))
            so.setblocking(False)
            socks.append(so)
        conn.send([so.getsockname()[1] for so in socks])
        sel = selectors.DefaultSelector()
        for i, so in enumerate(socks):
            sel.register(so, selectors.EVENT_READ, i)
        sel.register(conn, selectors.EVENT_READ, -1)
        received = [0] * n
        tags: list[set[int]] = [set() for _ in range(n)]
        want: int | None = None
        t0 = deadline = 0.0
        first: list[float | None] = [None] * n
        live: list[float | None] = [None] * n
        first_ts = [0] * n
        while True:
            for key, _ in sel.select(0.05):
                i = key.data
                if i == -1:
                    msg = conn.recv()
                    if msg[0] == "stop":
                        usage = resource.getrusage(resource.RUSAGE_SELF)
                        cpu = usage.ru_utime + usage.ru_stime
                        conn.send((received, [sorted(t) for t in tags], cpu, usage.ru_maxrss))
                        return
                    if msg[0] == "reset":
                        received = [0] * n
                        continue
                    want, t0 = msg[1], msg[2]
                    deadline = time.perf_counter() + 10
                    first, live = [None] * n, [None] * n
                    continue
                so = socks[i]
                while True:
                    try:
                        data = so.recv(2048)
                    except BlockingIOError:
                        break
                    now = time.perf_counter()
                    received[i] += len(data)
                    tag = data[-1]
                    tags[i].add(tag)
                    if want is None or tag != want:
                        continue
                    ts = struct.unpack_from("!I", data, 4)[0]
                    if first[i] is None:
                        first[i], first_ts[i] = now, ts
                    elif live[i] is None and 1800 <= (ts - first_ts[i]) & 0xFFFFFFFF < 1 << 31:
                        live[i] = now
            if want is not None and (all(live) or time.perf_counter() > deadline):
                conn.send(
                    (
                        [None if x is None else x - t0 for x in first],
                        [None if x is None else x - t0 for x in live],
                    )
                )
                want = None

    async def roll_call(self, tag: int, t0: float) -> tuple[list[float | None], list[float | None]]:
        self.conn.send(("want", tag, t0))
        return await asyncio.to_thread(self.conn.recv)

    def reset(self) -> None:
        self.conn.send(("reset",))

    def stop(self) -> tuple[list[int], list[list[int]], float, int]:
        self.conn.send(("stop",))
        out = self.conn.recv()
        self.proc.join(5)
        return out  # type: ignore[no-any-return]


class Sender(asyncio.DatagramProtocol):
    """A publishing venue: loops ``packets`` as one endless stream (sequence numbers and
    timestamps carried on, so the switch never sees a source restart), tagged with ``tag`` in the
    last payload byte, and answers a PLI with a keyframe at its next frame (as a browser behind
    Janus does; ``--no-pli``: it ignores them, as most cameras do)."""

    def __init__(self, answer_pli: bool) -> None:
        self.answer_pli = answer_pli
        self.key_next = False
        self.plis = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if any(isinstance(p, RtcpPli) for p in parse_compound(data)):
            self.plis += 1
            self.key_next = self.answer_pli

    async def send(self, port: int, tag: int, packets: list[bytes], stop: asyncio.Event) -> int:
        assert self.transport is not None
        sent = 0
        start = time.perf_counter()
        frame = 0
        seq = 0
        while not stop.is_set():
            base = (frame % (len(packets) // PER_FRAME)) * PER_FRAME
            if self.key_next:  # the stream's first frame is a keyframe
                base, self.key_next = 0, False
            for k in range(PER_FRAME):
                p = bytearray(packets[base + k])
                p[-1] = tag
                struct.pack_into("!HI", p, 2, seq & 0xFFFF, (frame * 3600) & 0xFFFFFFFF)
                self.transport.sendto(p, ("127.0.0.1", port))
                sent += len(p)
                seq += 1
            frame += 1
            await asyncio.sleep(max(0.0, start + frame / FPS - time.perf_counter()))
        return sent


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def spread(xs: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(xs), 1),
        "p99": round(pct(xs, 0.99), 1),
        "max": round(max(xs), 1),
    }


async def run(n_venues: int, calls: int, replay: Replay, answer_pli: bool) -> dict[str, Any]:
    t = SwitchTransport(Switch(), dataplane=DATAPLANE)
    await t.start()
    loop = asyncio.get_running_loop()
    rx = Receivers(n_venues)
    ports, senders = {}, {}
    for s in SOURCES:
        tr, snd = await loop.create_datagram_endpoint(
            lambda: Sender(answer_pli), local_addr=("127.0.0.1", 0)
        )
        senders[s] = snd
        spec = InputSpec(
            f"{s}/video",
            Codec.h264,
            keyframe_request=KeyframeRequest.pli,
            rtcp_dest=("127.0.0.1", tr.get_extra_info("sockname")[1]),
        )
        ports[s] = await t.add_input(spec, port=0)
    for i, port in enumerate(rx.ports):
        await t.add_output(
            OutputSpec(
                f"venue-{i}/video",
                Codec.h264,
                ssrc=0x10000 + i,
                dest=("127.0.0.1", port),
                payload_type=96,
            )
        )
    floor = Floor("main", ["spk1", "spk2"] + [f"venue-{i}" for i in range(n_venues)], layout="1")
    for s in SOURCES:
        floor.apply(Joined(s))
    packets = stream(FPS * 8)
    stop = asyncio.Event()
    sending = [
        asyncio.create_task(senders[s].send(ports[s], n, packets, stop))
        for n, s in enumerate(SOURCES)
    ]

    def apply() -> None:
        plan = floor.plan()
        for i in range(n_venues):
            src = plan.venues[f"venue-{i}"].video[0]
            t.route(f"venue-{i}/video", f"{src}/video", replay)

    apply()
    await asyncio.sleep(2.5)  # every source has a GOP in the switch's cache
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, wall0 = usage0.ru_utime + usage0.ru_stime, time.perf_counter()
    rx.reset()
    first: list[float] = []
    live: list[float] = []
    missing = 0
    for c in range(calls):
        speaker = SOURCES[1 + c % 2]
        tag = SOURCES.index(speaker)
        t0 = time.perf_counter()
        floor.apply(RollCall(speaker))  # the chair's roll call …
        apply()  # … becomes one route per venue tile
        f, lv = await rx.roll_call(tag, t0)
        first += [x * 1000 for x in f if x is not None]
        live += [x * 1000 for x in lv if x is not None]
        missing += sum(x is None for x in lv)
        await asyncio.sleep(0.3 + (c % 7) * 0.1)  # another GOP phase next time
    wall = time.perf_counter() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage1.ru_utime + usage1.ru_stime - cpu0
    stop.set()
    sent = await asyncio.gather(*sending)
    received, tags, rx_cpu, rx_rss = rx.stop()
    outs = t.switch.snapshot().outputs.values()
    replayed = sum(o.replayed for o in outs)
    send_errors = sum(o.send_errors for o in outs)
    await t.close()
    return {
        "venues": n_venues,
        "roll_calls": calls,
        "replay": str(replay),
        "sources_answer_pli": answer_pli,
        # the chair's roll call -> the new speaker's first frame at each venue, and its live
        # picture (the first later frame), over every venue and roll call
        "first_frame_ms": spread(first),
        "live_ms": spread(live) if live else None,
        "venues_without_live_picture_within_10s": missing,
        "bytes_per_venue_per_s": {
            "min": round(min(received) / wall),
            "max": round(max(received) / wall),
        },
        # one copy of one stream per venue: its bytes over one source's (replays add a little);
        # the sources (tags) each venue received over the run
        "copies_per_venue": round(min(received) / wall / (statistics.mean(sent) / (wall + 2.5)), 2),
        "sources_seen_per_venue": sorted({len(x) for x in tags}),
        # packets sent at the splices, and copies the kernel refused (full socket buffer)
        "replayed_packets_per_venue_per_roll_call": round(replayed / n_venues / (calls + 1), 1),
        "send_errors": send_errors,
        "keyframe_requests_answered": sum(x.plis for x in senders.values()),
        "bytes_in_per_source_per_s": round(statistics.mean(sent) / (wall + 2.5)),
        "switch_process": {
            "cpu_share_of_one_core": round(cpu / wall, 3),
            "max_rss_mb": round(usage1.ru_maxrss / 1024, 1),
        },
        "receivers_process": {
            "cpu_share_of_one_core": round(rx_cpu / (wall + 2.5), 3),
            "max_rss_mb": round(rx_rss / 1024, 1),
        },
        "dataplane": t.use_dataplane,
    }


TESTS = Path(__file__).resolve().parents[1] / "tests"


def node_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, resident MB) of a node: its ``vmesh node run`` and every process under it
    (Janus, nats-server, ffmpeg)."""
    import psutil

    root = psutil.Process(pid)
    cpu = rss = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return cpu, rss


async def tiers(seconds: float, calls: int, light: int) -> dict[str, Any]:
    """Bytes per link of the three-tier conference, then ``calls`` roll calls timed in the
    Chromium venues, with ``light`` light venues of ``run`` alongside (see the module
    docstring)."""
    import contextlib
    import dataclasses
    import re
    import tempfile

    from playwright.async_api import async_playwright

    from vmesh.config import FabricConfig

    sys.path.insert(0, str(TESTS))
    from e2e.console_node import CHROMIUM, async_log_in
    from e2e.fake_devices import IS_COLOUR_JS, PALETTE
    from e2e.test_conference_tiers_live import (
        CITY,
        COUNTY,
        TOPO,
        _venues,
        media,
        start_conference,
        venue_pages,
    )
    from netns.fednodes import wait_until
    from netns.lab import Lab
    from netns.vnet import PASSWORD, start_network

    # Resolves with the page's wall clock (ms) at the first video frame of the tile presented in
    # the wanted colour (requestVideoFrameCallback: each frame as the page shows it).
    first_colour_js = f"""([sel, want, palette]) => new Promise((resolve) => {{
        const isColour = {IS_COLOUR_JS};
        const v = document.querySelector(sel);
        const step = () => isColour([sel, want, palette]) ? resolve(Date.now())
            : v.requestVideoFrameCallback(step);
        v.requestVideoFrameCallback(step);
    }})"""
    names = {spec.code: n for n, spec in TOPO.nodes.items()}
    out_re = re.compile(r'^vmesh_switch_output_bytes_total\{output="fabric/([^>]+)>(\d{20})"\}$')
    tmp = Path(tempfile.mkdtemp(prefix="bench-conference-tiers-"))
    lab = Lab(tuple(TOPO.nodes), root_leg=True).up()
    roll: list[dict[str, Any]] = []
    light_result: Any = None
    try:
        # The fabric's lease linger as a node has it by default (the test's is 2 s, to end its
        # streams quickly): roll calls back and forth keep the venues' streams carried.
        topo = dataclasses.replace(TOPO, linger=FabricConfig().linger_seconds)
        net = await start_network(tmp, lab, topo, _venues)
        conf = await start_conference(net)
        async with venue_pages(net, conf, tmp) as pages, contextlib.AsyncExitStack() as stack:

            async def joined() -> bool:
                c = await net.get("prov", f"/api/conferences/{conf}")
                return {v["status"] for v in c["venues"]} == {"joined"}

            await wait_until(joined, "every venue joined", 120)
            action = {"action": "roll_call", "venue": COUNTY}
            await net.send("prov", "POST", f"/api/conferences/{conf}/actions", action)
            # The chair's page at the host, in a browser of its own (a chair's PC; a second page
            # in the main venue's browser would put the venue's page in a background tab, whose
            # rendering Chromium throttles): the roll calls are its clicks.
            pw = await stack.enter_async_context(async_playwright())
            chair_browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
            stack.push_async_callback(chair_browser.close)
            chair = await (await chair_browser.new_context()).new_page()
            await async_log_in(chair, net.url("prov"), "admin-prov", PASSWORD)
            await chair.goto(f"{net.url('prov')}/#/chair/{conf}")
            for v in (CITY, COUNTY):
                await chair.get_by_test_id(f"chair-rollcall-{v}").wait_for()
            await asyncio.sleep(8)  # the roll call's streams opened along the tree

            async def sample() -> dict[tuple[str, str, str], float]:
                got: dict[tuple[str, str, str], float] = {}
                for n in TOPO.nodes:
                    for k, v in (await net.metrics(n)).items():
                        m = out_re.match(k)
                        if m:
                            got[(n, names.get(m.group(2), m.group(2)), m.group(1))] = v
                return got

            usage0 = {n: node_usage(p.pid) for n, p in net.procs.items()}
            first, t0 = await sample(), time.monotonic()
            await asyncio.sleep(seconds)
            last, dt = await sample(), time.monotonic() - t0
            usage1 = {n: node_usage(p.pid) for n, p in net.procs.items()}

            # Roll calls, city and county in turn; the two other venues time the new colour.
            proc = None
            if light:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--venues", str(light), "--calls", str(4 * calls),
                    stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
            who = {CITY: ("city", "green"), COUNTY: ("county", "blue")}
            for c in range(calls):
                venue = CITY if c % 2 == 0 else COUNTY
                called, colour = who[venue]
                watchers = [n for n in ("prov", "city", "county") if n != called]
                waits = [
                    asyncio.ensure_future(
                        pages[n].evaluate(first_colour_js, [media("v0"), colour, PALETTE])
                    )
                    for n in watchers
                ]
                await asyncio.sleep(0.2)  # the pages are waiting
                # Each watcher's receive delay in its big tile just before (the jitter buffer's
                # delay over the last second, from the tile's getStats sampling).
                delays = {
                    n: await pages[n].evaluate(
                        "(s) => document.querySelector(s)?.closest('[data-delay-ms]')"
                        "?.dataset.delayMs",
                        media("v0"),
                    )
                    for n in watchers
                }
                await chair.evaluate("() => performance.clearResourceTimings()")
                # The click on the chair's page, on its wall clock (the venues' pages run on the
                # same machine's clock).
                t_click = await chair.evaluate(
                    "(s) => { const t = Date.now(); document.querySelector(s).click(); return t; }",
                    f'[data-testid="chair-rollcall-{venue}"]',
                )
                shown = await asyncio.wait_for(asyncio.gather(*waits), 30)
                # The host's answer to the page's request (its fetch, from the page's timing).
                answered = await chair.evaluate(
                    """() => new Promise((resolve) => {
                        const done = () => performance.getEntriesByType("resource")
                            .filter((e) => e.name.endsWith("/actions") && e.responseEnd > 0);
                        const poll = () => done().length ? resolve(done()[0].responseEnd
                            - done()[0].startTime) : setTimeout(poll, 20);
                        poll();
                    })"""
                )
                roll.append(
                    {"venue": called, "api": round(answered)}
                    | {n: round(t - t_click) for n, t in zip(watchers, shown, strict=True)}
                    | {"jitter_buffer_ms_before": delays}
                )
                await asyncio.sleep(1.0 + (c % 5) * 0.3)  # another GOP phase next time
            if proc is not None:
                out, _ = await proc.communicate()
                light_result = json.loads(out)
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
    nodes = {
        n: {
            "cpu_share_of_one_core": round((usage1[n][0] - usage0[n][0]) / dt, 3),
            "rss_mb": round(usage1[n][1]),
        }
        for n in usage1
    }
    skip = ("venue", "api", "jitter_buffer_ms_before")
    times = [float(v) for r in roll for k, v in r.items() if k not in skip]
    out: dict[str, Any] = {"seconds": round(dt, 1), "links": links, "nodes": nodes}
    if roll:
        out["chromium_roll_call_ms"] = spread(times) | {"calls": roll}
        out["roll_call_api_answer_ms"] = spread([float(r["api"]) for r in roll])
    if light_result is not None:
        out["light_venues_alongside"] = light_result
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--venues", type=int, default=100)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument(
        "--tiers", action="store_true",
        help="bytes per link across three tiers, roll calls timed in Chromium venues",
    )  # fmt: skip
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument(
        "--replay", choices=[r.value for r in Replay], default="keyframe",
        help="the splice: keyframe (what conferences use) or gop (the ordinary viewers' one)",
    )  # fmt: skip
    ap.add_argument("--no-pli", action="store_true", help="sources ignore keyframe requests")
    ap.add_argument(
        "--venues-alongside", action="store_true",
        help="--tiers: run --venues light venues (a second process) during the roll calls",
    )  # fmt: skip
    args = ap.parse_args()
    load0 = [round(x, 2) for x in os.getloadavg()]
    if args.tiers:
        light = args.venues if args.venues_alongside else 0
        result = asyncio.run(tiers(args.seconds, args.calls, light))
        result["loadavg_before"] = load0
    else:
        result = asyncio.run(run(args.venues, args.calls, Replay(args.replay), not args.no_pli))
        result["loadavg_before"] = load0
    result["machine"] = machine()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
