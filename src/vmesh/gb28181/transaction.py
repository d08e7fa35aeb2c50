"""RFC 3261 §17 transactions as explicit state tables, with timers. Pure, no I/O, no clock.

Four machines — client INVITE (Fig. 5), client non-INVITE (Fig. 6), server INVITE (Fig. 7),
server non-INVITE (Fig. 8) — each driven by ``receive(msg, now)``, ``timeout(now)`` and (for
server transactions) ``respond(response, now)``. Each call returns a list of actions: :class:`Send`
(bytes for the adapter to put on the wire) and events (:class:`ResponseReceived`,
:class:`TimedOut`, :class:`TransportFailed`, :class:`Terminated`). ``next_timer()`` says when
``timeout`` must next be called. Times are seconds on any monotonic clock.

Timers: A/B (INVITE client), D, E/F (non-INVITE client), G/H/I (INVITE server), J (non-INVITE
server), K; T1=0.5 s, T2=4 s, T4=5 s. Over reliable transports A, E and G never run and D, I, J, K
are zero (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).

:class:`TransactionLayer` holds the transactions of one endpoint and matches messages to them:
responses by top-Via branch + CSeq method (§17.1.3), requests by branch + sent-by + method with
ACK matching its INVITE (§17.2.3), and RFC 2543 requests without the magic cookie by Call-ID,
From tag, CSeq and top Via. A request that matches nothing creates a server transaction (except
ACK, which is handed up: it acknowledges a 2xx, which belongs to the dialog, not a transaction).
It also stamps ``received``/``rport`` on the top Via of incoming requests (RFC 3581), and sends
responses back to the request's source address, which is what NATed GB devices need.

Public: ``Timers``, ``Send``, ``RequestReceived``, ``ResponseReceived``, ``TimedOut``,
``TransportFailed``, ``Terminated``, ``Action``, ``ClientInviteTransaction``,
``ClientNonInviteTransaction``, ``ServerInviteTransaction``, ``ServerNonInviteTransaction``,
``TransactionLayer``, ``new_branch``, ``State``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
from dataclasses import dataclass
from enum import StrEnum

from vmesh.gb28181.message import (
    Headers,
    SipParseError,
    SipRequest,
    SipResponse,
    make_response,
)

log = logging.getLogger(__name__)

Address = tuple[str, int]
MAGIC_COOKIE = "z9hG4bK"


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie + 80 random bits)."""
    return MAGIC_COOKIE + secrets.token_hex(10)


@dataclass(frozen=True, slots=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class State(StrEnum):
    calling = "Calling"
    trying = "Trying"
    proceeding = "Proceeding"
    completed = "Completed"
    confirmed = "Confirmed"
    terminated = "Terminated"


# ----------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Send:
    """Put ``message`` on the wire to ``destination``."""

    message: SipRequest | SipResponse
    destination: Address


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU. ``transaction`` is None for an ACK to a 2xx."""

    request: SipRequest
    source: Address
    transaction: ServerTransaction | None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    response: SipResponse
    transaction: ClientTransaction | None  # None: a stray response (e.g. a 2xx retransmission)


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer B or F (no final response) or H (no ACK for our final response) fired."""

    transaction: Transaction
    timer: str


@dataclass(frozen=True, slots=True)
class TransportFailed:
    transaction: Transaction
    reason: str


@dataclass(frozen=True, slots=True)
class Terminated:
    transaction: Transaction


Action = Send | RequestReceived | ResponseReceived | TimedOut | TransportFailed | Terminated


# ------------------------------------------------------------------------------ transactions


class _Base:
    """State, timers and the request of one transaction."""

    # Slots: a storm keeps thousands alive for Timer J's 32 s; no per-object __dict__ for the
    # garbage collector to walk.
    __slots__ = ("_deadlines", "_intervals", "peer", "reliable", "request", "state", "timers")

    kind: str = ""

    def __init__(
        self, request: SipRequest, peer: Address, *, reliable: bool, timers: Timers
    ) -> None:
        self.request = request
        self.peer = peer
        self.reliable = reliable
        self.timers = timers
        self.state = State.trying
        self._deadlines: dict[str, float] = {}
        self._intervals: dict[str, float] = {}

    @property
    def terminated(self) -> bool:
        return self.state is State.terminated

    def next_timer(self) -> float | None:
        """When the earliest running timer fires, or None if none is running."""
        return min(self._deadlines.values(), default=None)

    def timer_running(self, name: str) -> bool:
        return name in self._deadlines

    def _start(self, name: str, now: float, interval: float) -> None:
        self._deadlines[name] = now + interval
        self._intervals[name] = interval

    def _stop(self, *names: str) -> None:
        for n in names:
            self._deadlines.pop(n, None)
            self._intervals.pop(n, None)

    def _terminate(self, out: list[Action]) -> None:
        if self.state is not State.terminated:
            self.state = State.terminated
            self._deadlines.clear()
            out.append(Terminated(self))  # type: ignore[arg-type]

    def timeout(self, now: float) -> list[Action]:
        """Fire every timer due at ``now`` (earliest first)."""
        out: list[Action] = []
        while not self.terminated:
            due = [(t, n) for n, t in self._deadlines.items() if t <= now]
            if not due:
                break
            _, name = min(due)
            self._deadlines.pop(name)
            self._fire(name, now, out)
        return out

    def transport_error(self, reason: str) -> list[Action]:
        """The adapter could not send for this transaction (§17.1.4, §17.2.4)."""
        out: list[Action] = []
        if not self.terminated:
            out.append(TransportFailed(self, reason))  # type: ignore[arg-type]
            self._terminate(out)
        return out

    def _fire(self, name: str, now: float, out: list[Action]) -> None:  # pragma: no cover
        raise NotImplementedError


class _Client(_Base):
    __slots__ = ("branch", "last_response", "method")

    def __init__(
        self, request: SipRequest, peer: Address, *, reliable: bool, timers: Timers
    ) -> None:
        super().__init__(request, peer, reliable=reliable, timers=timers)
        branch = request.top_via.branch
        if not branch:
            raise SipParseError("Via", "a client transaction's request needs a branch")
        self.branch = branch
        self.method = request.method
        self.last_response: SipResponse | None = None


class ClientInviteTransaction(_Client):
    """RFC 3261 Figure 5."""

    __slots__ = ("_ack",)

    kind = "client-invite"

    def start(self, now: float) -> list[Action]:
        self.state = State.calling
        if not self.reliable:
            self._start("A", now, self.timers.t1)
        self._start("B", now, 64 * self.timers.t1)
        return [Send(self.request, self.peer)]

    def receive(self, response: SipResponse, now: float) -> list[Action]:
        out: list[Action] = []
        code = response.status
        if self.state in (State.calling, State.proceeding):
            if code < 200:
                self.state = State.proceeding
                self._stop("A", "B")
                out.append(ResponseReceived(response, self))
            elif code < 300:
                self.last_response = response
                out.append(ResponseReceived(response, self))
                self._terminate(out)
            else:
                self.last_response = response
                self._stop("A", "B")
                self._ack = self._make_ack(response)
                out.append(Send(self._ack, self.peer))
                out.append(ResponseReceived(response, self))
                self.state = State.completed
                self._start("D", now, 0.0 if self.reliable else 32.0)
        elif self.state is State.completed and code >= 300:
            out.append(Send(self._ack, self.peer))  # the ACK was lost: answer the retransmission
        return out

    def _make_ack(self, response: SipResponse) -> SipRequest:
        """ACK for a non-2xx final response (§17.1.1.3)."""
        req = self.request
        h = Headers()
        h.add("Via", req.headers.get_all("Via")[0])
        for name in ("Route",):
            for v in req.headers.get_all(name):
                h.add(name, v)
        h.add("Max-Forwards", "70")
        h.add("From", req.headers.get("From") or "")
        h.add("To", response.headers.get("To") or req.headers.get("To") or "")
        h.add("Call-ID", req.call_id)
        h.add("CSeq", f"{req.cseq.seq} ACK")
        return SipRequest(headers=h, method="ACK", uri=req.uri)

    def _fire(self, name: str, now: float, out: list[Action]) -> None:
        if name == "A" and self.state is State.calling:
            out.append(Send(self.request, self.peer))
            self._start("A", now, 2 * self._intervals["A"])
        elif name == "B" and self.state is State.calling:
            out.append(TimedOut(self, "B"))
            self._terminate(out)
        elif name == "D":
            self._terminate(out)


class ClientNonInviteTransaction(_Client):
    """RFC 3261 Figure 6."""

    __slots__ = ()

    kind = "client-non-invite"

    def start(self, now: float) -> list[Action]:
        self.state = State.trying
        if not self.reliable:
            self._start("E", now, self.timers.t1)
        self._start("F", now, 64 * self.timers.t1)
        return [Send(self.request, self.peer)]

    def receive(self, response: SipResponse, now: float) -> list[Action]:
        out: list[Action] = []
        if self.state in (State.trying, State.proceeding):
            if response.status < 200:
                self.state = State.proceeding
                out.append(ResponseReceived(response, self))
            else:
                self.last_response = response
                self._stop("E", "F")
                out.append(ResponseReceived(response, self))
                self.state = State.completed
                self._start("K", now, 0.0 if self.reliable else self.timers.t4)
        return out  # Completed absorbs retransmitted responses

    def _fire(self, name: str, now: float, out: list[Action]) -> None:
        if name == "E" and self.state in (State.trying, State.proceeding):
            out.append(Send(self.request, self.peer))
            if self.state is State.trying:
                nxt = min(2 * self._intervals["E"], self.timers.t2)
            else:
                nxt = self.timers.t2
            self._start("E", now, nxt)
        elif name == "F" and self.state in (State.trying, State.proceeding):
            out.append(TimedOut(self, "F"))
            self._terminate(out)
        elif name == "K":
            self._terminate(out)


class _Server(_Base):
    __slots__ = ("key", "last_response")

    def __init__(
        self, request: SipRequest, peer: Address, *, reliable: bool, timers: Timers
    ) -> None:
        super().__init__(request, peer, reliable=reliable, timers=timers)
        self.last_response: SipResponse | None = None
        self.key: tuple[str, ...] = ()


class ServerInviteTransaction(_Server):
    """RFC 3261 Figure 7. Sends 100 Trying at once, so the INVITE's sender stops Timer A."""

    __slots__ = ()

    kind = "server-invite"

    def start(self, now: float) -> list[Action]:
        self.state = State.proceeding
        trying = make_response(self.request, 100)
        self.last_response = trying
        return [Send(trying, self.peer)]

    def receive(self, request: SipRequest, now: float) -> list[Action]:
        out: list[Action] = []
        if request.method == "INVITE":
            if self.state in (State.proceeding, State.completed) and self.last_response:
                out.append(Send(self.last_response, self.peer))
        elif request.method == "ACK" and self.state is State.completed:
            self.state = State.confirmed
            self._stop("G", "H")
            self._start("I", now, 0.0 if self.reliable else self.timers.t4)
        return out

    def respond(self, response: SipResponse, now: float) -> list[Action]:
        out: list[Action] = []
        if self.state is not State.proceeding:
            raise SipParseError(
                "status", f"cannot respond in state {self.state.value}", response.status
            )
        self.last_response = response
        out.append(Send(response, self.peer))
        if 200 <= response.status < 300:
            # The TU retransmits the 2xx until the ACK comes (§13.3.1.4).
            self._terminate(out)
        elif response.status >= 300:
            self.state = State.completed
            if not self.reliable:
                self._start("G", now, self.timers.t1)
            self._start("H", now, 64 * self.timers.t1)
        return out

    def _fire(self, name: str, now: float, out: list[Action]) -> None:
        if name == "G" and self.state is State.completed and self.last_response:
            out.append(Send(self.last_response, self.peer))
            self._start("G", now, min(2 * self._intervals["G"], self.timers.t2))
        elif name == "H" and self.state is State.completed:
            out.append(TimedOut(self, "H"))
            self._terminate(out)
        elif name == "I":
            self._terminate(out)


class ServerNonInviteTransaction(_Server):
    """RFC 3261 Figure 8."""

    __slots__ = ()

    kind = "server-non-invite"

    def start(self, now: float) -> list[Action]:
        self.state = State.trying
        return []

    def receive(self, request: SipRequest, now: float) -> list[Action]:
        if self.state in (State.proceeding, State.completed) and self.last_response:
            return [Send(self.last_response, self.peer)]
        return []  # Trying: the TU has not answered yet; the retransmission is absorbed

    def respond(self, response: SipResponse, now: float) -> list[Action]:
        out: list[Action] = []
        if self.state not in (State.trying, State.proceeding):
            raise SipParseError(
                "status", f"cannot respond in state {self.state.value}", response.status
            )
        self.last_response = response
        out.append(Send(response, self.peer))
        if response.status < 200:
            self.state = State.proceeding
        else:
            self.state = State.completed
            self._start("J", now, 0.0 if self.reliable else 64 * self.timers.t1)
            self.request.release_parsed()  # answered: only retransmissions (matched by key) come
        return out

    def _fire(self, name: str, now: float, out: list[Action]) -> None:
        if name == "J":
            self._terminate(out)


ClientTransaction = ClientInviteTransaction | ClientNonInviteTransaction
ServerTransaction = ServerInviteTransaction | ServerNonInviteTransaction
Transaction = ClientTransaction | ServerTransaction


# ------------------------------------------------------------------------------------- layer

ClientKey = tuple[str, str]
ServerKey = tuple[str, ...]


def _server_key(request: SipRequest) -> ServerKey:
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        host, port = via.sent_by
        return ("3261", branch, host, str(port), method)
    # RFC 2543 peers (§17.2.3, simplified): Call-ID, From tag, CSeq number, top Via.
    return (
        "2543",
        request.call_id,
        request.from_.tag or "",
        str(request.cseq.seq),
        str(via),
        method,
    )


class TransactionLayer:
    """All transactions of one SIP endpoint; the adapter feeds it and executes its actions."""

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()
        self.clients: dict[ClientKey, ClientTransaction] = {}
        self.servers: dict[ServerKey, ServerTransaction] = {}
        # (deadline, serial, transaction): every transaction's earliest timer, pushed whenever
        # it may have changed; entries that no longer match are skipped when they surface.
        self._heap: list[tuple[float, int, Transaction]] = []
        self._serial = itertools.count()

    def _touch(self, txn: Transaction) -> None:
        nt = txn.next_timer()
        if nt is not None and not txn.terminated:
            heapq.heappush(self._heap, (nt, next(self._serial), txn))

    def _live(self, txn: Transaction) -> bool:
        if txn.terminated:
            return False
        if isinstance(txn, ClientInviteTransaction | ClientNonInviteTransaction):
            return self.clients.get((txn.branch, txn.method)) is txn
        return self.servers.get(txn.key) is txn

    # -- outgoing

    def send_request(
        self, request: SipRequest, destination: Address, now: float, *, reliable: bool = False
    ) -> tuple[ClientTransaction | None, list[Action]]:
        """Start a client transaction for ``request`` (its top Via must carry a branch).

        ACK is not a transaction: it is sent once and None is returned as the transaction.
        """
        if request.method == "ACK":
            return None, [Send(request, destination)]
        cls = ClientInviteTransaction if request.method == "INVITE" else ClientNonInviteTransaction
        txn: ClientTransaction = cls(request, destination, reliable=reliable, timers=self.timers)
        key = (txn.branch, request.method)
        if key in self.clients:
            raise SipParseError("Via", "branch already used by a live client transaction", key[0])
        self.clients[key] = txn
        out = txn.start(now)
        self._touch(txn)
        return txn, out

    def respond(self, txn: ServerTransaction, response: SipResponse, now: float) -> list[Action]:
        out = txn.respond(response, now)
        self._touch(txn)
        return self._reap(out)

    def respond_stateless(
        self, txn: ServerTransaction, response: SipResponse, now: float
    ) -> list[Action]:
        """Answer ``txn``'s request once and forget the transaction: a stateless UAS (RFC 3261
        §8.2.7), for answers that are cheap to compute again, such as a 401 digest challenge. No
        transaction is kept for Timer J's 32 s; a retransmission of the request makes a new one
        and gets a new answer. Only an unanswered non-INVITE request (an INVITE's non-2xx needs
        its transaction to absorb the ACK)."""
        if not isinstance(txn, ServerNonInviteTransaction) or txn.state is not State.trying:
            raise SipParseError(
                "status", "only an unanswered non-INVITE request is answered statelessly",
                response.status,
            )  # fmt: skip
        out: list[Action] = [Send(response, txn.peer)]
        txn._terminate(out)
        return self._reap(out)

    # -- incoming

    def receive(
        self, message: SipRequest | SipResponse, source: Address, now: float, *, reliable: bool
    ) -> list[Action]:
        """Route one parsed message from ``source`` to its transaction, or hand it up."""
        if isinstance(message, SipResponse):
            via = message.top_via
            key = (via.branch or "", message.cseq.method)
            ctxn = self.clients.get(key)
            if ctxn is None:
                return [ResponseReceived(message, None)]
            out = ctxn.receive(message, now)
            self._touch(ctxn)
            return self._reap(out)
        request = message
        self._stamp_via(request, source)
        skey = _server_key(request)
        stxn = self.servers.get(skey)
        if stxn is not None:
            out = stxn.receive(request, now)
            self._touch(stxn)
            return self._reap(out)
        if request.method == "ACK":
            return [RequestReceived(request, source, None)]
        cls = ServerInviteTransaction if request.method == "INVITE" else ServerNonInviteTransaction
        new: ServerTransaction = cls(request, source, reliable=reliable, timers=self.timers)
        new.key = skey
        self.servers[skey] = new
        out = new.start(now)
        self._touch(new)
        out.append(RequestReceived(request, source, new))
        return out

    @staticmethod
    def _stamp_via(request: SipRequest, source: Address) -> None:
        via = request.top_via
        updates: dict[str, str | None] = {}
        if via.host != source[0] or via.has_rport:
            updates["received"] = source[0]
        if via.has_rport:
            updates["rport"] = str(source[1])
        if updates:
            request.set_top_via(via.with_params(**updates))

    # -- time

    def next_timer(self) -> float | None:
        """The earliest timer of any live transaction (a heap: no walk over all of them)."""
        heap = self._heap
        while heap:
            deadline, _, txn = heap[0]
            if self._live(txn) and txn.next_timer() == deadline:
                return deadline
            heapq.heappop(heap)  # stale: the transaction ended or its timers moved
        return None

    def timeout(self, now: float) -> list[Action]:
        out: list[Action] = []
        due: list[Transaction] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, txn = heapq.heappop(heap)
            if self._live(txn) and txn.next_timer() == deadline and txn not in due:
                due.append(txn)
        for txn in due:
            out.extend(txn.timeout(now))
            self._touch(txn)
        return self._reap(out)

    def transport_error(self, txn: Transaction, reason: str) -> list[Action]:
        out = txn.transport_error(reason)
        self._touch(txn)
        return self._reap(out)

    def _all(self) -> list[Transaction]:
        return [*self.clients.values(), *self.servers.values()]

    def _reap(self, actions: list[Action]) -> list[Action]:
        for a in actions:
            if isinstance(a, Terminated):
                t = a.transaction
                if isinstance(t, ClientInviteTransaction | ClientNonInviteTransaction):
                    self.clients.pop((t.branch, t.method), None)
                elif self.servers.get(t.key) is t:
                    del self.servers[t.key]
        return actions
