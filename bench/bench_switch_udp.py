"""``bench/switch.py --udp``: the switch's UDP transport and Janus VideoRoom ``rtp_forward`` side
by side through real loopback sockets (see that file's docstring). Not run alone.

Latency probe: the sender writes CLOCK_REALTIME into each packet just before ``sendto``; the sink
takes the kernel's receive timestamp of output 0's copy (``SO_TIMESTAMPNS``), so the figure is
the forwarder's wake-up, work and send plus two loopback hops, and not when the bench's Python
sink thread got round to reading it (that is kept as ``app_latency_*``). ``direct`` is the same
probe with no forwarder (sender straight to the sink): the floor of the measurement."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

SINK_BASE = 29100  # below the ephemeral range (32768-60999): no port-0 socket lands on a sink
SWITCH_IN = 29000
JANUS_IN = 29010
STAMP = struct.Struct("!Q")
STAMP_AT = 12 + 2 + 8  # after the RTP header and the FU/STAP header bytes: inside the payload
SO_TIMESTAMPNS = 35  # Linux (asm-generic/socket.h); the cmsg type is the same number
TIMESPEC = struct.Struct("@qq")


# The sink counts outputs 1..N-1 with recvmmsg, BATCH datagrams per call, reading 2 bytes of
# each (enough to tell RTCP from RTP): the receive path in the kernel, ~no Python per datagram.
BATCH = 256
RTCP_TYPES = bytes(range(192, 224))  # the second byte of an RTCP packet (RFC 5761)
MSG_DONTWAIT = 0x40
_libc = ctypes.CDLL(None, use_errno=True)


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


class _Counter:
    """recvmmsg into BATCH 2-byte buffers: how many RTP datagrams were waiting on a socket."""

    def __init__(self) -> None:
        self.buf = (ctypes.c_ubyte * (2 * BATCH))()
        self.iov = (_Iovec * BATCH)()
        self.vec = (_Mmsghdr * BATCH)()
        base = ctypes.addressof(self.buf)
        for i in range(BATCH):
            self.iov[i].iov_base = base + 2 * i
            self.iov[i].iov_len = 2
            self.vec[i].msg_hdr.msg_iov = ctypes.pointer(self.iov[i])
            self.vec[i].msg_hdr.msg_iovlen = 1

    def drain(self, fd: int) -> int:
        n = 0
        while True:
            got = _libc.recvmmsg(fd, self.vec, BATCH, MSG_DONTWAIT, None)
            if got <= 0:
                return n
            second = bytes(self.buf)[1 : 2 * got : 2]
            n += len(second.translate(None, RTCP_TYPES))  # RTCP (--rtcp) is not counted
            if got < BATCH:
                return n


SWEEP = 0.01  # s between two counts of outputs 1..N-1 (4 MB buffers hold seconds of copies)
# --python-sink: every output read with recvmsg in Python, as before 2026-11-30
PYTHON_SINK = {"on": False}
# --nice: the nice value of the forwarders' scheduler groups (None: left alone)
NICE: dict[str, int | None] = {"value": None}
# --pin / --rt: the CPU the forwarders run on and their SCHED_FIFO priority (None: left alone)
SCHED: dict[str, int | None] = {"cpu": None, "rt": None}


def schedule_forwarder(pid: int) -> list[str]:
    """--pin/--rt for Janus and the switch's Python path: every thread of the process on the CPU,
    at the priority (more than the C data plane gets: only its own thread, as the node's
    ``[media] dataplane_cpus``/``dataplane_priority`` do). Threads started later inherit it.
    Returns each thread's ``policy@cpus``."""
    out = []
    for task in sorted(os.listdir(f"/proc/{pid}/task")):
        tid = int(task)
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            if SCHED["cpu"] is not None:
                os.sched_setaffinity(tid, {SCHED["cpu"]})
            if SCHED["rt"] is not None:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(SCHED["rt"]))
            out.append(_policy(tid))
    return out


def _policy(tid: int) -> str:
    fifo = os.sched_getscheduler(tid) == os.SCHED_FIFO
    cpus = ",".join(map(str, sorted(os.sched_getaffinity(tid))))
    policy = f"fifo:{os.sched_getparam(tid).sched_priority}" if fifo else "normal"
    return f"{policy}@{cpus}"


def set_nice(nice: int, pid: int | str = "self") -> str | None:
    """Where the kernel shares CPU time out by session first (``sched_autogroup``: each session,
    e.g. each other engineer's test run, gets an equal share whatever the nice values of the
    threads inside), set the nice value of ``pid``'s session group; for this process also this
    thread's, inherited by what it starts. Returns what ``/proc/<pid>/autogroup`` says afterwards
    (None: no autogroups or not allowed)."""
    if pid == "self":
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(nice))
        with open(f"/proc/{pid}/autogroup") as f:
            return f.read().strip()
    except OSError:
        return None


def serve_switch(
    in_port: int,
    sink_base: int,
    n: int,
    dataplane: bool = True,
    rtcp: bool = False,
    cpu: int | None = None,
    rt: int | None = None,
) -> None:
    """Child process: a SwitchTransport with one input and ``n`` outputs, until killed
    (``dataplane=False``: the pure-Python asyncio path, as without the C extension; ``rtcp``:
    each output has an RTCP destination, as the node's media channels do, so ``tick`` makes a
    sender report per output per interval; the sink drops them; ``cpu``/``rt``: the data plane
    thread's CPU and SCHED_FIFO priority, as ``[media] dataplane_cpus``/``dataplane_priority``)."""
    from vmesh.switch.codecs import Codec
    from vmesh.switch.core import InputSpec, OutputSpec, Switch
    from vmesh.switch.transport import SwitchTransport, use_uvloop

    use_uvloop()

    async def main() -> None:
        t = SwitchTransport(
            Switch(),
            dataplane=dataplane,
            cpus=None if cpu is None else {cpu},
            realtime_priority=rt,
        )
        await t.start()
        await t.add_input(InputSpec("cam", Codec.h264), port=in_port)
        for i in range(n):
            dest = ("127.0.0.1", sink_base + i)
            await t.add_output(
                OutputSpec(
                    f"o{i}", Codec.h264, ssrc=i + 1, dest=dest, rtcp_dest=dest if rtcp else None
                )
            )
            t.route(f"o{i}", "cam")
        ready = t.dataplane_counts() is not None or not dataplane
        print(f"ready {t.plane_tid}" if ready else "no-plane", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


class Sink:
    """Counts RTP packets on ``n`` ports (RTCP is dropped); latency samples of port 0 (ns): by
    the kernel's receive timestamp (``lat``) and when this thread read it (``app_lat``).

    Port 0 is watched and read with ``recvmsg`` in Python (the probe); the others are counted
    every ``SWEEP`` with ``recvmmsg`` in batches (:class:`_Counter`), unwatched, so their copies
    wake nobody. Before 2026-11-30 every port was watched and read like port 0
    (``--python-sink``): at fan-out 100, 20,000 datagrams/s of Python in 1–3 ms slices of a CPU
    that the sink thread took from the forwarder whose copies woke it onto that CPU
    (docs/switch.md, "The latency tail"). The same for both forwarders either way."""

    def __init__(self, n: int) -> None:
        self.socks = []
        self.sel = selectors.DefaultSelector()
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            if i == 0:
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.bind(("127.0.0.1", SINK_BASE + i))
            s.setblocking(False)
            if i == 0 or PYTHON_SINK["on"]:
                self.sel.register(s, selectors.EVENT_READ, i)
            self.socks.append(s)
        self.counter = None if PYTHON_SINK["on"] else _Counter()
        self.count = 0
        self.lat: list[int] = []
        self.app_lat: list[int] = []
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # Below the forwarders (--nice): the kernel's receive timestamp does not depend on when
        # this thread reads, and 4 MB buffers hold seconds of packets, so it may read late.
        with contextlib.suppress(OSError):
            prio = os.getpriority(os.PRIO_PROCESS, 0)
            if prio < 0:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, prio + 5))
        now = time.time_ns
        space = socket.CMSG_SPACE(TIMESPEC.size)
        swept = time.monotonic()
        while not self.stop:
            if self.counter is not None and time.monotonic() - swept >= SWEEP:
                self.sweep()
                swept = time.monotonic()
            for key, _ in self.sel.select(SWEEP if self.counter is not None else 0.1):
                s: socket.socket = key.fileobj  # type: ignore[assignment]
                while True:
                    try:
                        data, anc, _, _ = s.recvmsg(2048, space)
                    except BlockingIOError:
                        break
                    if len(data) >= 2 and 192 <= data[1] <= 223:
                        continue  # RTCP (--rtcp: the switch's sender reports)
                    self.count += 1
                    if key.data == 0 and len(data) >= STAMP_AT + 8:
                        sent = STAMP.unpack_from(data, STAMP_AT)[0]
                        self.app_lat.append(now() - sent)
                        for level, kind, cdata in anc:
                            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                                sec, nsec = TIMESPEC.unpack_from(cdata)
                                self.lat.append(sec * 1_000_000_000 + nsec - sent)

    def sweep(self) -> None:
        """Count what waits on outputs 1..N-1 (not watched: their copies wake nobody)."""
        assert self.counter is not None
        for s in self.socks[1:]:
            got = self.counter.drain(s.fileno())  # not inside +=: measure() may reset count
            self.count += got

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        if self.counter is not None:
            self.sweep()
        for s in self.socks:
            s.close()


def send(packets: list[bytes], port: int, rate: int, seconds: float) -> int:
    """Send at ``rate`` packets/s for ``seconds`` (bursts every 10 ms), stamped; returns count."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    per_tick = max(1, rate // 100)
    n = 0
    start = time.monotonic()
    tick = start
    while time.monotonic() - start < seconds:
        for _ in range(per_tick):
            p = bytearray(packets[n % len(packets)])
            STAMP.pack_into(p, STAMP_AT, time.time_ns())
            s.sendto(p, ("127.0.0.1", port))
            n += 1
        tick += 0.01
        time.sleep(max(0.0, tick - time.monotonic()))
    s.close()
    return n


def _pct(xs: list[int], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))] / 1e6, 3)


def measure(
    proc: psutil.Process, packets: list[bytes], port: int, n: int, rate: int, seconds: float
) -> dict[str, Any]:
    sink = Sink(n)
    try:
        send(packets, port, rate, 0.5)  # warm-up (and keyframe) outside the window
        time.sleep(0.2)
        sink.count = 0
        sink.lat.clear()
        sink.app_lat.clear()
        c0 = proc.cpu_times()
        t0 = time.monotonic()
        sent = send(packets, port, rate, seconds)
        time.sleep(0.3)
        c1 = proc.cpu_times()
        wall = time.monotonic() - t0
    finally:
        sink.close()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {
        "fanout": n,
        "sent": sent,
        "delivered": sink.count,
        "delivered_ratio": round(sink.count / (sent * n), 4) if sent else 0,
        "cpu_seconds": round(cpu, 3),
        "cpu_share": round(cpu / wall, 3),
        "packets_per_core_second": round(sink.count / cpu) if cpu > 0 else None,
        "latency_p50_ms": _pct(sink.lat, 0.5),
        "latency_p99_ms": _pct(sink.lat, 0.99),
        "latency_p999_ms": _pct(sink.lat, 0.999),
        "app_latency_p50_ms": _pct(sink.app_lat, 0.5),
        "app_latency_p99_ms": _pct(sink.app_lat, 0.99),
    }


def direct(packets: list[bytes], rate: int, seconds: float) -> dict[str, Any]:
    """The probe with no forwarder: sender straight to sink port 0 (latency only)."""
    r = measure(psutil.Process(), packets, SINK_BASE, 1, rate, seconds)
    return {k: v for k, v in r.items() if "latency" in k or k in ("sent", "delivered")}


def run_switch(
    packets: list[bytes],
    n: int,
    rate: int,
    seconds: float,
    dataplane: bool = True,
    rtcp: bool = False,
) -> dict[str, Any]:
    child = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("switch.py")),
            "--serve-switch",
            str(SWITCH_IN),
            str(SINK_BASE),
            str(n),
            *([] if dataplane else ["--no-dataplane"]),
            *(["--rtcp"] if rtcp else []),
            *([] if SCHED["cpu"] is None else ["--plane-cpu", str(SCHED["cpu"])]),
            *([] if SCHED["rt"] is None else ["--plane-rt", str(SCHED["rt"])]),
        ],
        stdout=subprocess.PIPE,
        text=True,
        # A session of its own, as Janus has under the node's supervisor: with sched_autogroup
        # each gets its own share of the CPU and neither shares one with the bench's sink thread.
        start_new_session=True,
    )
    try:
        if NICE["value"] is not None:
            set_nice(NICE["value"], child.pid)
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line.startswith("ready"), (
            f"switch child said {line!r} (no-plane: the C extension is not built)"
        )
        if dataplane:  # "ready <tid>": the data plane thread, its scheduling applied
            policy = [_policy(int(line.split()[1]))]
        elif SCHED["cpu"] is not None or SCHED["rt"] is not None:
            policy = schedule_forwarder(child.pid)
        else:
            policy = [_policy(child.pid)]
        r = measure(psutil.Process(child.pid), packets, SWITCH_IN, n, rate, seconds)
        return {**r, "scheduling": policy}
    finally:
        child.terminate()
        child.wait(5)


async def _janus_setup(edge: Any, n: int, pub_id: int) -> Any:
    from vmesh.media.publish import VIDEOROOM

    key = edge.settings.secrets.plugin_admin_key
    session = await edge.client.create_session()
    h = await session.attach(VIDEOROOM)
    room = 5000 + pub_id
    await h.request(
        {
            "request": "create",
            "room": room,
            "admin_key": key,
            "publishers": 4,
            "videocodec": "h264",
            "permanent": False,
        }
    )
    await h.request(
        {
            "request": "add_remote_publisher",
            "room": room,
            "id": pub_id,
            "admin_key": key,
            "iface": "127.0.0.1",
            "port": JANUS_IN + 2 * (pub_id % 4),
            "rtcp_port": JANUS_IN + 2 * (pub_id % 4) + 1,
            "streams": [{"type": "video", "mindex": 0, "mid": "0", "codec": "h264"}],
        }
    )
    from vmesh.edge.janus import JanusPluginError

    for i in range(n):
        forward = {
            "request": "rtp_forward",
            "room": room,
            "publisher_id": pub_id,
            "admin_key": key,
            "host": "127.0.0.1",
            "host_family": "ipv4",
            "streams": [{"mid": "0", "port": SINK_BASE + i, "ssrc": i + 1}],
        }
        for attempt in range(20):
            try:
                await h.request(forward)
                break
            except JanusPluginError as e:
                # Now and then Janus 1.1.2 answers 428 "No such feed" just after
                # add_remote_publisher (seen in tests/integration/test_media_publish.py too)
                if "error 428" not in str(e) or attempt == 19:
                    raise
                await asyncio.sleep(0.05)
    return session, h, room


def side_by_side(
    packets: list[bytes],
    rate: int,
    seconds: float,
    fanouts: tuple[int, ...],
    also_python: bool = False,
    with_rtcp: bool = False,
) -> dict[str, Any]:
    from vmesh.edge.service import JanusEdge

    # The remote publisher demultiplexes by SSRC 1000 + 10 * mindex.
    jpackets = [p[:8] + struct.pack("!I", 1000) + p[12:] for p in packets]
    out: dict[str, Any] = {"rate_in_pps": rate, "seconds": seconds, "results": []}
    out["direct"] = direct(packets, rate, seconds)
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory() as tmp:
        edge = JanusEdge.for_data_dir(
            Path(tmp),
            http_port=40100,
            admin_port=40101,
            rtp_port_range=(40200, 40299),
            streaming_port_range=(40300, 40399),
        )
        loop.run_until_complete(edge.start())
        try:
            jproc = psutil.Process(edge.process.pid)
            if NICE["value"] is not None:
                out["janus_autogroup"] = set_nice(NICE["value"], jproc.pid)
            out["janus"] = edge.version
            for k, n in enumerate(fanouts):
                py = run_switch(packets, n, rate, seconds, False) if also_python else None
                sw = run_switch(packets, n, rate, seconds)
                swr = run_switch(packets, n, rate, seconds, rtcp=True) if with_rtcp else None
                session, _, _ = loop.run_until_complete(_janus_setup(edge, n, 101 + k))
                policy = sorted(set(schedule_forwarder(jproc.pid)))
                # Janus's port of this publisher (JANUS_IN + 2 * (id % 4)).
                port = JANUS_IN + 2 * ((101 + k) % 4)
                ja = {**measure(jproc, jpackets, port, n, rate, seconds), "scheduling": policy}
                with contextlib.suppress(Exception):
                    loop.run_until_complete(session.destroy())
                ratio = None
                if sw["packets_per_core_second"] and ja["packets_per_core_second"]:
                    ratio = round(sw["packets_per_core_second"] / ja["packets_per_core_second"], 3)
                row = {"fanout": n, "switch": sw, "janus": ja, "switch_to_janus_per_core": ratio}
                if swr is not None:
                    row["switch_with_rtcp"] = swr
                if py is not None:
                    row["switch_python_path"] = py
                    if py["packets_per_core_second"] and ja["packets_per_core_second"]:
                        row["switch_python_path_to_janus_per_core"] = round(
                            py["packets_per_core_second"] / ja["packets_per_core_second"], 3
                        )
                out["results"].append(row)
        finally:
            loop.run_until_complete(edge.stop())
            loop.close()
    out["pid"] = os.getpid()
    return out
