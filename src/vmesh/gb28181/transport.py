"""The asyncio adapter of the GB/T 28181 SIP core: sockets and clock around the sans-IO layers.

:class:`SipEndpoint` owns a UDP socket and (optionally) a TCP listener, parses what arrives with
:mod:`.message`, drives a :class:`~vmesh.gb28181.transaction.TransactionLayer` with the loop's
monotonic clock, executes its :class:`~vmesh.gb28181.transaction.Send` actions, and schedules
``timeout`` with ``loop.call_at``. Requests to a peer that reached us over TCP go down that peer's
own connection (devices behind NAT cannot be dialled back). On asyncio's own event loop the UDP
socket is drained after each wake-up (up to 32 datagrams: that loop reads one per wake-up; uvloop
and the TCP stream reader take all that is queued by themselves). Malformed requests get 400 when
enough of them parsed to answer, and are otherwise dropped with a log line; nothing malformed
raises out.

The application (the TU) supplies ``on_request(request, source, transaction)``; it answers with
:meth:`SipEndpoint.respond`. :meth:`SipEndpoint.request` sends a request and awaits its final
response (or raises ``TimeoutError`` when Timer B/F fires).

Public: ``SipEndpoint``, ``RequestHandler``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from vmesh.gb28181.message import (
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
)
from vmesh.gb28181.transaction import (
    Action,
    Address,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    TimedOut,
    Timers,
    TransactionLayer,
    TransportFailed,
)

log = logging.getLogger(__name__)

RequestHandler = Callable[[SipRequest, Address, ServerTransaction | None], None]


# Datagrams read per wake-up at most (libuv, under uvloop, reads up to 32 too).
_DRAIN = 32


class _Udp(asyncio.DatagramProtocol):
    """Hands each datagram to the endpoint. On asyncio's own loop it then reads what else is
    queued on the socket (up to ``_DRAIN``): that loop reads one datagram per wake-up, and a
    storm queues many while the node works — each is then one more ``epoll_wait`` and loop turn.
    ``sock`` is None where the loop drains by itself (uvloop)."""

    def __init__(self, endpoint: SipEndpoint, sock: socket.socket | None) -> None:
        self.endpoint = endpoint
        self.sock = sock
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        incoming = self.endpoint._incoming
        incoming(data, (addr[0], addr[1]), None)
        sock = self.sock
        if sock is None:
            return
        for _ in range(_DRAIN - 1):
            if self.transport is None or self.transport.is_closing():
                return  # closed while handling: what is queued is not ours to answer any more
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return  # nothing more queued: back to the loop
            except OSError as e:
                self.error_received(e)
                return
            incoming(data, (addr[0], addr[1]), None)

    def error_received(self, exc: Exception) -> None:
        log.info("sip udp receive error: %s", exc)


class SipEndpoint:
    """One SIP endpoint (a GB platform's signalling port) on UDP and optionally TCP."""

    def __init__(self, on_request: RequestHandler, *, timers: Timers | None = None) -> None:
        self.on_request = on_request
        self.layer = TransactionLayer(timers)
        self._loop = asyncio.get_running_loop()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp: dict[Address, asyncio.StreamWriter] = {}
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0  # the deadline _timer was armed for
        self._waiters: dict[int, asyncio.Future[SipResponse]] = {}
        self.on_stray_response: Callable[[SipResponse], None] | None = None

    async def start_udp(self, host: str, port: int = 0) -> Address:
        (family, kind, proto, _, addr), *_ = await self._loop.getaddrinfo(
            host, port, type=socket.SOCK_DGRAM
        )
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.bind(addr)
            # The socket is ours (not only the transport's) so that the protocol can drain it.
            selector_loop = isinstance(self._loop, asyncio.selector_events.BaseSelectorEventLoop)
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _Udp(self, sock if selector_loop else None), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        self._udp = transport
        bound = transport.get_extra_info("sockname")
        return (bound[0], bound[1])

    async def start_tcp(self, host: str, port: int = 0) -> Address:
        self._tcp_server = await asyncio.start_server(self._serve_tcp, host, port)
        sock = self._tcp_server.sockets[0].getsockname()
        return (sock[0], sock[1])

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        addr: Address = (peer[0], peer[1])
        self._tcp[addr] = writer
        framer = StreamFramer()
        try:
            while data := await reader.read(65536):
                try:
                    messages = framer.feed(data)
                except SipParseError as e:
                    log.info("sip tcp framing lost peer=%s:%s error=%s", addr[0], addr[1], e)
                    break
                for m in messages:
                    self._handle(m, addr, writer)
        finally:
            self._tcp.pop(addr, None)
            writer.close()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
        for w in self._tcp.values():
            w.close()

    # -- sending

    def respond(self, txn: ServerTransaction, response: SipResponse) -> None:
        self._run(self.layer.respond(txn, response, self._loop.time()))

    def respond_stateless(self, txn: ServerTransaction, response: SipResponse) -> None:
        """Answer and forget the transaction (see ``TransactionLayer.respond_stateless``)."""
        self._run(self.layer.respond_stateless(txn, response, self._loop.time()))

    async def request(self, request: SipRequest, destination: Address) -> SipResponse:
        """Send ``request`` (top Via with a branch) and await its final response."""
        reliable = destination in self._tcp
        txn, actions = self.layer.send_request(
            request, destination, self._loop.time(), reliable=reliable
        )
        if txn is None:
            self._run(actions)
            raise ValueError("ACK has no response")
        fut: asyncio.Future[SipResponse] = self._loop.create_future()
        self._waiters[id(txn)] = fut
        try:
            self._run(actions)
            return await fut
        finally:
            self._waiters.pop(id(txn), None)

    def send_stateless(self, message: SipRequest | SipResponse, destination: Address) -> None:
        """Send once, outside any transaction (the ACK of a 2xx, a 2xx re-ACK)."""
        self._send(message, destination)

    # -- receiving

    def _incoming(self, data: bytes, source: Address, writer: asyncio.StreamWriter | None) -> None:
        if data[:1] in (b"\r", b"\n") and not data.strip(b"\r\n"):
            return  # keep-alive
        try:
            msg = parse_message(data)
        except SipParseError as e:
            log.info("sip malformed datagram from=%s:%s error=%s", source[0], source[1], e)
            return
        self._handle(msg, source, writer)

    def _handle(
        self, msg: SipRequest | SipResponse, source: Address, writer: asyncio.StreamWriter | None
    ) -> None:
        try:
            actions = self.layer.receive(
                msg, source, self._loop.time(), reliable=writer is not None
            )
        except SipParseError as e:
            log.info("sip bad message from=%s:%s error=%s", source[0], source[1], e)
            if isinstance(msg, SipRequest) and msg.method != "ACK":
                with contextlib.suppress(SipParseError):
                    self._send(make_response(msg, 400, f"Bad Request ({e.field})"), source)
            return
        self._run(actions)

    def _run(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                self._send(a.message, a.destination)
            elif isinstance(a, RequestReceived):
                try:
                    self.on_request(a.request, a.source, a.transaction)
                except Exception:
                    log.exception("sip request handler failed method=%s", a.request.method)
                    if a.transaction is not None and not a.transaction.terminated:
                        self.respond(a.transaction, make_response(a.request, 500))
            elif isinstance(a, ResponseReceived):
                self._response(a.response, a.transaction)
            elif isinstance(a, TimedOut | TransportFailed):
                fut = self._waiters.get(id(a.transaction))
                if fut is not None and not fut.done():
                    fut.set_exception(TimeoutError(f"no final response (timer {a})"))
        self._schedule()

    def _response(self, response: SipResponse, txn: ClientTransaction | None) -> None:
        if txn is None:
            if self.on_stray_response is not None:
                self.on_stray_response(response)
            return
        fut = self._waiters.get(id(txn))
        if fut is not None and not fut.done() and response.status >= 200:
            fut.set_result(response)

    def _send(self, message: SipRequest | SipResponse, destination: Address) -> None:
        data = message.to_bytes()
        writer = self._tcp.get(destination)
        if writer is not None:
            writer.write(data)
        elif self._udp is not None:
            self._udp.sendto(data, destination)
        else:
            log.info("sip no transport to %s:%s", destination[0], destination[1])

    def _schedule(self) -> None:
        nt = self.layer.next_timer()
        if self._timer is not None:
            if nt is not None and self._timer_at == nt:
                return  # still the earliest timer (the common case: a new one came behind it)
            self._timer.cancel()
            self._timer = None
        if nt is not None:
            # The deadline is kept here: uvloop's call_at may return a Handle without when().
            self._timer, self._timer_at = self._loop.call_at(nt, self._fire), nt

    def _fire(self) -> None:
        self._timer = None
        self._run(self.layer.timeout(self._loop.time()))
