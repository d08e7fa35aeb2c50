"""``bench/fabric.py latency``: added latency per hop, each node's fabric agent in its own process.

Layout: this (the bench's) process starts one nats-server for the bus and a receiver thread, then
the node processes — ``python bench/fabric_hops.py node --codes ...`` — each building, for every
code it is given, the node's ``SwitchTransport`` and ``FabricService`` (and a ``StampedCamera`` as
its local cameras) as ``vmesh node run`` does: uvloop's loop (``uvloop.run``, as
``vmesh.node.server.serve``), ``settle_gc`` once started. ``per_process``: five node processes,
one node each, so a node's stall (its event loop, its data plane thread waiting for its GIL)
delays only its own hop, as between real nodes. ``one_process``: one node process holding all five
nodes (the old layout, one event loop and one GIL for the chain), for comparison in the same run.

Control: a node process prints ``ready`` when its nodes are started; the viewer's process (the
one holding the chain's first code) then reads ``go <hops>:<port> ...`` on stdin, acquires each
hop's camera through its fabric, routes it to an output to that receiver port and prints
``routed``. Any process stops its nodes when its stdin closes (the bench closes it when done, on
error, on Ctrl-C, or by exiting), and then exits; SIGINT is left to the bench.

Receiver: one UDP socket per hop count, read by a thread with the kernel's receive timestamps
(``SO_TIMESTAMPNS``, as ``bench_switch_udp.Sink``): latency = kernel receive time − the send time
the camera wrote into the payload just before ``sendto`` (both CLOCK_REALTIME), so the figure does
not include when the bench's Python thread got round to reading (that is kept as ``app_*``).

Public: ``CHAIN``, ``HOPS``, ``percentile``, ``StampedCamera``, ``Receiver``, ``measure``,
``run_layout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench_switch_udp import SO_TIMESTAMPNS, TIMESPEC

CHAIN = [
    "33000000002006000001",
    "33030000002006000001",
    "33032800002006000001",
    "33032810002006000001",
    "33032810102006000001",
]
HOPS = (0, 1, 2, 4)
STAMP = struct.Struct("!Q")
STAMP_AT = 13  # after the 12-byte RTP header and the NAL header byte
HERE = Path(__file__).resolve().parent


def camera_stream(hops: int) -> tuple[str, str]:
    """(camera code, its node's code) of the camera ``hops`` away from the viewer."""
    node = CHAIN[hops]
    return node[:10] + "1320000001", node


class StampedCamera:
    """``LocalCameras`` of one node: RTP into a switch input, 25 frames/s × 4 packets, each
    payload starting with the send time (ns); a keyframe a second."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.task: asyncio.Task[None] | None = None

    async def acquire(self, code: str) -> str:
        from vmesh.switch.codecs import Codec
        from vmesh.switch.core import InputSpec

        if self.task is None:
            port = await self.transport.add_input(InputSpec("cam/video", Codec.h264), port=0)
            self.task = asyncio.create_task(self._run(port))
        return "cam/video"

    def release(self, code: str) -> None:
        pass

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self, port: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        seq, frame = 0, 0
        try:
            while True:
                nal = 0x65 if frame % 25 == 0 else 0x41
                for k in range(4):
                    hdr = struct.pack(
                        "!BBHII", 0x80, 96 | (0x80 if k == 3 else 0), seq, frame * 3600, 0xCA11
                    )
                    body = bytes([nal]) + STAMP.pack(time.time_ns()) + bytes(1000)
                    s.sendto(hdr + body, ("127.0.0.1", port))
                    seq = (seq + 1) & 0xFFFF
                frame += 1
                await asyncio.sleep(0.04)
        finally:
            s.close()


# --- the bench's side ----------------------------------------------------------------------------


class Receiver:
    """One UDP socket per hop count on loopback, read by a thread. Samples (ns) by the kernel's
    receive timestamp (``lat``) and by when the thread read the packet (``app_lat``)."""

    def __init__(self, hops: tuple[int, ...]) -> None:
        self.sel = selectors.DefaultSelector()
        self.ports: dict[int, int] = {}
        self.socks: list[socket.socket] = []
        self.lat: dict[int, list[int]] = {h: [] for h in hops}
        self.app_lat: dict[int, list[int]] = {h: [] for h in hops}
        for h in hops:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, h)
            self.socks.append(s)
            self.ports[h] = s.getsockname()[1]
        self._lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="receiver", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        now = time.time_ns
        space = socket.CMSG_SPACE(TIMESPEC.size)
        while not self._stop:
            for key, _ in self.sel.select(0.1):
                s: socket.socket = key.fileobj  # type: ignore[assignment]
                while True:
                    try:
                        data, anc, _, _ = s.recvmsg(2048, space)
                    except BlockingIOError:
                        break
                    if len(data) < STAMP_AT + STAMP.size or 192 <= data[1] <= 223:
                        continue  # RTCP (sender reports of the output)
                    sent = STAMP.unpack_from(data, STAMP_AT)[0]
                    with self._lock:
                        self.app_lat[key.data].append(now() - sent)
                        for level, kind, cdata in anc:
                            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                                sec, nsec = TIMESPEC.unpack_from(cdata)
                                self.lat[key.data].append(sec * 1_000_000_000 + nsec - sent)

    def clear(self) -> None:
        with self._lock:
            for v in (*self.lat.values(), *self.app_lat.values()):
                v.clear()

    def take(self) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
        with self._lock:
            return (
                {h: list(v) for h, v in self.lat.items()},
                {h: list(v) for h, v in self.app_lat.items()},
            )

    def close(self) -> None:
        self._stop = True
        self.thread.join()
        for s in self.socks:
            s.close()


def child_setup() -> None:
    """In a child (node process, nats-server), before exec: its own process group, so that the
    terminal's Ctrl-C reaches only the bench, which then stops the nodes before the bus; and
    SIGTERM when the bench's process dies (even by SIGKILL)."""
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(q * len(s) + 0.999999) - 1))]


def summarize(samples_ns: list[int]) -> dict[str, Any]:
    s = sorted(x / 1e6 for x in samples_ns)
    if not s:
        return {"packets": 0}
    return {
        "packets": len(s),
        "p50_ms": round(percentile(s, 0.5), 3),
        "p99_ms": round(percentile(s, 0.99), 3),
        "p99_9_ms": round(percentile(s, 0.999), 3),
        "max_ms": round(s[-1], 3),
    }


def per_hop(by_hops: dict[int, dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Issue 4's figure: (pN − p0) / N for each percentile."""
    base = by_hops[0]
    return {
        h: {
            q: round((by_hops[h][f"{q}_ms"] - base[f"{q}_ms"]) / h, 3)
            for q in ("p50", "p99", "p99_9")
        }
        for h in by_hops
        if h and by_hops[h]["packets"] and base["packets"]
    }


async def _line(proc: asyncio.subprocess.Process, want: str, within: float) -> None:
    """Wait for the node process to print ``want`` (RuntimeError: it exited or did not)."""
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(within):
            while raw := await proc.stdout.readline():
                if raw.decode().strip() == want:
                    return
    except TimeoutError:
        raise RuntimeError(f"node process {proc.pid}: no {want!r} within {within:g} s") from None
    raise RuntimeError(f"node process {proc.pid} exited ({await proc.wait()}) before {want!r}")


async def run_layout(
    groups: list[list[str]], nats_url: str, seconds: float, warmup: float, loop: str
) -> dict[str, Any]:
    """Start one node process per group of codes, open the four paths, measure ``seconds``."""
    rx = Receiver(HOPS)
    procs: list[asyncio.subprocess.Process] = []
    try:
        for codes in groups:
            cmd = [sys.executable, str(HERE / "fabric_hops.py"), "node", "--nats", nats_url]
            proc = await asyncio.create_subprocess_exec(
                *cmd, "--loop", loop, *codes,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                preexec_fn=child_setup,
            )  # fmt: skip
            procs.append(proc)
        for p in procs:
            await _line(p, "ready", 120)
        viewer = next(p for p, codes in zip(procs, groups, strict=True) if CHAIN[0] in codes)
        assert viewer.stdin is not None
        go = " ".join(f"{h}:{port}" for h, port in rx.ports.items())
        viewer.stdin.write(f"go {go}\n".encode())
        await viewer.stdin.drain()
        await _line(viewer, "routed", 120)
        await asyncio.sleep(warmup)  # paths open, first keyframes through
        ps = [psutil.Process(p.pid) for p in procs]
        cpu0 = [sum(x.cpu_times()[:2]) for x in ps]
        rx.clear()
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        lat, app_lat = rx.take()
        wall = time.perf_counter() - t0
        cpu = [round(sum(x.cpu_times()[:2]) - c, 2) for x, c in zip(ps, cpu0, strict=True)]
    finally:
        await _stop(procs)
        rx.close()
    by_hops = {h: summarize(lat[h]) for h in HOPS}
    app = {h: summarize(app_lat[h]) for h in HOPS}
    return {
        "processes": len(groups),
        "by_hops": by_hops,
        "added_per_hop_ms": per_hop(by_hops),
        "app_read": {"by_hops": app, "added_per_hop_ms": per_hop(app)},
        "node_process_cpu_s": cpu,
        "window_s": round(wall, 2),
    }


async def measure(
    layouts: dict[str, list[list[str]]], seconds: float, warmup: float, loop: str
) -> dict[str, Any]:
    """One nats-server for the bus; then each layout in turn (``run_layout``), by name. Not
    ``peers.nats_server.local_nats``: this one is in its own process group (``child_setup``), so
    the terminal's Ctrl-C does not take the bus away before the node processes have stopped, and
    it dies with the bench."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nats_proc = await asyncio.create_subprocess_exec(
        "nats-server", "-a", "127.0.0.1", "-p", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        preexec_fn=child_setup,
    )  # fmt: skip
    url = f"nats://127.0.0.1:{port}"
    res: dict[str, Any] = {}
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            await asyncio.sleep(0.1)
        for name, groups in layouts.items():
            print(f"latency: {name}, {len(groups)} node process(es)", file=sys.stderr)
            res[name] = await run_layout(groups, url, seconds, warmup, loop)
    finally:
        if nats_proc.returncode is None:  # after the node processes: they stop on a live bus
            nats_proc.terminate()
        await nats_proc.wait()
    return res


async def _stop(procs: list[asyncio.subprocess.Process]) -> None:
    """Close every node process's stdin (it stops its nodes and exits); after 15 s (one still
    starting, e.g. its bus connection retrying) kill what is left."""
    for p in procs:
        if p.stdin is not None and not p.stdin.is_closing():
            p.stdin.close()
    waits = [asyncio.ensure_future(p.wait()) for p in procs]
    if waits:
        await asyncio.wait(waits, timeout=15)
    for p in procs:
        if p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
    if waits:
        await asyncio.gather(*waits)


# --- a node process ------------------------------------------------------------------------------


async def serve_nodes(codes: list[str], nats_url: str) -> None:
    """Start ``codes``' fabric agents (a chain: each one's parent is the previous in ``CHAIN``),
    say ``ready``, serve the viewer's ``go`` if the viewer is here, stop at stdin's end."""
    from vmesh.fabric.service import FabricService
    from vmesh.federation.bus import Bus
    from vmesh.node.gc_tuning import settle_gc
    from vmesh.switch.codecs import Codec
    from vmesh.switch.core import OutputSpec, Switch
    from vmesh.switch.transport import SwitchTransport

    parents = {c: (CHAIN[i - 1] if i else None) for i, c in enumerate(CHAIN)}
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    nodes: dict[str, tuple[Any, Any, Any, StampedCamera]] = {}
    try:
        for code in codes:
            tr = SwitchTransport(Switch())
            await tr.start()
            bus = await Bus.connect(nats_url, code)

            async def tree(code: str = code) -> tuple[dict[str, str | None], str | None]:
                return parents, parents[code]

            cams = StampedCamera(tr)
            fab = FabricService(
                node_code=code, bus=bus, transport=tr, address="127.0.0.1", tree=tree,
                cameras=cams, linger=5.0,
            )  # fmt: skip
            await fab.start()
            nodes[code] = (tr, fab, bus, cams)
        settle_gc()  # as the node process once started (vmesh.node.server)
        print("ready", flush=True)
        while line := (await stdin.readline()).decode().split():
            if line[0] != "go" or CHAIN[0] not in nodes:
                continue
            tr0, fab0 = nodes[CHAIN[0]][:2]
            for item in line[1:]:
                h, port = (int(x) for x in item.split(":"))
                stream, cam_node = camera_stream(h)
                input_id = await fab0.acquire(stream, cam_node, f"bench-{h}", "bench")
                out_id = f"bench-out-{h}"
                await tr0.add_output(
                    OutputSpec(out_id, Codec.h264, ssrc=0x1000 + h, dest=("127.0.0.1", port))
                )
                tr0.route(out_id, input_id)
            print("routed", flush=True)
    finally:
        for tr, fab, bus, cams in nodes.values():
            await cams.close()
            await fab.stop()
            await bus.close()
            await tr.close()


def node_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="fabric_hops.py node")
    ap.add_argument("--nats", required=True)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    ap.add_argument("codes", nargs="+")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the bench closes our stdin
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve_nodes(args.codes, args.nats))  # as vmesh.node.server.serve
    else:
        asyncio.run(serve_nodes(args.codes, args.nats))


if __name__ == "__main__":
    if sys.argv[1:2] != ["node"]:
        sys.exit("run by bench/fabric.py latency")
    node_main(sys.argv[2:])
