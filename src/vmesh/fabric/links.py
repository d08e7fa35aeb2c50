"""The two ends of one stream on one node link: UDP relays between the node's switch (loopback)
and the neighbour (the node's fabric address), RTP and RTCP multiplexed on one port (RFC 5761).

``LinkOut`` (upstream end): the switch output for the neighbour sends its RTP from ``wan``
itself (the transport's ``add_output(via_fd=)``: straight out, no relay in Python) and its sender
reports to ``lo_rtcp``, from where they leave from ``wan`` too. RTCP from the neighbour (NACK, PLI,
RR) is handed to the switch output's RTCP socket, so the switch answers NACKs from the output's
history and relays PLIs to its own source.

``LinkIn`` (downstream end): RTP from the neighbour goes to the switch input on loopback and
through a ``NackRequester`` (gaps become NACKs to the neighbour at once, retried at the link's
measured repair round trip; packets that already came are dropped here); the switch input's own
RTCP (keyframe requests, receiver reports), sent to ``lo``, goes on to the neighbour. Where the
switch runs its C data plane, the plane's thread reads ``wan`` and relays the steady state itself
(``attach``: the next packet in order from the peer; ``_dataplane.c``, "fabric link relays"),
handing everything else to ``_from_peer``; the link's state is then changed only with the
transport's lock held. Without it, the node's event loop reads ``wan``.

A ``LinkIn`` may hold a **standby leg** (``add_standby``): a second socket taking the same stream
from another neighbour (a dual-homed camera node's second parent), hot but not forwarded — it
keeps the packets since the last keyframe's first packet. ``promote`` makes it the link's
upstream at once: the kept GOP goes to the switch input first (a new SSRC there: a source
restart that starts on a keyframe), then the leg's live packets; the old leg is closed. No
signalling is needed at that moment, so a dead primary link costs only the time to notice it.

The switch's own sockets stay on loopback; only these sockets face the network. Counters (RTP
packets and bytes per direction) are what the link carries for this stream; a ``LinkOut``'s are
its switch output's (``counts``).

Public: ``LinkOut``, ``LinkIn``, ``Standby``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from vmesh.fabric.nack import NackRequester
from vmesh.switch.codecs import Codec, starts_keyframe
from vmesh.switch.rtp import MalformedPacket, is_rtcp, payload_bounds

log = logging.getLogger(__name__)

Address = tuple[str, int]
LOOPBACK = "127.0.0.1"


class _PlainSock:
    """A non-blocking UDP socket that is not an asyncio transport, so that either the switch's data
    plane thread (``SwitchTransport.relay``) or the event loop (``read_in_loop``) reads it; sends
    are plain ``sendto`` calls, safe from either thread."""

    def __init__(self, sock: socket.socket, on: Callable[[bytes, Address], None]) -> None:
        self.sock = sock
        self.on = on
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_in_loop(self) -> None:
        if self._loop is None and not self.closed:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self.sock.fileno(), self._readable)

    def stop_reading(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None

    def _readable(self) -> None:
        for _ in range(64):  # then let the loop run something else
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # an ICMP error of an earlier send
                log.debug("fabric link udp error=%s", e)
                continue
            try:
                self.on(data, (str(addr[0]), int(addr[1])))
            except Exception:
                log.exception("fabric link datagram handler failed")

    def send(self, data: bytes, addr: Address | None) -> None:
        if addr is not None and not self.closed:
            with contextlib.suppress(OSError):  # UDP: a full buffer or an ICMP error loses it
                self.sock.sendto(data, addr)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        if not self.closed:
            self.stop_reading()
            self.closed = True
            self.sock.close()


PortRange = tuple[int, int]


def _bind(
    host: str, on: Callable[[bytes, Address], None], ports: PortRange | None = None
) -> _PlainSock:
    """A UDP socket on ``host``: any free port, or the first free one of ``ports`` from a
    random start (``[fabric] port_range``: the link ends that face the network). Nobody reads
    it until it is asked to be (``read_in_loop``, or the switch's data plane)."""
    candidates: Iterable[int] = [0]
    if ports is not None:
        lo, hi = ports
        n = hi - lo + 1
        start = random.randrange(n)
        candidates = (lo + (start + i) % n for i in range(n))
    for port in candidates:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            if e.errno != errno.EADDRINUSE or ports is None:
                raise
            continue
        return _PlainSock(sock, on)
    assert ports is not None
    raise OSError(
        errno.EADDRINUSE, f"no free UDP port on {host} in [fabric] port_range {ports[0]}-{ports[1]}"
    )


class Relay(Protocol):
    """What a ``LinkIn`` needs of the switch transport (``SwitchTransport``)."""

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    def relay(
        self, fd: int, port: int, lo_fd: int, link: Any, slow: Callable[[bytes, Address], None]
    ) -> bool: ...

    def unrelay(self, fd: int) -> None: ...


class LinkOut:
    """Upstream end of (stream, link): see the module docstring."""

    def __init__(self, peer: Address) -> None:
        self.peer: Address = peer
        self.switch_rtcp: Address | None = None  # the switch output's RTCP socket
        # (RTP packets, bytes, retransmissions) the switch output sent from ``wan``
        self.counts: Callable[[], tuple[int, int, int] | None] = lambda: None
        self.rtcp_in = 0
        self._socks: list[_PlainSock] = []
        self.wan: _PlainSock
        self.lo_rtcp: _PlainSock

    @classmethod
    async def open(cls, address: str, peer: Address, ports: PortRange | None = None) -> LinkOut:
        """Both sockets bound and read by the running event loop (RTCP only: the RTP leaves
        from ``wan`` by the switch's hand)."""
        self = cls(peer)
        self.wan = _bind(address, self._from_peer, ports)
        try:
            self.lo_rtcp = _bind(LOOPBACK, self._from_switch_rtcp)
        except BaseException:
            self.wan.close()
            raise
        self._socks = [self.wan, self.lo_rtcp]
        for sock in self._socks:
            sock.read_in_loop()
        return self

    @property
    def wan_fd(self) -> int:
        """The socket the switch output sends the stream's RTP from."""
        return self.wan.fileno()

    def _from_switch_rtcp(self, data: bytes, addr: Address) -> None:
        self.switch_rtcp = addr  # the output's RTCP socket (its SRs come from there)
        self.wan.send(data, self.peer)

    def _from_peer(self, data: bytes, addr: Address) -> None:
        if is_rtcp(data):
            self.rtcp_in += 1
            self.lo_rtcp.send(data, self.switch_rtcp)

    def stats(self) -> dict[str, int]:
        packets, bytes_, retransmitted = self.counts() or (0, 0, 0)
        return {
            "packets": packets,
            "bytes": bytes_,
            "retransmitted": retransmitted,
            "rtcp_in": self.rtcp_in,
        }

    def close(self) -> None:
        for s in self._socks:
            s.close()


class Standby:
    """A second upstream leg of a ``LinkIn``, held hot (see the module docstring): its socket,
    its neighbour's ``LinkOut`` once known, and for video the packets from the first packet of
    the last keyframe on (at most ``max_packets``; beyond that nothing is kept until the next
    keyframe). Sans-IO apart from owning the socket."""

    def __init__(self, sock: _PlainSock, video: bool, max_packets: int = 4096) -> None:
        self.sock = sock
        self.video = video
        self.max_packets = max_packets
        self.peer: Address | None = None
        self.last_rtp_at: float | None = None
        self.packets = 0
        self.gop: list[bytes] = []
        self._gop_ts: bytes | None = None

    def keep(self, data: bytes, now: float) -> None:
        self.last_rtp_at = now
        self.packets += 1
        if not self.video:
            return
        try:
            start, end = payload_bounds(data)
        except MalformedPacket:
            return
        ts = data[4:8]
        if starts_keyframe(Codec.h264, data[start:end]) and ts != self._gop_ts:
            self.gop = [data]  # a new keyframe: what came before it is not needed
            self._gop_ts = ts
        elif self.gop:
            if len(self.gop) >= self.max_packets:
                self.gop, self._gop_ts = [], None
            else:
                self.gop.append(data)


class LinkIn:
    """Downstream end of (stream, link): see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.peer: Address | None = None  # the upstream's LinkOut; None: any (while opening)
        self.switch_rtp: Address | None = None  # the switch input's RTP port on loopback
        self.nack = NackRequester()
        self.clock = clock
        self.rtcp_out = 0
        self.last_rtp_at: float | None = None  # when the neighbour's last RTP packet came
        self.standby: Standby | None = None
        self.promotions = 0
        # the switch transport relaying ``wan`` in its data plane (``attach``), and the lock
        # that then guards this link's state
        self._relay: Relay | None = None
        self.lock: AbstractContextManager[Any] = contextlib.nullcontext()
        self._socks: list[_PlainSock] = []
        self.wan: _PlainSock
        self.lo: _PlainSock

    @classmethod
    async def open(
        cls,
        address: str,
        clock: Callable[[], float] = time.time,
        ports: PortRange | None = None,
    ) -> LinkIn:
        self = cls(clock)
        self.wan = _bind(address, self._from_peer, ports)
        try:
            self.lo = _bind(LOOPBACK, self._from_switch)
        except BaseException:
            self.wan.close()
            raise
        self.lo.read_in_loop()
        self._socks = [self.wan, self.lo]
        return self

    def attach(self, relay: Relay | None) -> None:
        """Start taking the neighbour's packets (``switch_rtp`` set): relayed by ``relay``'s data
        plane when it has one (and this link runs on the wall clock), else read by the loop."""
        assert self.switch_rtp is not None
        if relay is not None and self.clock is time.time:
            self.lock = relay.lock
            if self._listen(relay, self.wan):
                self._relay = relay
                return
            self.lock = contextlib.nullcontext()
        self.wan.read_in_loop()

    def _listen(self, relay: Relay, sock: _PlainSock) -> bool:
        assert self.switch_rtp is not None
        return relay.relay(
            sock.fileno(), self.switch_rtp[1], self.lo.fileno(), self, self._from_peer
        )

    def _from_peer(self, data: bytes, addr: Address) -> None:
        if is_rtcp(data):
            return  # the upstream output's sender reports: nothing here needs them
        if self.peer is not None and addr != self.peer:
            return  # a former upstream still sending (after a re-route): not ours any more
        self.last_rtp_at = self.clock()
        self._forward(data, self.last_rtp_at)

    def _forward(self, data: bytes, now: float) -> None:
        if self.nack.duplicate(data):
            return  # already forwarded: the channel must not send (and count) it twice
        self.lo.send(data, self.switch_rtp)
        req = self.nack.on_rtp(data, now)
        if req is not None:
            self._to_peer(req)

    # --- the standby leg ---------------------------------------------------------------------

    async def add_standby(
        self, address: str, video: bool, ports: PortRange | None = None
    ) -> Standby:
        """Bind a standby leg's socket on ``address``; its neighbour is set in ``peer`` once
        the neighbour answers (until then packets from any address are kept)."""
        self.drop_standby()
        standby: Standby | None = None

        def on(data: bytes, addr: Address) -> None:
            if standby is None or is_rtcp(data):
                return
            if standby.peer is not None and addr != standby.peer:
                return
            standby.keep(data, self.clock())

        sock = _bind(address, on, ports)
        sock.read_in_loop()
        standby = self.standby = Standby(sock, video)
        return standby

    def drop_standby(self) -> None:
        if self.standby is not None:
            self.standby.sock.close()
            self.standby = None

    def promote(self) -> None:
        """The standby leg becomes this link's upstream (see the module docstring)."""
        standby = self.standby
        if standby is None:
            raise RuntimeError("no standby leg to promote")
        relay, self._relay = self._relay, None
        if relay is not None:  # (it takes the lock itself)
            relay.unrelay(self.wan.fileno())
        with self.lock:
            self.standby = None
            old = self.wan
            old.close()
            standby.sock.stop_reading()
            self.wan, self.peer = standby.sock, standby.peer
            self.wan.on = self._from_peer
            self._socks = [self.wan, self.lo]
            self.nack = NackRequester()  # another sender: nothing of the old one can be asked for
            self.promotions += 1
            now = self.clock()
            for data in standby.gop:
                self._forward(data, now)
            self.last_rtp_at = standby.last_rtp_at
        if relay is not None and self._listen(relay, self.wan):
            self._relay = relay
        else:
            self.wan.read_in_loop()

    def _from_switch(self, data: bytes, addr: Address) -> None:
        with self.lock:
            self._to_peer(data)  # keyframe requests and receiver reports of the switch input

    def _to_peer(self, data: bytes) -> None:
        self.rtcp_out += 1
        self.wan.send(data, self.peer)

    def tick(self) -> None:
        with self.lock:
            req = self.nack.tick(self.clock())
            if req is not None:
                self._to_peer(req)

    def stats(self) -> dict[str, int | float | None]:
        n = self.nack.stats()
        return {
            "packets": n.packets,
            "bytes": n.bytes,
            "nack_requested": n.requested,
            "nack_recovered": n.recovered,
            "nack_given_up": n.given_up,
            "duplicates": n.duplicates,
            "rtt_ms": n.rtt_ms,
            "retry_ms": n.retry_ms,
            "rtcp_out": self.rtcp_out,
            "standby_packets": self.standby.packets if self.standby is not None else None,
            "promotions": self.promotions,
        }

    def close(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:  # (it takes the lock itself)
            relay.unrelay(self.wan.fileno())
        with self.lock:
            for s in self._socks:
                s.close()
            self.drop_standby()
