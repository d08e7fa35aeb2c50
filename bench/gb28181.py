"""GB/T 28181 benchmarks (issue 5): registrar load, REGISTER storm, PS demux, TTFF in Chromium.

``registrar``: the node's real ``GbService`` (SIP over UDP, SQLite directory, audit) runs in this
process, pinned to one core; a driver process (``driver``, pinned to the other core) plays
``--devices`` devices over a handful of UDP sockets with the project's sans-IO SIP core: each
registers with digest (401, then the answer), answers the platform's Catalog / DeviceInfo /
DeviceStatus queries and its SUBSCRIBE as a device would. Phases, each timed in the server's CPU
seconds (``time.process_time``) and wall time:

- ``first``: every device registers for the first time (the devices are imported into the
  directory beforehand, as operators do; ``--no-preimport``: the registrar creates each entry);
  the registration is stored and audited, then the device is queried;
- ``storm``: every device registers again at once (what follows a platform or network outage:
  digest, refresh of a known device), ``--window`` registrations in flight;
- ``keepalive``: every device sends a Keepalive each ``--keepalive`` seconds for ``--hold``
  seconds: server CPU share and resident memory with all devices online.

``core``: the storm path of the registrar alone — each device's two REGISTERs (401, then 200 with
digest) through the SIP core as ``GbService`` handles a refresh, no sockets, asyncio or database,
pinned to one core: CPU per registration (``--no-gc``: with the garbage collector off).

``demux``: PS over RTP of an ffmpeg H.264 clip (640x360, 25 fps, 2 s GOP, the simulator's muxer)
through ``RtpPsReceiver`` (reassembly + demux) on one core: MB/s, packets/s, frames/s.

``ttff``: a real node (``tests/media_site.py``, ``[gb28181]`` on) with the simulated IPC
(tests/peers/gb_device_sim.py, 640x360, 2 s GOP) and Chromium: the time from the tile click to the
first presented frame, measured with ``bench/ttff.py``'s page hooks (``Wall``), the GB source kept
running between trials (long linger) as in that benchmark; the warm-up trial (INVITE included) is
reported apart.

Run: ``.venv/bin/python bench/gb28181.py registrar --devices 10000``,
``.venv/bin/python bench/gb28181.py demux``, ``.venv/bin/python bench/gb28181.py ttff --runs 10``.
Each prints JSON. ``registrar --profile FILE`` runs cProfile on the node side (stats in FILE, the
top 40 on stderr); ``--profile-phase storm`` (or ``first``, ``keepalive``) profiles only that
phase, e.g. the REGISTER refresh path alone.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import os
import platform
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from vmesh.gb28181.digest import answer_challenge  # noqa: E402
from vmesh.gb28181.manscdp import (  # noqa: E402
    CONTENT_TYPE,
    CatalogQuery,
    CatalogResponse,
    DeviceInfoQuery,
    DeviceInfoResponse,
    DeviceStatusQuery,
    DeviceStatusResponse,
    Keepalive,
    decode_manscdp,
    encode_manscdp,
)
from vmesh.gb28181.message import (  # noqa: E402
    Headers,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    make_response,
    parse_message,
)
from vmesh.gb28181.transaction import new_branch  # noqa: E402

NODE_CODE = "33000000002006000001"
REGION = "33000000002166000001"
DOMAIN = NODE_CODE[:10]
PASSWORD = "bench-pass-1"


def device_code(i: int) -> str:
    return f"330000000013200{i:05d}"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load": [round(x, 2) for x in os.getloadavg()],
    }


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# ----------------------------------------------------------------------------- driver


class Driver(asyncio.DatagramProtocol):
    """Many simulated devices on one UDP socket, sans-IO: requests built and parsed by hand."""

    def __init__(self, server: tuple[str, int], codes: list[str]) -> None:
        self.server = server
        self.codes = codes
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("127.0.0.1", 0)
        self.pending: dict[str, tuple[str, asyncio.Future[int]]] = {}  # call-id → (code, fut)
        self.cseq = 1
        self.queries = 0
        self.retransmits = 0
        self.last: dict[str, SipRequest] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.local = transport.get_extra_info("sockname")[:2]

    def request(
        self, method: str, code: str, call_id: str, extra: list[tuple[str, str]], body: bytes = b""
    ) -> SipRequest:
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {self.local[0]}:{self.local[1]};rport;branch={new_branch()}")
        h.add("From", f"<sip:{code}@{DOMAIN}>;tag={call_id[:8]}")
        h.add("To", f"<sip:{code if method == 'REGISTER' else NODE_CODE}@{DOMAIN}>")
        h.add("Call-ID", call_id)
        self.cseq += 1
        h.add("CSeq", f"{self.cseq} {method}")
        h.add("Max-Forwards", "70")
        h.add("Contact", f"<sip:{code}@{self.local[0]}:{self.local[1]}>")
        for k, v in extra:
            h.add(k, v)
        uri = SipUri(host=self.server[0], user=NODE_CODE, port=self.server[1])
        return SipRequest(headers=h, body=body, method=method, uri=uri)

    def send(self, msg: SipRequest | SipResponse) -> None:
        assert self.transport is not None
        if isinstance(msg, SipRequest) and msg.call_id in self.pending:
            self.last[msg.call_id] = msg
        self.transport.sendto(msg.to_bytes(), self.server)

    async def register(self, code: str) -> int:
        call_id = f"reg-{code}-{secrets.token_hex(3)}"
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending[call_id] = (code, fut)
        self.send(self.request("REGISTER", code, call_id, [("Expires", "3600")]))
        return await self._final(call_id, fut)

    async def _final(self, call_id: str, fut: asyncio.Future[int]) -> int:
        """The final status; the last request sent again every 2 s (UDP loses datagrams)."""
        try:
            for _ in range(15):
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), 2)
                except TimeoutError:
                    self.retransmits += 1
                    self.send(self.last[call_id])
            raise TimeoutError(call_id)
        finally:
            self.pending.pop(call_id, None)
            self.last.pop(call_id, None)

    async def keepalive(self, code: str, sn: int) -> int:
        call_id = f"ka-{code}-{sn}"
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending[call_id] = (code, fut)
        body = encode_manscdp(Keepalive(code, sn))
        self.send(self.request("MESSAGE", code, call_id, [("Content-Type", CONTENT_TYPE)], body))
        return await self._final(call_id, fut)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = parse_message(data)
        except SipParseError:
            return
        if isinstance(msg, SipResponse):
            self._response(msg)
        else:
            self._request(msg)

    def _response(self, resp: SipResponse) -> None:
        entry = self.pending.get(resp.call_id)
        if entry is None:
            return
        code, fut = entry
        if resp.status == 401 and resp.cseq.method == "REGISTER":
            challenge = resp.headers.get("WWW-Authenticate") or ""
            auth = answer_challenge(
                challenge,
                method="REGISTER",
                uri=f"sip:{NODE_CODE}@{self.server[0]}:{self.server[1]}",
                username=code,
                password=PASSWORD,
            )
            self.send(
                self.request(
                    "REGISTER", code, resp.call_id, [("Expires", "3600"), ("Authorization", auth)]
                )
            )
        elif resp.status >= 200 and not fut.done():
            fut.set_result(resp.status)

    def _request(self, req: SipRequest) -> None:
        if req.method == "ACK":
            return
        self.send(make_response(req, 200, to_tag=secrets.token_hex(4)))
        if req.method != "MESSAGE":
            return  # SUBSCRIBE: 200 is all
        try:
            q = decode_manscdp(req.body).message
        except Exception:
            return
        answer: Any = None
        if isinstance(q, CatalogQuery):
            answer = CatalogResponse(q.device_id, q.sn, 0, [])
        elif isinstance(q, DeviceInfoQuery):
            answer = DeviceInfoResponse(q.device_id, q.sn, device_name="bench", result="OK")
        elif isinstance(q, DeviceStatusQuery):
            answer = DeviceStatusResponse(q.device_id, q.sn, result="OK", online="ONLINE")
            self.queries += 1
        if answer is not None:
            code = q.device_id
            body = encode_manscdp(answer)
            self.send(
                self.request(
                    "MESSAGE",
                    code,
                    f"ans-{secrets.token_hex(6)}",
                    [("Content-Type", CONTENT_TYPE)],
                    body,
                )
            )


async def run_driver(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = ("127.0.0.1", args.port)
    codes = [device_code(i) for i in range(args.devices)]
    drivers: list[Driver] = []
    for k in range(args.sockets):
        _, d = await loop.create_datagram_endpoint(
            lambda k=k: Driver(server, codes[k :: args.sockets]), local_addr=("127.0.0.1", 0)
        )
        sock = d.transport.get_extra_info("socket") if d.transport else None
        if sock is not None:
            sock.setsockopt(
                __import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 1 << 22
            )
        drivers.append(d)
    by_code = {c: drivers[i % args.sockets] for i, c in enumerate(codes)}

    def say(**kw: Any) -> None:
        print(json.dumps(kw), flush=True)

    async def storm(name: str) -> None:
        sem = asyncio.Semaphore(args.window)
        statuses: dict[int, int] = {}

        async def one(c: str) -> None:
            async with sem:
                try:
                    st = await by_code[c].register(c)
                except TimeoutError:
                    st = 0
                statuses[st] = statuses.get(st, 0) + 1

        say(phase=name, event="start")
        t0 = time.perf_counter()
        await asyncio.gather(*(one(c) for c in codes))
        wall = time.perf_counter() - t0
        rtx = sum(d.retransmits for d in drivers)
        say(phase=name, event="end", wall=wall, statuses=statuses, retransmits=rtx)

    await storm("first")
    # Let the platform's queries after the first registrations finish.
    end = time.monotonic() + 120
    while sum(d.queries for d in drivers) < len(codes) and time.monotonic() < end:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    say(phase="queries", event="done", answered=sum(d.queries for d in drivers))
    # The node says when its work after the first registrations (directory writes of the
    # answers) is done, so that the storm's server CPU is the storm's.
    await loop.run_in_executor(None, sys.stdin.readline)
    await storm("storm")
    say(phase="keepalive", event="start")
    oks = fails = 0

    async def keep(i: int, c: str) -> None:
        nonlocal oks, fails
        await asyncio.sleep(random.uniform(0, args.keepalive))
        sn = 0
        while True:
            sn += 1
            try:
                st = await by_code[c].keepalive(c, sn)
            except TimeoutError:
                st = 0
            if st == 200:
                oks += 1
            else:
                fails += 1
            await asyncio.sleep(args.keepalive * random.uniform(0.9, 1.1))

    tasks = [asyncio.create_task(keep(i, c)) for i, c in enumerate(codes)]
    await asyncio.sleep(args.hold)
    for t in tasks:
        t.cancel()
    say(phase="keepalive", event="end", ok=oks, failed=fails)


# ----------------------------------------------------------------------------- server side


class GcClock:
    """A ``gc.callbacks`` entry adding up the CPU seconds spent in collections, and the
    collections of each generation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.by_generation = [0, 0, 0]
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.process_time()
        else:
            self.seconds += time.process_time() - self._t0
            self.by_generation[info["generation"]] += 1


def settle_node_gc(mode: str) -> dict[str, Any]:
    """What ``vmesh node run`` does to the garbage collector once started (``node``: whatever
    this tree's ``vmesh.node.gc_tuning`` does; nothing in a tree without it, as before run E),
    ``freeze`` only, ``thresholds`` only, or nothing (``default``)."""
    out: dict[str, Any] = {"mode": mode}
    if mode == "node":
        try:
            from vmesh.node.gc_tuning import settle_gc
        except ImportError:
            out["applied"] = "nothing (this tree's node does not tune the collector)"
        else:
            settle_gc()
    elif mode == "freeze":
        gc.collect()
        gc.freeze()
    elif mode == "thresholds":
        from vmesh.node.gc_tuning import GC_THRESHOLDS

        gc.set_threshold(*GC_THRESHOLDS)
    out["frozen"], out["thresholds"] = gc.get_freeze_count(), gc.get_threshold()
    return out


async def settle(gb: Any, limit: float = 120.0) -> float:
    """Wait until the node's own tasks (queries after registration, their directory writes,
    subscriptions) are done and the write-behind batch is written; the seconds it took."""
    t0 = time.perf_counter()
    while gb._tasks and (left := limit - (time.perf_counter() - t0)) > 0:
        await asyncio.wait(list(gb._tasks), timeout=left)  # tasks may spawn more: look again
    await gb.writer.commit()
    return round(time.perf_counter() - t0, 2)


async def run_registrar(
    args: argparse.Namespace, profiler: cProfile.Profile | None = None
) -> dict[str, Any]:
    """The ``registrar`` benchmark; ``profiler`` (with ``--profile-phase``) runs during that
    phase only."""
    logging.basicConfig(level=logging.WARNING)
    from vmesh.audit.log import Actor
    from vmesh.config import Gb28181Config, parse_config
    from vmesh.directory.store import Directory
    from vmesh.gb28181.service import GbService
    from vmesh.node.context import NodeContext

    os.sched_setaffinity(0, {0})
    work = Path(tempfile.mkdtemp(prefix="vmesh-gb-bench-"))
    cfg = parse_config(
        {
            "node": {
                "code": NODE_CODE,
                "name": "bench",
                "tier": "province",
                "data_dir": str(work / "data"),
            }
        }
    )
    ctx = await NodeContext.open(cfg)
    await Directory(ctx.db, ctx.audit).create(
        Actor("bench"), {"code": REGION, "name": "浙江省", "kind": "region", "tier": "province"}
    )
    if args.preimport:
        from vmesh.directory.transfer import import_rows

        rows = [
            (i + 1, {"code": device_code(i), "parent_code": REGION, "kind": "camera",
                     "name": f"GB {i}", "status": "offline"})
            for i in range(args.devices)
        ]  # fmt: skip
        await import_rows(ctx.db, ctx.audit, Actor("bench"), rows)
    gb = GbService(
        Gb28181Config(
            enabled=True,
            sip_host="127.0.0.1",
            sip_port=0,
            password=PASSWORD,
            parent_code=REGION,
            # Long enough that no device goes offline between the phases (the driver sends no
            # keepalives during ``first``/``storm``): the storm is of refreshes, as after an
            # outage of the network between the devices and the node.
            keepalive_interval_seconds=max(args.keepalive, 600.0),
            catalog_timeout_seconds=10,
        ),
        NODE_CODE,
        ctx.db,
        ctx.audit,
    )
    await gb.start()
    gc_setup = settle_node_gc(args.gc)
    assert gb.endpoint is not None and gb.endpoint._udp is not None
    sock = gb.endpoint._udp.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    rss0 = rss_mb()
    cmd = [
        sys.executable,
        __file__,
        "driver",
        "--port",
        str(gb.port),
        "--devices",
        str(args.devices),
        "--window",
        str(args.window),
        "--keepalive",
        str(args.keepalive),
        "--hold",
        str(args.hold),
        "--sockets",
        str(args.sockets),
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.sched_setaffinity(0, {1}),
    )
    assert proc.stdout is not None and proc.stdin is not None
    phases: dict[str, Any] = {}
    marks: dict[str, tuple[float, ...]] = {}
    gc_clock = GcClock()
    gc_marks: dict[str, list[int]] = {}
    gc.callbacks.append(gc_clock)
    while line := await proc.stdout.readline():
        ev = json.loads(line)
        name = ev["phase"]
        now = (time.process_time(), time.perf_counter(), *os.times()[:2], gc_clock.seconds)
        if ev["event"] == "start":
            marks[name] = now
            gc_marks[name] = list(gc_clock.by_generation)
            if profiler is not None and args.profile_phase == name:
                profiler.enable()
        elif ev["event"] == "end":
            if profiler is not None and args.profile_phase == name:
                profiler.disable()
            cpu = now[0] - marks[name][0]
            wall = now[1] - marks[name][1]
            r: dict[str, Any] = {
                "wall_s": round(wall, 2),
                "server_cpu_s": round(cpu, 2),
                "server_cpu_share": round(cpu / wall, 3),
                # user / system split, and the part of it in the cyclic garbage collector
                "server_user_s": round(now[2] - marks[name][2], 2),
                "server_sys_s": round(now[3] - marks[name][3], 2),
                "server_gc_s": round(now[4] - marks[name][4], 3),
                "server_gc_collections": [
                    a - b for a, b in zip(gc_clock.by_generation, gc_marks[name], strict=True)
                ],
                "rss_mb": rss_mb(),
                "devices_online": sum(d.online for d in gb.devices.values()),
            }
            if name in ("first", "storm"):
                r["statuses"] = ev["statuses"]
                r["driver_retransmits_so_far"] = ev["retransmits"]
                r["registrations_per_s"] = round(args.devices / wall, 1)
                r["registrations_per_server_cpu_s"] = round(args.devices / cpu, 1)
            else:
                r["keepalives_ok"], r["keepalives_failed"] = ev["ok"], ev["failed"]
                r["keepalives_per_s"] = round(ev["ok"] / wall, 1)
            phases[name] = r
        else:
            phases[name] = ev
            if name == "queries":
                ev["node_settled_s"] = await settle(gb)
                ev["gc_tracked_objects"] = len(gc.get_objects())  # what a full collection walks
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
    await proc.wait()
    gc.callbacks.remove(gc_clock)
    await gb.stop()
    await ctx.close()
    return {
        "benchmark": "gb28181.registrar",
        "devices": args.devices,
        "devices_imported_beforehand": args.preimport,
        "window": args.window,
        "keepalive_interval_s": args.keepalive,
        "rss_before_mb": rss0,
        "gc_setup": gc_setup,
        "phases": phases,
        "machine": machine(),
        "server_loop": args.loop,
        "server_pinned_cpu": 0,
        "driver_pinned_cpu": 1,
        "command": " ".join(["python", *sys.argv]),
    }


def run_core(args: argparse.Namespace) -> dict[str, Any]:
    """The registrar's storm path without sockets, asyncio or database: for each device, the
    REGISTER without credentials (→ 401 with a challenge) and the one with its digest answer
    (→ 200) through ``parse_message``, ``TransactionLayer.receive``, From/To, the challenge or
    ``DigestServer.verify``, ``make_response`` + headers, ``TransactionLayer.respond`` and
    ``to_bytes`` — what ``GbService`` does for a refresh. Only that is timed (CPU), not the
    device side, which is prepared outside the clock."""
    from vmesh.gb28181.devices import device_kind
    from vmesh.gb28181.digest import DigestServer
    from vmesh.gb28181.transaction import RequestReceived, Send, TransactionLayer

    os.sched_setaffinity(0, {0})
    server = DigestServer(DOMAIN)
    layer = TransactionLayer()
    challenge_respond = getattr(layer, "respond_stateless", layer.respond)
    source = ("127.0.0.1", 40000)
    uri = SipUri(host="127.0.0.1", user=NODE_CODE, port=5060)

    def register(code: str, call_id: str, extra: list[tuple[str, str]]) -> bytes:
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {source[0]}:{source[1]};rport;branch={new_branch()}")
        h.add("From", f"<sip:{code}@{DOMAIN}>;tag={call_id[-8:]}")
        h.add("To", f"<sip:{code}@{DOMAIN}>")
        h.add("Call-ID", call_id)
        h.add("CSeq", "2 REGISTER")
        h.add("Max-Forwards", "70")
        h.add("Contact", f"<sip:{code}@{source[0]}:{source[1]}>")
        h.add("Expires", "3600")
        for k, v in extra:
            h.add(k, v)
        return SipRequest(headers=h, method="REGISTER", uri=uri).to_bytes()

    def node(data: bytes, now: float) -> bytes:
        """What the node does with one datagram; the response's bytes."""
        out = b""
        for action in layer.receive(parse_message(data), source, now, reliable=False):
            if not isinstance(action, RequestReceived) or action.transaction is None:
                continue
            req = action.request
            code = req.from_.uri.user or ""
            _ = req.to.uri
            auth = req.headers.get("Authorization")
            if auth is None:
                device_kind(code)
                resp = make_response(req, 401, to_tag=secrets.token_hex(4))
                resp.headers.add("WWW-Authenticate", server.challenge(time.time()))
            else:
                _ = req.expires
                verdict = server.verify(auth, "REGISTER", lambda user: PASSWORD, time.time())
                if not verdict.ok:
                    raise RuntimeError(f"digest refused: {verdict.reason}")
                resp = make_response(req, 200, to_tag=secrets.token_hex(4))
                resp.headers.add("Expires", "3600")
                resp.headers.add("Date", time.strftime("%Y-%m-%dT%H:%M:%S"))
            # The 401 as the service answers it: statelessly where this tree can (run E on).
            respond = layer.respond if auth is not None else challenge_respond
            for send in respond(action.transaction, resp, now):
                if isinstance(send, Send):
                    out = send.message.to_bytes()
            layer.next_timer()
        return out

    gc_setup = settle_node_gc(args.gc)
    if args.no_gc:
        gc.disable()
    codes = [device_code(i) for i in range(args.devices)]
    first = [register(c, f"reg-{c}-{secrets.token_hex(4)}", []) for c in codes]
    t0 = time.process_time()
    challenges = [node(d, 0.0) for d in first]
    cpu = time.process_time() - t0
    answers = []
    for c, data in zip(codes, challenges, strict=True):
        r = parse_message(data)
        auth = answer_challenge(
            r.headers.get("WWW-Authenticate") or "",
            method="REGISTER",
            uri=str(uri),
            username=c,
            password=PASSWORD,
        )
        answers.append(register(c, r.call_id, [("Authorization", auth)]))
    t0 = time.process_time()
    statuses = [parse_message(node(d, 0.1)) for d in answers]
    cpu += time.process_time() - t0
    gc.enable()
    ok = sum(isinstance(r, SipResponse) and r.status == 200 for r in statuses)
    return {
        "benchmark": "gb28181.core",
        "devices": args.devices,
        "gc": not args.no_gc,
        "gc_setup": gc_setup,
        "challenge_stateless": challenge_respond != layer.respond,
        "registrations_ok": ok,
        "cpu_s": round(cpu, 3),
        "us_per_registration": round(cpu / args.devices * 1e6, 1),
        "registrations_per_cpu_s": round(args.devices / cpu, 1),
        "machine": machine(),
        "pinned_cpu": 0,
        "command": " ".join(["python", *sys.argv]),
    }


def run_demux(args: argparse.Namespace) -> dict[str, Any]:
    from peers.gb_device_sim import h264_clip
    from vmesh.gb28181.ps import (
        AccessUnit,
        PsCodec,
        PsMuxer,
        RtpPsPacketizer,
        RtpPsReceiver,
        split_annexb,
    )
    from vmesh.switch.rtp import parse_rtp

    os.sched_setaffinity(0, {0})
    clip = h264_clip(Path(tempfile.mkdtemp()) / "c.h264", frames=100, size="640x360", gop=50)
    mux = PsMuxer(PsCodec.h264, PsCodec.pcma)
    rtp = RtpPsPacketizer(ssrc=1)
    packets: list[bytes] = []
    pts = 0
    for _ in range(args.loops):
        for data in clip:
            key = any(n[0] & 0x1F == 5 for n in split_annexb(data))
            au = AccessUnit(PsCodec.h264, 0xE0, pts, data, key)
            packets += [p.serialize() for p in rtp.packetize(mux.mux(au), pts)]
            pts += 3600
    size = sum(len(p) for p in packets)
    rx = RtpPsReceiver(1)
    t0 = time.process_time()
    frames = 0
    for p in packets:
        frames += len(rx.receive(parse_rtp(p)))
    cpu = time.process_time() - t0
    return {
        "benchmark": "gb28181.demux",
        "video": "H.264 640x360 25 fps, 2 s GOP (ffmpeg testsrc2), PS per the simulator's muxer",
        "packets": len(packets),
        "bytes": size,
        "frames": frames,
        "cpu_s": round(cpu, 3),
        "mbit_per_s": round(size * 8 / cpu / 1e6, 1),
        "packets_per_s": round(len(packets) / cpu),
        "frames_per_s": round(frames / cpu),
        "streams_at_this_bitrate_per_core": round(
            (size * 8 / cpu) / (size * 8 / (len(clip) * args.loops / 25)), 1
        ),
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
    }


def run_demux_ffmpeg(args: argparse.Namespace) -> dict[str, Any]:
    """``PsDemuxer`` alone on a program stream written by ffmpeg's own MPEG-PS muxer (``-f
    mpeg``, H.264 640x360 25 fps 2 s GOP; that muxer takes no G.711), fed in 1,400-byte pieces
    as RTP payloads would bring it: MB/s and frames/s on one core."""
    from vmesh.gb28181.ps import PsCodec, PsDemuxer

    vcodecs = (PsCodec.h264, PsCodec.h265)

    os.sched_setaffinity(0, {0})
    path = Path(tempfile.mkdtemp()) / "c.mpg"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
            "-t", "20", "-g", "50", "-bf", "0", "-pix_fmt", "yuv420p",
            "-c:v", "libx264", "-profile:v", "baseline", "-an", "-f", "mpeg", str(path),
        ],
        check=True,
        timeout=300,
    )  # fmt: skip
    data = path.read_bytes()
    pieces = [data[i : i + 1400] for i in range(0, len(data), 1400)]
    t0 = time.process_time()
    video = audio = 0
    for _ in range(args.loops):
        dm = PsDemuxer()
        for p in pieces:
            for au in dm.feed(p):
                if au.codec in vcodecs:
                    video += 1
                else:
                    audio += 1
        for au in dm.flush():
            video += au.codec in vcodecs
    cpu = time.process_time() - t0
    size = len(data) * args.loops
    return {
        "benchmark": "gb28181.demux_ffmpeg",
        "video": "ffmpeg -f mpeg: H.264 640x360 25 fps 2 s GOP, 20 s (500 frames)",
        "file_bytes": len(data),
        "loops": args.loops,
        "video_frames": video,
        "audio_units": audio,
        "cpu_s": round(cpu, 3),
        "mbyte_per_s": round(size / cpu / 1e6, 1),
        "video_frames_per_s": round(video / cpu),
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
    }


def run_ttff(args: argparse.Namespace) -> dict[str, Any]:
    import statistics

    from playwright.sync_api import sync_playwright

    import ttff
    from e2e.console_node import CHROMIUM, free_port, media_browser_args
    from media_site import VILLAGE, free_udp_block, media_node
    from peers.gb_device_sim import GbDeviceSim, SimThread, h264_clip

    ipc = "33010601001320000088"
    ttff.CAMERA = ipc
    work = Path(tempfile.mkdtemp(prefix="vmesh-gb-ttff-"))
    sip_port, media = free_port(), free_udp_block(200)
    extra = (
        "\n[gb28181]\nenabled = true\n"
        f'sip_host = "127.0.0.1"\nsip_port = {sip_port}\npassword = "{PASSWORD}"\n'
        f'parent_code = "{VILLAGE}"\nmedia_port_range = [{media}, {media + 199}]\n'
    )
    node = media_node(work, channels=2, linger=3600.0, extra_toml=extra)
    runner = SimThread()
    clip = h264_clip(work / "c.h264", frames=100, size="640x360", gop=50)
    sim = GbDeviceSim(
        ipc, PASSWORD, NODE_CODE, ("127.0.0.1", sip_port), channels=[(ipc, "国标首帧测试")],
        clip=clip, name="国标首帧测试",
    )  # fmt: skip
    load_before = os.getloadavg()
    rng = random.Random(args.seed)
    trials: list[dict[str, Any]] = []
    try:
        runner.run(sim.start())
        assert runner.run(sim.register()) == 200
        time.sleep(2.0)  # catalogue and DeviceInfo settle
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM),
                args=media_browser_args(),
            )
            try:
                wall = ttff.Wall(browser, node, "gb")
                warm = wall.trial()
                time.sleep(1.0)
                for _ in range(args.runs):
                    time.sleep(0.5 + rng.uniform(0, 2.0))
                    trials.append(wall.trial())
                wall.close()
            finally:
                browser.close()
    finally:
        node.stop()
        runner.run(sim.close())
        runner.stop()
    first = sorted(t["ttff_ms"] for t in trials)
    moving = sorted(t["fluent_ms"] for t in trials if t.get("fluent_ms") is not None)
    p90 = first[max(0, int(0.9 * len(first) + 0.5) - 1)]
    return {
        "benchmark": "gb28181.ttff",
        "camera": "simulated GB IPC, H.264 640x360 25 fps, 2 s GOP, PS over RTP/UDP",
        "runs": len(trials),
        "warmup_with_invite_ms": warm["ttff_ms"],
        "ttff_median_ms": statistics.median(first),
        "ttff_p90_ms": p90,
        "ttff_all_ms": first,
        "moving_median_ms": statistics.median(moving) if moving else None,
        "goal_ms": 500,
        "goal_met_p90": p90 <= 500,
        "invites": len(sim.invites),
        "machine": {**machine(), "load_before": [round(x, 2) for x in load_before]},
        "command": " ".join(["python", *sys.argv]),
    }


def loop_runner(name: str) -> Any:
    """``asyncio.run`` or ``uvloop.run`` (what ``vmesh node run`` serves on)."""
    if name == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("registrar")
    d = sub.add_parser("driver")
    for p in (r, d):
        p.add_argument("--devices", type=int, default=10_000)
        p.add_argument("--window", type=int, default=200)
        p.add_argument("--keepalive", type=float, default=60.0)
        p.add_argument("--hold", type=float, default=60.0)
        p.add_argument("--sockets", type=int, default=20)
    r.add_argument(
        "--no-preimport",
        dest="preimport",
        action="store_false",
        help="devices not in the directory beforehand: the first registration creates them",
    )
    r.add_argument("--profile", help="cProfile the node side, stats written to this file")
    r.add_argument(
        "--profile-phase",
        choices=("all", "first", "storm", "keepalive"),
        default="all",
        help="with --profile: profile only this phase (e.g. storm: the REGISTER refresh path)",
    )
    r.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the node's event loop: asyncio's own (runs C–E) or uvloop, which `vmesh node run` "
        "uses (the driver always runs on asyncio's)",
    )
    d.add_argument("--port", type=int, required=True)
    c = sub.add_parser("core")
    c.add_argument("--devices", type=int, default=3000)
    c.add_argument("--no-gc", action="store_true", help="garbage collector off while it runs")
    for p in (r, c):
        p.add_argument(
            "--gc",
            choices=("node", "default", "freeze", "thresholds"),
            default="node",
            help="the collector once started: as `vmesh node run` does (node), untouched "
            "(default), gc.freeze() only, the node's thresholds only",
        )
    m = sub.add_parser("demux")
    m.add_argument("--loops", type=int, default=20)
    m.add_argument(
        "--source",
        choices=("sim", "ffmpeg"),
        default="sim",
        help="sim: the simulator's PS over RTP; ffmpeg: ffmpeg's -f mpeg program stream",
    )
    t = sub.add_parser("ttff")
    t.add_argument("--runs", type=int, default=10)
    t.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.what == "driver":
        os.sched_setaffinity(0, {1})
        asyncio.run(run_driver(args))
        return
    if args.what == "registrar" and args.profile:
        import pstats

        prof = cProfile.Profile()
        if args.profile_phase == "all":
            out = prof.runcall(loop_runner(args.loop), run_registrar(args))
        else:
            out = loop_runner(args.loop)(run_registrar(args, prof))
        prof.dump_stats(args.profile)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(40)
    elif args.what == "registrar":
        out = loop_runner(args.loop)(run_registrar(args))
    elif args.what == "core":
        out = run_core(args)
    elif args.what == "demux":
        out = run_demux_ffmpeg(args) if args.source == "ffmpeg" else run_demux(args)
    else:
        out = run_ttff(args)
    print(json.dumps(out, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
