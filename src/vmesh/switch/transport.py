"""The switch's asyncio UDP adapter: owns the sockets and the clock, the core owns the logic.

Per input: an RTP socket and an RTCP socket (by default the next port, as ffmpeg and most cameras
expect). RTCP arriving on the RTP socket (RFC 5761 multiplexing) is recognised and handled as
RTCP. Per output: RTP leaves from one shared socket; an output with an RTCP destination gets its
own RTCP socket, so the receiver's feedback (PLI/FIR/NACK, RR) on that socket is known to be
about that output.

Destination tokens in ``InputSpec.rtcp_dest`` / ``OutputSpec.dest`` / ``OutputSpec.rtcp_dest``
are ``(host, port)`` tuples, or ``Latched(input_id)`` for "wherever the source's RTCP came from"
(sources such as ffmpeg send RTCP from a port nobody configured; requests are held until the
first RTCP packet tells us where to send them).

``Switch.tick`` runs every ``tick_interval`` seconds: inline, after a packet's copies are sent,
while media flows (no extra wake-up), and from a timer when nothing arrives. ``use_uvloop()``
installs uvloop's event loop policy where it is installed (it is a vmesh dependency).

Data plane (docs/switch.md, "Data plane"): where the C extension ``_dataplane`` is built (``pip
install -e .``), the inputs' RTP sockets are plain sockets read by a thread whose loop is C
(``recvmmsg``, the steady state of ``forward_rtp`` in C, ``sendmmsg``); what is not the steady
state comes back to :meth:`SwitchTransport._plane_slow` on that thread, which runs the Python core,
and ``Switch.tick`` runs there too. The core is touched only under ``self._lock`` (a route never
lands between two copies of a packet); sends other than media copies from that thread are handed
to the event loop. ``dataplane=False``, a custom ``clock`` or a missing extension: the path below.

The media path is kept short (docs/switch.md, "Performance"): RTP from an input goes through
``Switch.forward_rtp``, which hands each copy, in one scratch buffer, straight to ``sendto`` on
the shared output socket (a non-blocking duplicate of the asyncio transport's socket). Like any
UDP forwarder it does not queue: a copy the kernel refuses (full send buffer, ICMP error) is
dropped and counted in ``OutputStats.send_errors``.

Public: ``SwitchTransport``, ``Latched``, ``use_uvloop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Collection, Hashable
from typing import Any, NamedTuple, cast

from vmesh.switch.core import InputSpec, OutputSpec, Replay, Send, Switch

DataPlane: Any
try:
    from vmesh.switch._dataplane import DataPlane
except ImportError:  # pragma: no cover - built by `pip install -e .`; without a compiler: Python
    DataPlane = None

log = logging.getLogger(__name__)

Address = tuple[str, int]
RECEIVE_BUFFER = 4 * 1024 * 1024
GIL_INTERVAL = 0.0005  # s: the longest the data plane waits for the GIL held by other Python code
# Data planes running in this process that lowered the switch interval, and its value before.
_gil = {"users": 0, "saved": 0.0}


class Latched(NamedTuple):
    """Send to the address the input's RTCP last came from."""

    input_id: str


def use_uvloop() -> bool:
    """Install uvloop's event loop policy if it can be imported; say whether it was."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but keep stdlib working
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class _Endpoint(asyncio.DatagramProtocol):
    """One bound UDP socket; hands every datagram to ``on_datagram(data, addr)`` (``addr`` as the
    event loop gives it: ``(host, port)``, plus flow and scope for IPv6)."""

    def __init__(self, on_datagram: Callable[[bytes, Any], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # the kernel caps it; the default still works
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.on_datagram(data, addr)
        except Exception:
            log.exception("switch datagram handler failed")

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error=%s", exc)

    def sendto(self, data: bytes, addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


def _address(addr: Any) -> Address:
    return (str(addr[0]), int(addr[1]))


class SwitchTransport:
    """Runs a :class:`Switch` on UDP sockets bound to ``host``."""

    def __init__(
        self,
        switch: Switch,
        host: str = "127.0.0.1",
        tick_interval: float = 0.05,
        clock: Callable[[], float] = time.time,
        dataplane: bool = True,
        gil_interval: float | None = GIL_INTERVAL,
        nice: int | None = None,
        cpus: Collection[int] | None = None,
        realtime_priority: int | None = None,
    ) -> None:
        self.switch = switch
        self.host = host
        self.tick_interval = tick_interval
        self.clock = clock
        self._endpoints: list[_Endpoint] = []
        self._routes: dict[Hashable, _Endpoint] = {}
        self._latched: dict[str, Address] = {}
        self._out_rtp: _Endpoint | None = None
        self._out_sock: socket.socket | None = None
        self._out_addr: dict[Hashable, Address] = {}
        # Outputs whose copies leave from a socket of their own (``add_output(via_fd=)``): a dup
        # of that socket per destination, owned here.
        self._via: dict[Hashable, socket.socket] = {}
        self._copy_sender: Callable[[bytearray, Any], object] = self._send_copy
        self._timer: asyncio.TimerHandle | None = None
        self._next_tick = 0.0
        self._running = False
        self._input_endpoints: dict[str, list[_Endpoint]] = {}
        # The C data plane (``_dataplane.c``): used when built, asked for, and on the wall clock.
        self.use_dataplane = dataplane and DataPlane is not None and clock is time.time
        self._lock = threading.Lock()  # the core, between the data plane and the event loop
        self._plane: Any = None
        self._plane_thread: threading.Thread | None = None
        self._plane_socks: dict[str, socket.socket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        # While the data plane runs: sys.setswitchinterval at most this (None: leave it alone).
        self.gil_interval = gil_interval
        self._gil_user = False
        # The data plane thread's nice value (None: inherited). A negative one needs root or
        # CAP_SYS_NICE (systemd: Nice= or AmbientCapabilities=); refused, the thread keeps its own.
        self.nice = nice
        # The data plane thread's CPUs (None: any) and SCHED_FIFO priority (None: the normal
        # scheduler); docs/switch.md, "Scheduling". Refused, the thread runs as it would without.
        self.cpus = None if cpus is None else frozenset(cpus)
        if realtime_priority is not None and not 1 <= realtime_priority <= 99:
            raise ValueError(f"realtime_priority must be 1 to 99, got {realtime_priority}")
        self.realtime_priority = realtime_priority
        self.plane_tid: int | None = None  # the data plane thread's kernel id, once it runs
        self._plane_scheduled = threading.Event()  # set once plane_tid and the above are done

    async def _bind(self, port: int, handler: Callable[[bytes, Any], None]) -> _Endpoint:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(
            lambda: _Endpoint(handler), local_addr=(self.host, port)
        )
        self._endpoints.append(proto)
        return proto

    @staticmethod
    def _port(ep: _Endpoint) -> int:
        assert ep.transport is not None
        return int(ep.transport.get_extra_info("sockname")[1])

    async def start(self) -> None:
        """Bind the shared output socket and start the RTCP timer."""
        self._out_rtp = await self._bind(0, lambda data, addr: None)
        assert self._out_rtp.transport is not None
        fd = self._out_rtp.transport.get_extra_info("socket").fileno()
        self._out_sock = socket.socket(fileno=os.dup(fd))
        self._out_sock.setblocking(False)
        self._copy_sender = self._out_sock.sendto
        self._running = True
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.use_dataplane:
            # A batch of packets needs the GIL. Python code running on another thread (the
            # node's event loop) is asked to let it go only after the switch interval, 5 ms by
            # default: that wait is a forwarding delay. The data plane holds the GIL for
            # microseconds per batch, so a shorter interval costs the other threads little.
            if self.gil_interval is not None:
                if _gil["users"] == 0:
                    _gil["saved"] = sys.getswitchinterval()
                _gil["users"] += 1
                self._gil_user = True
                sys.setswitchinterval(min(self.gil_interval, sys.getswitchinterval()))
            self._plane = DataPlane(
                self.switch,
                self._out_sock.fileno(),
                self._lock,
                self._plane_slow,
                self._plane_tick,
                self.tick_interval,
            )
            self._plane_thread = threading.Thread(
                target=self._run_plane, name="switch-dataplane", daemon=True
            )
            self._plane_thread.start()
            # When start() returns, plane_tid is known and the thread's scheduling is applied.
            await asyncio.to_thread(self._plane_scheduled.wait)
        else:
            self._tick(self.clock())

    async def close(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._plane_thread is not None:
            self._plane.stop()
            await asyncio.to_thread(self._plane_thread.join)
            self._plane_thread = None
        if self._gil_user:  # the last data plane to stop puts the interval back
            self._gil_user = False
            _gil["users"] -= 1
            if _gil["users"] == 0:
                sys.setswitchinterval(_gil["saved"])
        for sock in self._plane_socks.values():
            sock.close()
        self._plane_socks.clear()
        if self._out_sock is not None:
            self._out_sock.close()
            self._out_sock = None
        for via in self._via.values():
            via.close()
        self._via.clear()
        for ep in self._endpoints:
            if ep.transport is not None:
                ep.transport.close()
        self._endpoints.clear()

    async def add_input(self, spec: InputSpec, port: int = 0, rtcp_port: int | None = None) -> int:
        """Add an input listening on ``port`` (0: any) and ``rtcp_port`` (default ``port + 1``,
        or any free port when ``port`` is 0). Returns the RTP port."""
        with self._lock:
            self.switch.add_input(spec)
        input_id = spec.id
        switch = self.switch
        clock = self.clock
        spare: list[Send] = []  # reused for what forward_rtp returns (usually nothing)

        def on_rtp(data: bytes, addr: Any) -> None:
            # The endpoint's datagram_received itself (one Python frame per packet).
            try:
                now = clock()
                if len(data) >= 2 and 192 <= data[1] <= 223:  # RFC 5761: RTCP on the RTP port
                    self._latched[input_id] = _address(addr)
                    self._send(switch.on_input_rtcp(input_id, data, now))
                    return
                rest = switch.forward_rtp(input_id, data, now, self._copy_sender, spare)
                if rest:
                    try:
                        self._send(rest)
                    finally:
                        rest.clear()
                if now >= self._next_tick:
                    self._tick(now)
            except Exception:
                log.exception("switch rtp handler failed input=%s", input_id)

        def on_rtcp(data: bytes, addr: Any) -> None:
            self._latched[input_id] = _address(addr)
            with self._lock:
                self._send(switch.on_input_rtcp(input_id, data, clock()))

        sock: socket.socket | None = None
        eps: list[_Endpoint] = []
        try:
            if self._plane is not None:
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
                sock.bind((self.host, port))
                sock.setblocking(False)
                rtp_port = int(sock.getsockname()[1])
            else:
                rtp = await self._bind(port, on_rtp)
                rtp.datagram_received = on_rtp  # type: ignore[method-assign]
                rtp_port = self._port(rtp)
                eps.append(rtp)
            if rtcp_port is None:
                rtcp_port = port + 1 if port else 0
            rtcp = await self._bind(rtcp_port, on_rtcp)
        except OSError:
            if sock is not None:
                sock.close()
            for ep in eps:
                if ep.transport is not None:
                    ep.transport.close()
            with self._lock:
                self.switch.remove_input(input_id)
            raise
        if spec.rtcp_dest is not None:
            self._routes[spec.rtcp_dest] = rtcp
        self._input_endpoints[input_id] = [*eps, rtcp]
        if sock is not None:
            self._plane_socks[input_id] = sock
            self._plane.add(sock.fileno(), input_id)
        log.info("switch input=%s rtp_port=%d rtcp_port=%d", input_id, rtp_port, self._port(rtcp))
        return rtp_port

    def remove_input(self, input_id: str) -> None:
        """Forget an input and close its sockets (its ports can be bound again at once)."""
        with self._lock:
            self.switch.remove_input(input_id)
            sock = self._plane_socks.pop(input_id, None)
            if sock is not None:
                self._plane.discard(sock.fileno())
                sock.close()
        self._latched.pop(input_id, None)
        for ep in self._input_endpoints.pop(input_id, []):
            self._routes = {d: e for d, e in self._routes.items() if e is not ep}
            if ep in self._endpoints:
                self._endpoints.remove(ep)
            if ep.transport is not None:
                ep.transport.close()

    async def add_output(self, spec: OutputSpec, via_fd: int | None = None) -> int | None:
        """Add an output; returns the port of its RTCP socket if it has an RTCP destination.

        ``via_fd``: the output's media leaves from this UDP socket (its own address and port)
        instead of the shared output socket — a fabric link's end that faces the neighbour, so
        the copies go straight out rather than through a relay. The socket is duplicated and
        the duplicate closed with the output; ``spec.dest`` must then be a ``(host, port)``
        that socket can reach."""
        assert self._out_rtp is not None, "start() first"
        dest = spec.dest
        direct = isinstance(dest, tuple) and len(dest) == 2 and not isinstance(dest, Latched)
        if via_fd is not None and not direct:
            raise ValueError(f"an output sent from its own socket needs (host, port), got {dest!r}")
        via = None
        if via_fd is not None:
            via = socket.socket(fileno=os.dup(via_fd))
            via.setblocking(False)
        with self._lock:
            try:
                self.switch.add_output(spec)
            except BaseException:
                if via is not None:
                    via.close()
                raise
            if via is not None:
                self._via[dest] = via
        self._routes[spec.dest] = self._out_rtp
        if isinstance(dest, tuple) and direct:
            self._out_addr[dest] = (str(dest[0]), int(dest[1]))
            plain = isinstance(dest[0], str) and type(dest[1]) is int and via is None
            if self._plane is not None:
                with self._lock:
                    fd = via.fileno() if via is not None else -1
                    self._plane.set_dest(dest, str(dest[0]), int(dest[1]), fd)
        else:
            plain = False
        if not plain:  # a token the socket cannot take as it is: resolve every copy
            self._copy_sender = self._send_copy
        if spec.rtcp_dest is None:
            return None
        output_id = spec.id

        def on_rtcp(data: bytes, addr: Any) -> None:
            with self._lock:
                self._send(self.switch.on_rtcp(output_id, data, self.clock()))

        ep = await self._bind(0, on_rtcp)
        self._routes[spec.rtcp_dest] = ep
        return self._port(ep)

    def remove_output(self, output_id: str) -> None:
        """Forget an output (a BYE goes to its receiver) and close its RTCP socket."""
        with self._lock:
            o = self.switch._outputs.get(output_id)  # the transport owns its core
            spec = o.spec if o is not None else None
            self._send(self.switch.remove_output(output_id))
            if spec is None:
                return
            self._out_addr.pop(spec.dest, None)
            if self._plane is not None and not any(
                x.dest == spec.dest for x in self.switch._outputs.values()
            ):
                self._plane.forget_dest(spec.dest)
            # under the lock: the data plane holds it while a batch of copies is made and sent
            via = self._via.pop(spec.dest, None)
            if via is not None:
                via.close()
        ep = self._routes.pop(spec.rtcp_dest, None) if spec.rtcp_dest is not None else None
        if ep is not None and ep is not self._out_rtp:
            if ep in self._endpoints:
                self._endpoints.remove(ep)
            if ep.transport is not None:
                ep.transport.close()

    def route(self, output_id: str, input_id: str, replay: Replay = Replay.gop) -> None:
        with self._lock:
            self._send(self.switch.route(output_id, input_id, self.clock(), replay))

    def unroute(self, output_id: str) -> None:
        with self._lock:
            self.switch.unroute(output_id)

    @property
    def lock(self) -> threading.Lock:
        """Held while the data plane handles a batch (and by every change to the core)."""
        return self._lock

    def relay(
        self, fd: int, port: int, lo_fd: int, link: Any, slow: Callable[[bytes, Any], None]
    ) -> bool:
        """Have the data plane read the UDP socket ``fd`` (a fabric ``LinkIn``'s, facing the
        neighbour) and relay its steady state to this host's port ``port`` from socket ``lo_fd``,
        handing the rest to ``slow(data, addr)`` with the lock held (``_dataplane.c``, "fabric
        link relays"). False when there is no data plane: the caller reads the socket itself."""
        if self._plane is None:
            return False
        with self._lock:
            self._plane.add_relay(fd, "127.0.0.1", port, lo_fd, link, slow)
        return True

    def unrelay(self, fd: int) -> None:
        """Stop relaying ``fd`` (before it is closed)."""
        if self._plane is not None:
            with self._lock:
                self._plane.discard(fd)

    def dataplane_relayed(self) -> int | None:
        """Datagrams the data plane relayed itself for fabric links; ``None`` without one."""
        return None if self._plane is None else int(self._plane.relayed())

    def dataplane_counts(self) -> tuple[int, int] | None:
        """``(fast, slow)``: datagrams the C data plane forwarded itself and handed to
        ``Switch.forward_rtp``; ``None`` when it is not running."""
        return None if self._plane is None else self._plane.counts()

    def _run_plane(self) -> None:
        """The data plane thread: on a busy machine a forwarder that waits for a CPU is late by
        the wait, so it may run at a higher priority (``nice``, ``realtime_priority``) than the
        node's other work, on CPUs of its own (``cpus``)."""
        try:
            self._schedule_plane()
        finally:
            self._plane_scheduled.set()
        self._plane.run()

    def _schedule_plane(self) -> None:
        self.plane_tid = tid = threading.get_native_id()
        if self.nice is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, self.nice)
            except OSError as e:
                log.warning("switch data plane: nice %d refused (%s); left as it was", self.nice, e)
        if self.cpus is not None:
            try:
                os.sched_setaffinity(tid, self.cpus)
            except (OSError, ValueError) as e:
                log.warning(
                    "switch data plane: cpus %s refused (%s); runs on any CPU", sorted(self.cpus), e
                )
        if self.realtime_priority is not None:
            # Each copy's receive path runs inside our sendmmsg and wakes the receiver, which the
            # kernel then tends to put on this CPU; at the normal policy it preempts the rest of
            # the fan-out (docs/switch.md, "The latency tail"). SCHED_FIFO is not preempted by it.
            try:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(self.realtime_priority))
            except OSError as e:
                log.warning(
                    "switch data plane: SCHED_FIFO priority %d refused (%s); normal scheduling "
                    "(needs root, CAP_SYS_NICE or a LimitRTPRIO)",
                    self.realtime_priority,
                    e,
                )
        fifo = os.sched_getscheduler(tid) == os.SCHED_FIFO
        log.info(
            "switch data plane tid=%d cpus=%s policy=%s",
            tid,
            ",".join(map(str, sorted(os.sched_getaffinity(tid)))),
            f"fifo:{os.sched_getparam(tid).sched_priority}" if fifo else "normal",
        )

    def _plane_slow(self, input_id: str, data: bytes, addr: Any, now: float) -> None:
        """The data plane's thread, lock held: a datagram that is not the steady state."""
        try:
            if len(data) >= 2 and 192 <= data[1] <= 223:  # RFC 5761: RTCP on the RTP port
                self._latched[input_id] = _address(addr)
                rest = self.switch.on_input_rtcp(input_id, data, now)
            else:
                rest = self.switch.forward_rtp(input_id, data, now, self._copy_sender)
            if rest:
                self._send(rest)
        except Exception:
            log.exception("switch rtp handler failed input=%s", input_id)

    def _plane_tick(self, now: float) -> None:
        """The data plane's thread, every ``tick_interval`` (it waits in epoll with a timeout)."""
        with self._lock:
            try:
                self._send(self.switch.tick(now))
            except Exception:
                log.exception("switch tick failed")

    def _send_copy(self, buf: bytearray, dest: Hashable) -> None:
        """One output's copy of a packet when some output's destination is not a plain
        ``(str, int)`` address (``buf`` is reused for the next copy)."""
        direct = self._direct(dest)
        if direct is None:
            self._send([Send(dest, bytes(buf))])
            return
        direct[0].sendto(buf, direct[1])

    def _direct(self, dest: Hashable) -> tuple[socket.socket, Address] | None:
        """The socket and address an output's media to ``dest`` leaves by, at once and from any
        thread: the output's own socket (``add_output(via_fd=)``) or the shared output socket.
        None when ``dest`` is not an output's ``(host, port)``."""
        addr = self._out_addr.get(dest)
        sock = self._via.get(dest, self._out_sock)
        return None if addr is None or sock is None else (sock, addr)

    def _send(self, sends: list[Send]) -> None:
        """Send what the core returned. Media to an output goes at once on the shared output
        socket, from any thread (callers hold the lock, so it cannot be overtaken by the data
        plane's next copy); anything else from the data plane's thread goes via the event loop,
        which owns the other sockets."""
        if self._plane is not None and sends:
            later = []
            for send in sends:
                direct = self._direct(send.dest)
                if direct is not None:
                    with contextlib.suppress(OSError):  # UDP: lost, like any copy
                        direct[0].sendto(send.data, direct[1])
                else:
                    later.append(send)
            sends = later
            if sends and threading.get_ident() != self._loop_thread and self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                    self._loop.call_soon_threadsafe(self._send, sends)
                return
        for dest, data in sends:
            ep = self._routes.get(dest)
            if ep is None:
                log.warning("switch no socket for dest=%s", dest)
                continue
            if isinstance(dest, Latched):
                addr = self._latched.get(dest.input_id)
                if addr is None:
                    continue  # the source has not sent RTCP yet: nowhere to send it
                ep.sendto(data, addr)
            elif isinstance(dest, tuple) and len(dest) == 2:
                via = self._via.get(dest)
                if via is not None:
                    with contextlib.suppress(OSError):  # UDP: lost, like any copy
                        via.sendto(data, (str(dest[0]), int(dest[1])))
                else:
                    ep.sendto(data, (str(dest[0]), int(dest[1])))
            else:
                log.warning("switch cannot send to dest=%r: not (host, port)", dest)

    def _tick(self, now: float) -> None:
        """Run ``Switch.tick`` and re-arm the timer one interval from now (media packets run it
        inline when it is due, so while media flows the timer never fires)."""
        self._next_tick = now + self.tick_interval
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.tick_interval, self._on_timer)
        with self._lock:
            self._send(self.switch.tick(now))

    def _on_timer(self) -> None:
        self._timer = None
        if self._running:
            self._tick(self.clock())
