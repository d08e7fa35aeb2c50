"""Service desk under load: 200 village kiosks waiting, 20 agents taking them one after another.

What is measured, in one process on loopback:

- **accept → first frames, both sides**: from the agent's accept (the case moved to in_service in
  the database through ``vmesh.servicedesk.service.ServiceDesk.accept``, audited) to the first
  packet of the other side's picture at each side's UDP socket, after the call is routed through
  the switch (``SwitchTransport``, C data plane if built) as ``vmesh.media.publish`` does: the
  kiosk's input to the agent's output and the agent's input to the kiosk's output. The kiosk
  starts sending at accept (its page learns of the call and publishes), starting with a keyframe;
  the agent's seat sends all along (the switch replays its cached GOP). p50/p99 over every call.
- **queue-position update latency**: from the accept's commit to the moment every waiting kiosk's
  live-update subscriber (what ``/api/servicedesk/ws?case=`` forwards) holds its new position;
  p50/p99 over every waiting kiosk and every accept.
- where that time goes: ``accept_transaction_ms`` (the accept's database transaction with its
  case history and audit rows, to the commit) and ``routed_to_both_first_packets_ms`` (from both
  routes set in the switch to both sides' first packet: GOP replay of the seat, the kiosk's first
  packet).
- CPU (share of one core) and peak RSS of the process.

Set-up: a node context on SQLite in a temporary folder, the sample catalogue, 200 kiosks (service
rooms) in 200 villages under one county, 20 agents each with a seat, all serving the pension
queue; 200 cases created, identified and queued. Agents accept in turn (``--accepts``, default
100); each agent holds its call until its next turn, so 20 calls run at once (20 kiosk and 20 seat
streams at 25 fps). Not measured: Janus and browsers (tests/e2e/test_servicedesk_flow.py checks
what Chromium decodes; a Janus hop adds its relay, the browser its jitter buffer and decoder).

Run: ``.venv/bin/python bench/servicedesk.py [--kiosks 200] [--agents 20] [--accepts 100]``;
prints JSON.
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
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchinfo import machine
from switch import stream
from vmesh.auth.principal import Principal
from vmesh.config import parse_config
from vmesh.directory.models import Entry
from vmesh.identity.codes import compose
from vmesh.node.context import NodeContext
from vmesh.servicedesk.catalogue import import_catalogue, load_sample
from vmesh.servicedesk.idcard import SAMPLE_CARDS
from vmesh.servicedesk.service import SYSTEM, ServiceDesk, Subscriber
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, OutputSpec, Switch
from vmesh.switch.transport import SwitchTransport

FPS = 25
PER_FRAME = 4
ITEM = "rsj-pension-statement"
DATAPLANE = os.environ.get("VMESH_DATAPLANE", "1") != "0"


class Sink(asyncio.DatagramProtocol):
    """One side's receiving socket: notes when the first packet after ``arm`` arrives."""

    def __init__(self) -> None:
        self.got: asyncio.Future[float] | None = None

    def arm(self) -> asyncio.Future[float]:
        self.got = asyncio.get_running_loop().create_future()
        return self.got

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.got is not None and not self.got.done():
            self.got.set_result(time.perf_counter())


async def send(port: int, packets: list[bytes], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    tr, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
    )
    start, i = time.perf_counter(), 0
    while not stop.is_set():
        for _ in range(PER_FRAME):
            p = bytearray(packets[i % len(packets)])
            struct.pack_into("!HI", p, 2, i & 0xFFFF, (i // PER_FRAME * 3600) & 0xFFFFFFFF)
            tr.sendto(p)
            i += 1
        await asyncio.sleep(max(0.0, start + (i // PER_FRAME) / FPS - time.perf_counter()))
    tr.close()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


async def site(ctx: NodeContext, kiosks: int, agents: int) -> tuple[list[str], list[str]]:
    """Province → city → county → ``kiosks`` villages with a service room each; ``agents`` seats."""
    now = datetime.now(UTC)
    rows: list[tuple[str, str | None, str, str | None, str]] = [
        (compose("33000000", "216", 1), None, "region", "province", "浙江省"),
        (compose("33040000", "216", 1), compose("33000000", "216", 1), "region", "city", "嘉兴市"),
        (
            compose("33048300", "216", 1),
            compose("33040000", "216", 1),
            "region",
            "county",
            "桐乡市",
        ),
    ]
    county = compose("33048300", "216", 1)
    rooms, seats = [], []
    for n in range(kiosks):
        village = compose("33048301", "216", 100 + n)
        room = compose("33048301", "401", 100 + n)
        rows += [
            (village, county, "region", "village", f"村{n:03d}"),
            (room, village, "service_room", None, f"村{n:03d}视频室"),
        ]
        rooms.append(room)
    for n in range(agents):
        seat = compose("33048300", "401", 1 + n)
        rows.append((seat, county, "service_room", None, f"{n + 1}号窗口"))
        seats.append(seat)
    paths: dict[str, tuple[int, str]] = {}
    async with ctx.db.transaction() as s:
        for i, (code, parent, kind, tier, name) in enumerate(rows, start=1):
            pid, ppath = paths[parent] if parent else (None, "/")
            path = f"{ppath}{i}/"
            paths[code] = (i, path)
            s.add(
                Entry(
                    id=i,
                    code=code,
                    parent_id=pid,
                    path=path,
                    kind=kind,
                    tier=tier,
                    name=name,
                    lat=None,
                    lon=None,
                    tags="",
                    status="online",
                    last_seen=None,
                    attrs="{}",
                    version=1,
                    updated_at=now,
                )
            )
    return rooms, seats


async def run(n_kiosks: int, n_agents: int, accepts: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vmesh-bench-sd-"))
    cfg = parse_config(
        {
            "node": {
                "code": compose("33048300", "200", 1),
                "name": "桐乡市节点",
                "tier": "county",
                "data_dir": str(tmp),
            }
        }
    )
    ctx = await NodeContext.open(cfg)
    rooms, seats = await site(ctx, n_kiosks, n_agents)
    admin = Principal(0, "admin", frozenset({"admin"}), "", "/")
    await import_catalogue(ctx.audit, SYSTEM, load_sample())
    desk = ServiceDesk(ctx)
    agents = []
    for n, seat in enumerate(seats):
        await desk.set_agent(admin, f"agent{n}", {"social": 1}, seat)
        agents.append(Principal(0, f"agent{n}", frozenset({"agent"}), "", "/"))
    kiosk_user = Principal(0, "kiosk", frozenset({"operator"}), "", "/")
    from vmesh.servicedesk.idcard import IdCard

    card = SAMPLE_CARDS[0]
    cases: dict[int, str] = {}
    t_fill = time.perf_counter()
    for room in rooms:
        c = await desk.create(kiosk_user, room, ITEM)
        await desk.identify(kiosk_user, c["id"], IdCard(card.name, card.id_number))
        await desk.enqueue(kiosk_user, c["id"])
        cases[c["id"]] = room
    fill_s = time.perf_counter() - t_fill

    # Live updates: one subscriber per waiting kiosk, its last message's arrival noted.
    subs: dict[int, Subscriber] = {}
    seen: dict[int, tuple[float, Any]] = {}

    async def drain(cid: int, sub: Subscriber) -> None:
        while True:
            msg = await sub.queue.get()
            seen[cid] = (time.perf_counter(), msg.get("position"))

    drains = []
    for cid in cases:
        sub = Subscriber(kiosk_user, case_id=cid)
        desk.subscribe(sub)
        subs[cid] = sub
        drains.append(asyncio.create_task(drain(cid, sub)))
    await asyncio.sleep(1.0)

    # The switch: a seat input and output per agent (seats publish all along), kiosk inputs and
    # outputs made as their calls start.
    t = SwitchTransport(Switch(), dataplane=DATAPLANE)
    await t.start()
    loop = asyncio.get_running_loop()
    packets = stream(FPS * 8)
    stop_all = asyncio.Event()
    seat_port, seat_sink = {}, {}
    senders = []
    for seat in seats:
        seat_port[seat] = await t.add_input(InputSpec(f"{seat}/video", Codec.h264), port=0)
        sink = Sink()
        tr, _ = await loop.create_datagram_endpoint(lambda s=sink: s, local_addr=("127.0.0.1", 0))
        await t.add_output(
            OutputSpec(
                f"desk-{seat}/video",
                Codec.h264,
                ssrc=len(seat_sink) + 1,
                dest=("127.0.0.1", tr.get_extra_info("sockname")[1]),
                payload_type=96,
            )
        )
        seat_sink[seat] = sink
        senders.append(asyncio.create_task(send(seat_port[seat], packets, stop_all)))
    await asyncio.sleep(2.5)  # every seat has a GOP in the switch's cache

    calls: dict[str, tuple[int, asyncio.Event]] = {}
    to_agent, to_kiosk, positions_ms = [], [], []
    accept_ms, routed_to_frames_ms = [], []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for n in range(accepts):
        agent = agents[n % n_agents]
        seat = seats[n % n_agents]
        if seat in calls:  # the agent's previous call ends
            old, stop = calls.pop(seat)
            stop.set()
            t.unroute(f"desk-{seat}/video")
            t.unroute(f"kiosk-{old}/video")
            await desk.escalate(agent, old, "bench: call ends")
        # Positions before the accept; the accepted case's followers each move up by one.
        before = {w: seen[w][1] for w in subs if w in seen}
        t0 = time.perf_counter()
        c = await desk.accept(agent, None)
        committed = time.perf_counter()
        cid = c["id"]
        room = cases[cid]
        # The kiosk publishes: its input, its output (towards the kiosk page), both routes.
        kport = await t.add_input(InputSpec(f"{room}/video", Codec.h264), port=0)
        ksink = Sink()
        tr, _ = await loop.create_datagram_endpoint(lambda s=ksink: s, local_addr=("127.0.0.1", 0))
        await t.add_output(
            OutputSpec(
                f"kiosk-{cid}/video",
                Codec.h264,
                ssrc=10_000 + cid,
                dest=("127.0.0.1", tr.get_extra_info("sockname")[1]),
                payload_type=96,
            )
        )
        got_agent, got_kiosk = seat_sink[seat].arm(), ksink.arm()
        t.route(f"desk-{seat}/video", f"{room}/video")
        t.route(f"kiosk-{cid}/video", f"{seat}/video")
        stop = asyncio.Event()
        senders.append(asyncio.create_task(send(kport, packets, stop)))
        calls[seat] = (cid, stop)
        routed = time.perf_counter()
        a, k = await asyncio.wait_for(asyncio.gather(got_agent, got_kiosk), 10)
        to_agent.append((a - t0) * 1000)
        to_kiosk.append((k - t0) * 1000)
        # Where the time goes: the accept's transaction, then the switch to both first packets.
        accept_ms.append((committed - t0) * 1000)
        routed_to_frames_ms.append((max(a, k) - routed) * 1000)
        # Every kiosk still waiting has its new position.
        waiting = [w for w in before if w != cid and before[w] and before[w] > before[cid]]
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline:
            if all(seen[w][1] == before[w] - 1 for w in waiting):
                break
            await asyncio.sleep(0.002)
        positions_ms += [(seen[w][0] - committed) * 1000 for w in waiting]
        subs.pop(cid, None)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    stop_all.set()
    for _, stop in calls.values():
        stop.set()
    await asyncio.gather(*senders)
    for d in drains:
        d.cancel()
    await desk.stop()
    await t.close()
    await ctx.close()

    def summary(xs: list[float]) -> dict[str, float]:
        return {
            "p50": round(statistics.median(xs), 2),
            "p99": round(pct(xs, 0.99), 2),
            "max": round(max(xs), 2),
            "n": len(xs),
        }

    return {
        "kiosks_waiting": n_kiosks,
        "agents": n_agents,
        "accepts": accepts,
        "queue_fill_s": round(fill_s, 2),
        "accept_to_first_frame_ms": {
            "agent_sees_kiosk": summary(to_agent),
            "kiosk_sees_agent": summary(to_kiosk),
        },
        "accept_transaction_ms": summary(accept_ms),
        "routed_to_both_first_packets_ms": summary(routed_to_frames_ms),
        "queue_position_update_ms": summary(positions_ms),
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "dataplane": t.use_dataplane,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiosks", type=int, default=200)
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--accepts", type=int, default=100)
    args = ap.parse_args()
    result = asyncio.run(run(args.kiosks, args.agents, args.accepts))
    result["machine"] = machine()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
