"""``Bus``: the node's request/reply client over NATS, connected to the node's own nats-server.

Node-to-node calls use the subject ``vmesh.<node>.rpc.<service>`` (``rpc_subject``): the node
``<node>`` answers them with a responder registered by ``Bus.serve``; NATS routes the request
through the leaf links of the tree, wherever the caller is.

Wire format (JSON, UTF-8): a request is any JSON object; a reply is ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": {"status", "title", "detail", "errors": [...]}}``. A handler that
raises a ``VmeshError`` answers with its status and field errors (``RemoteError`` at the caller,
carrying them); any other exception answers 500 and is logged at the responder.

A request that cannot reach the node raises ``NodeUnreachable`` naming the node: at once when no
responder is known anywhere (the node is cut off, or its service is not running: nats-server
answers "no responders" — asked again for up to ``NO_RESPONDERS_GRACE_S``, since interest in a
subject reaches the server a moment after the responder's subscription is acknowledged), or after
``timeout`` seconds without an answer (e.g. a link that died
silently and is not yet noticed by the pings).

The client reconnects forever to its local server (nats-py's default gives up after ~2 minutes,
which a node daemon must never do).

Public: ``Bus``, ``NodeUnreachable``, ``RemoteError``, ``BusUnavailable``, ``rpc_subject``,
``Handler``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from vmesh.errors import FieldError, InvalidInput, VmeshError
from vmesh.identity.codes import parse_code

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
"""A responder: takes the request's JSON object, returns a JSON-able result or raises."""

NO_RESPONDERS_GRACE_S = 0.3
"""How long a "no responders" answer is asked again before the node is called unreachable.

nats-server 2.9 can answer "no responders" for a few milliseconds after another connection's
subscription was acknowledged (seen under CPU load: a request sent right after ``serve`` returned
failed 8 times in 100), and a leaf link's interest arrives after the link itself. One answer is
therefore not proof that nobody serves the subject; a few within this grace are."""

_SERVICE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class NodeUnreachable(VmeshError):
    """The node named in ``node_code`` did not answer; ``detail`` says why."""

    status = 504
    title = "Node unreachable"

    def __init__(self, node_code: str, reason: str, *, service: str = "") -> None:
        what = f"service {service!r} of node {node_code}" if service else f"node {node_code}"
        super().__init__(f"{what} is unreachable: {reason}")
        self.node_code = node_code
        self.service = service
        self.reason = reason


class RemoteError(VmeshError):
    """The remote node answered with an error; ``status``/``errors`` are the remote's."""

    title = "Remote node refused the request"

    def __init__(
        self, node_code: str, service: str, status: int, detail: str, errors: list[FieldError]
    ) -> None:
        super().__init__(f"node {node_code}, service {service!r}: {detail}", errors=errors)
        self.status = status
        self.node_code = node_code
        self.service = service


class BusUnavailable(VmeshError):
    """The node's own nats-server cannot be reached."""

    status = 503
    title = "Federation bus unavailable"


def rpc_subject(node_code: str, service: str) -> str:
    """``vmesh.<node>.rpc.<service>``; ``InvalidInput`` for a bad code or service name."""
    code = parse_code(node_code, "node")
    if not _SERVICE.match(service):
        raise InvalidInput.one(
            "service",
            "must be dot-separated words of letters, digits, '-' and '_'",
            service,
        )
    return f"vmesh.{code.text}.rpc.{service}"


def _error_body(e: VmeshError) -> dict[str, Any]:
    return {
        "status": e.status,
        "title": e.title,
        "detail": e.detail,
        "errors": [fe.as_dict() for fe in e.errors],
    }


class Bus:
    """A connection of this node to its local nats-server; see the module docstring."""

    def __init__(self, nc: Client, node_code: str) -> None:
        self.nc = nc
        self.node_code = parse_code(node_code, "node").text
        self._subs: list[Subscription] = []
        self._handling: set[asyncio.Task[None]] = set()  # requests of ``concurrent`` services

    @classmethod
    async def connect(
        cls,
        url: str,
        node_code: str,
        *,
        name: str = "vmesh",
        connect_timeout: float = 5.0,
    ) -> Bus:
        """Connect to the node's nats-server at ``url`` (``BusUnavailable`` if it is not there)."""

        async def _disconnected() -> None:
            log.warning("bus node=%s disconnected from %s", node_code, url)

        async def _reconnected() -> None:
            log.info("bus node=%s reconnected to %s", node_code, url)

        async def _error(e: Exception) -> None:
            log.debug("bus node=%s client error: %s", node_code, e)

        try:
            nc = await nats.connect(
                url,
                name=f"{name} {node_code}",
                connect_timeout=connect_timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                disconnected_cb=_disconnected,
                reconnected_cb=_reconnected,
                error_cb=_error,
            )
        except (OSError, nats.errors.Error, TimeoutError) as e:
            raise BusUnavailable(
                f"cannot connect to the node's nats-server at {url}: {e or type(e).__name__}"
            ) from None
        return cls(nc, node_code)

    # --- requests ---------------------------------------------------------------------------------

    async def request(
        self,
        node_code: str,
        service: str,
        payload: bytes,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> bytes:
        """Send raw ``payload`` to ``service`` of ``node_code``; the raw reply."""
        subject = rpc_subject(node_code, service)
        try:
            msg = await self._ask(subject, payload, timeout)
        except nats.errors.NoRespondersError:
            raise NodeUnreachable(
                node_code,
                f"no responder for {subject} (the node is cut off from this one, "
                "or its service is not running)",
                service=service,
            ) from None
        except nats.errors.TimeoutError:
            raise NodeUnreachable(
                node_code, f"no answer on {subject} within {timeout:g} s", service=service
            ) from None
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
            raise BusUnavailable(
                f"this node's nats-server connection is down; cannot reach node {node_code}"
            ) from None
        return msg.data

    async def _ask(self, subject: str, payload: bytes, timeout: float) -> Msg:  # noqa: ASYNC109
        """One request; "no responders" is asked again with back-off within the grace."""
        give_up = time.monotonic() + min(timeout, NO_RESPONDERS_GRACE_S)
        pause = 0.02
        while True:
            try:
                return await self.nc.request(subject, payload, timeout=timeout)
            except nats.errors.NoRespondersError:
                if time.monotonic() + pause > give_up:
                    raise
                await asyncio.sleep(pause)
                pause *= 2

    async def call(
        self,
        node_code: str,
        service: str,
        body: dict[str, Any] | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 (the NATS request's own timeout)
    ) -> Any:
        """JSON request/reply: the remote handler's result; ``RemoteError``, ``NodeUnreachable``."""
        raw = await self.request(
            node_code, service, json.dumps(body or {}).encode(), timeout=timeout
        )
        try:
            reply = json.loads(raw)
            ok = bool(reply["ok"])
        except (ValueError, KeyError, TypeError):
            raise RemoteError(
                node_code, service, 502, f"malformed reply {raw[:200]!r}", []
            ) from None
        if ok:
            return reply.get("result")
        err = reply.get("error") or {}
        errors = [
            FieldError(
                str(e.get("field", "")),
                str(e.get("reason", "")),
                None if e.get("value") is None else str(e.get("value")),
                e.get("row"),
            )
            for e in err.get("errors") or []
            if isinstance(e, dict)
        ]
        raise RemoteError(
            node_code,
            service,
            int(err.get("status", 500)),
            str(err.get("detail", "error")),
            errors,
        )

    # --- responders -------------------------------------------------------------------------------

    async def serve(
        self, service: str, handler: Handler, *, queue: str = "", concurrent: bool = False
    ) -> Subscription:
        """Answer ``vmesh.<this node>.rpc.<service>`` with ``handler`` (JSON in, JSON out).

        ``queue`` makes several responders share the load (one answers each request).
        Requests are handled one after the other (nats-py awaits a subscription's callback
        before the next message), unless ``concurrent``: then each in a task of its own, so a
        request that waits on another node (a fabric ``open`` going up a chain of hops) does not
        hold up the ones behind it; the handler must then serialise what needs it."""
        subject = rpc_subject(self.node_code, service)

        async def _on(msg: Msg) -> None:
            reply: dict[str, Any]
            try:
                body = json.loads(msg.data or b"{}")
            except ValueError as e:
                bad = InvalidInput.one("body", f"not JSON: {e}")
                reply = {"ok": False, "error": _error_body(bad)}
            else:
                try:
                    if not isinstance(body, dict):
                        raise InvalidInput.one("body", "must be a JSON object")
                    reply = {"ok": True, "result": await handler(body)}
                except VmeshError as e:
                    reply = {"ok": False, "error": _error_body(e)}
                except Exception:
                    log.exception("bus node=%s service=%s handler failed", self.node_code, service)
                    reply = {"ok": False, "error": {"status": 500, "detail": "internal error"}}
            if msg.reply:
                try:
                    await msg.respond(json.dumps(reply, ensure_ascii=False, default=str).encode())
                except nats.errors.Error as e:
                    log.warning(
                        "bus node=%s service=%s cannot reply: %s", self.node_code, service, e
                    )

        async def _spawn(msg: Msg) -> None:
            task = asyncio.get_running_loop().create_task(_on(msg))
            self._handling.add(task)
            task.add_done_callback(self._handling.discard)

        sub = await self.nc.subscribe(subject, queue=queue, cb=_spawn if concurrent else _on)
        # The subscription must be known to the server before anyone is told it exists.
        await self.nc.flush()
        self._subs.append(sub)
        log.info("bus node=%s serving %s", self.node_code, subject)
        return sub

    async def close(self) -> None:
        """Stop the responders and close the connection (pending replies are sent first)."""
        if self.nc.is_closed:
            return
        if self._handling:  # concurrent requests still being answered: a moment for them
            await asyncio.wait(list(self._handling), timeout=1.0)
        try:
            await self.nc.drain()
        except (nats.errors.Error, TimeoutError):
            await self.nc.close()
        for task in list(self._handling):
            task.cancel()
