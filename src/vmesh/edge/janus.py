"""Our own async client of the Janus HTTP API and admin API (httpx).

The node is the only user of Janus's API (browsers signal through the node), so this client is
small and strict: every request carries a fresh transaction id (and the install's ``apisecret``);
every Janus error becomes a ``JanusError`` whose message names the request, Janus's error code and
its reason; a request that gets no answer in time raises ``JanusTimeout``; an unreachable Janus
raises ``JanusUnavailable``.

Janus API (``/janus``):

- ``JanusClient.info()`` → ``ServerInfo`` (version, plugins, transports).
- ``JanusClient.create_session()`` → ``JanusSession``, which long-polls ``GET /janus/<session>``
  for events and sends a ``keepalive`` every ``keepalive_interval`` seconds (Janus drops a session
  after ``session_timeout``, 60 s by default, without one). If Janus forgets the session (restart,
  timeout), ``session.closed`` is set with the reason and pending requests fail with it.
- ``session.attach(plugin)`` → ``JanusHandle``; ``handle.request(body)`` sends a plugin
  ``message``: a synchronous plugin answer is returned at once; an ``ack`` is followed by the
  event with the same transaction from the long poll. Plugin errors (``error_code``/``error`` in
  the plugin data) raise ``JanusPluginError``. Events without a transaction (``webrtcup``,
  ``hangup``, plugin notifications) go to ``handle.events``.
- ``handle.detach()``, ``session.destroy()``.

Admin API (``/admin``, with the install's ``admin_secret``): ``JanusAdmin.info()``,
``list_sessions()``, ``list_handles(session)``, ``handle_info(session, handle)``.

Example (Streaming plugin)::

    async with JanusClient(url, api_secret=s) as janus:
        session = await janus.create_session()
        h = await session.attach("janus.plugin.streaming")
        data = (await h.request({"request": "list"})).data   # {"streaming": "list", "list": [...]}
        await session.destroy()

Public: ``JanusClient``, ``JanusSession``, ``JanusHandle``, ``JanusAdmin``, ``ServerInfo``,
``PluginReply``, ``JanusError``, ``JanusPluginError``, ``JanusHttpError``, ``JanusTimeout``,
``JanusUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from vmesh.errors import VmeshError

log = logging.getLogger(__name__)

Json = dict[str, Any]

_SECRET_IN_URL = re.compile(r"(apisecret=)[^&\s\"']+")


class _RedactSecrets(logging.Filter):
    """httpx logs every request URL at INFO; a long poll's URL carries the API secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "apisecret=" in msg:
            record.msg = _SECRET_IN_URL.sub(r"\1***", msg)
            record.args = None
        return True


_httpx_log = logging.getLogger("httpx")
if not any(isinstance(f, _RedactSecrets) for f in _httpx_log.filters):
    _httpx_log.addFilter(_RedactSecrets())


class JanusError(VmeshError):
    """Janus refused or failed a request. ``code`` and ``reason`` are Janus's own."""

    status = 502
    title = "Janus error"

    def __init__(self, request: str, code: int | None, reason: str) -> None:
        where = f"error {code}: " if code is not None else ""
        super().__init__(f"Janus {request}: {where}{reason}")
        self.request = request
        self.code = code
        self.reason = reason


class JanusPluginError(JanusError):
    """A plugin answered with ``error_code``/``error`` (e.g. Streaming 456 "No such mountpoint")."""

    def __init__(self, plugin: str, request: str, code: int | None, reason: str) -> None:
        super().__init__(f"{plugin} {request}", code, reason)
        self.plugin = plugin


class JanusHttpError(JanusError):
    """Janus answered with an HTTP error and no Janus error body."""

    def __init__(self, request: str, http_status: int, reason: str) -> None:
        super().__init__(request, None, reason)
        self.http_status = http_status


class JanusTimeout(JanusError):
    status = 504
    title = "Janus timeout"


class JanusUnavailable(JanusError):
    status = 503
    title = "Janus unavailable"


def _tid() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class ServerInfo:
    version: int
    version_string: str
    plugins: tuple[str, ...]
    transports: tuple[str, ...]
    session_timeout: int | None
    raw: Json = field(repr=False)

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version_string.split(".") if p.isdigit())

    @classmethod
    def from_json(cls, data: Json) -> ServerInfo:
        return cls(
            version=int(data.get("version", 0)),
            version_string=str(data.get("version_string", "")),
            plugins=tuple(sorted(data.get("plugins") or {})),
            transports=tuple(sorted(data.get("transports") or {})),
            session_timeout=data.get("session-timeout"),
            raw=data,
        )


@dataclass(frozen=True)
class PluginReply:
    """A plugin's answer: its ``data`` and, for offers/answers, the ``jsep``."""

    data: Json
    jsep: Json | None = None


def _raise_for_error(request: str, body: Json) -> None:
    if body.get("janus") == "error":
        err = body.get("error") or {}
        raise JanusError(request, err.get("code"), str(err.get("reason", "unknown error")))


def _plugin_reply(plugin: str, request: str, event: Json) -> PluginReply:
    pdata = event.get("plugindata") or {}
    data = pdata.get("data") or {}
    if "error_code" in data or "error" in data:
        raise JanusPluginError(
            plugin, request, data.get("error_code"), str(data.get("error", "unknown error"))
        )
    return PluginReply(data=data, jsep=event.get("jsep"))


class _Http:
    """POST/GET with Janus's error handling, shared by the API and admin clients."""

    def __init__(self, base_url: str, timeout: float, http: httpx.AsyncClient | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._own = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout, trust_env=False)

    async def aclose(self) -> None:
        if self._own:
            await self.http.aclose()

    async def call(
        self,
        request: str,
        method: str,
        path: str,
        body: Json | None = None,
        *,
        params: dict[str, str] | None = None,
        time_limit: float | None = None,
    ) -> Any:
        url = self.base_url + path
        t = self.timeout if time_limit is None else time_limit
        try:
            r = await self.http.request(method, url, json=body, params=params, timeout=t)
        except httpx.TimeoutException:
            raise JanusTimeout(request, None, f"no answer within {t:g} s from {url}") from None
        except httpx.TransportError as e:
            reason = f"cannot reach {url}: {e or type(e).__name__}"
            raise JanusUnavailable(request, None, reason) from None
        try:
            data = r.json()
        except ValueError:
            raise JanusHttpError(
                request,
                r.status_code,
                f"HTTP {r.status_code} from {url} is not JSON: {r.text[:200]!r}",
            ) from None
        if isinstance(data, dict):
            _raise_for_error(request, data)
        if r.status_code >= 400:
            raise JanusHttpError(request, r.status_code, f"HTTP {r.status_code} from {url}")
        return data


class JanusClient:
    """The Janus HTTP API at ``base_url`` (e.g. ``http://127.0.0.1:8088/janus``)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_secret: str | None = None,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = _Http(base_url, timeout, http)
        self.api_secret = api_secret
        self._sessions: set[JanusSession] = set()

    @property
    def base_url(self) -> str:
        return self._http.base_url

    async def __aenter__(self) -> JanusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every session's background tasks (without destroying them) and close HTTP."""
        for s in list(self._sessions):
            await s.close()
        await self._http.aclose()

    def _body(self, janus: str, **extra: Any) -> Json:
        body: Json = {"janus": janus, "transaction": _tid(), **extra}
        if self.api_secret:
            body["apisecret"] = self.api_secret
        return body

    async def post(
        self, request: str, path: str, body: Json, time_limit: float | None = None
    ) -> Json:
        data = await self._http.call(request, "POST", path, body, time_limit=time_limit)
        if not isinstance(data, dict):
            raise JanusError(request, None, f"unexpected answer {data!r}")
        return data

    async def info(self) -> ServerInfo:
        data = await self._http.call("info", "GET", "/info")
        if not isinstance(data, dict) or data.get("janus") != "server_info":
            raise JanusError("info", None, f"unexpected answer {str(data)[:200]!r}")
        return ServerInfo.from_json(data)

    async def create_session(self, *, keepalive_interval: float = 25.0) -> JanusSession:
        if not keepalive_interval > 0:
            raise ValueError("keepalive_interval must be > 0")
        data = await self.post("create", "", self._body("create"))
        session = JanusSession(self, int(data["data"]["id"]), keepalive_interval)
        self._sessions.add(session)
        session._start()
        return session

    async def long_poll(self, session_id: int, time_limit: float) -> list[Json]:
        params = {"maxev": "10", "rid": _tid()}
        if self.api_secret:
            params["apisecret"] = self.api_secret
        try:
            data = await self._http.call(
                "long poll", "GET", f"/{session_id}", params=params, time_limit=time_limit
            )
        except JanusHttpError as e:
            if e.http_status == 404:  # the HTTP transport's answer for an unknown session
                raise JanusError("long poll", 458, "No such session") from None
            raise
        return data if isinstance(data, list) else [data]


class JanusSession:
    """One Janus session with its long poll and keep-alive tasks."""

    LONG_POLL_TIMEOUT = 40.0  # Janus answers an idle poll after 30 s with a keepalive

    def __init__(self, client: JanusClient, session_id: int, keepalive_interval: float) -> None:
        self.client = client
        self.id = session_id
        self.keepalive_interval = keepalive_interval
        self.events: asyncio.Queue[Json] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        self.keepalives_sent = 0
        self._handles: dict[int, JanusHandle] = {}
        self._pending: dict[str, tuple[asyncio.Future[Json], str]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"JanusSession({self.id})"

    def _start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._poll_loop(), name=f"janus-poll-{self.id}"),
            asyncio.create_task(self._keepalive_loop(), name=f"janus-keepalive-{self.id}"),
        ]

    async def attach(self, plugin: str, *, opaque_id: str | None = None) -> JanusHandle:
        self._check_open("attach")
        extra: Json = {"plugin": plugin}
        if opaque_id:
            extra["opaque_id"] = opaque_id
        data = await self.client.post(
            f"attach {plugin}", f"/{self.id}", self.client._body("attach", **extra)
        )
        handle = JanusHandle(self, int(data["data"]["id"]), plugin)
        self._handles[handle.id] = handle
        return handle

    async def keepalive(self) -> None:
        self._check_open("keepalive")
        await self.client.post("keepalive", f"/{self.id}", self.client._body("keepalive"))
        self.keepalives_sent += 1

    async def destroy(self) -> None:
        """Destroy the session in Janus (its handles go with it) and stop the background tasks."""
        try:
            if not self.closed.is_set():
                await self.client.post("destroy", f"/{self.id}", self.client._body("destroy"))
        finally:
            await self.close("destroyed")

    async def close(self, reason: str = "closed") -> None:
        """Stop the background tasks without telling Janus (it will time the session out)."""
        self._mark_closed(reason)
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        for t in self._tasks:
            if t is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        self.client._sessions.discard(self)

    def _mark_closed(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        for fut, request in self._pending.values():
            if not fut.done():
                fut.set_exception(JanusError(request, None, f"session {self.id} {reason}"))
        self._pending.clear()

    def _check_open(self, request: str) -> None:
        if self.closed.is_set():
            raise JanusError(request, None, f"session {self.id} {self.close_reason}")

    async def _keepalive_loop(self) -> None:
        while not self.closed.is_set():
            await asyncio.sleep(self.keepalive_interval)
            try:
                await self.keepalive()
            except JanusError as e:
                if e.code == 458:  # No such session
                    self._mark_closed(f"is gone: {e.reason}")
                    return
                log.warning("janus session=%d keepalive failed: %s", self.id, e.detail)

    async def _poll_loop(self) -> None:
        failures = 0
        while not self.closed.is_set():
            try:
                events = await self.client.long_poll(self.id, self.LONG_POLL_TIMEOUT)
            except JanusError as e:
                if e.code == 458:
                    self._mark_closed(f"is gone: {e.reason}")
                    return
                failures += 1
                log.warning("janus session=%d long poll failed: %s", self.id, e.detail)
                await asyncio.sleep(min(0.5 * failures, 5.0))
                continue
            failures = 0
            for ev in events:
                self._dispatch(ev)

    def _dispatch(self, ev: Json) -> None:
        kind = ev.get("janus")
        if kind == "keepalive":
            return
        tid = ev.get("transaction")
        if tid and tid in self._pending and kind != "ack":
            fut, _ = self._pending.pop(tid)
            if not fut.done():
                fut.set_result(ev)
            return
        handle = self._handles.get(ev.get("sender", -1))
        if kind == "detached" and handle is not None:
            self._handles.pop(handle.id, None)
        if handle is not None:
            handle.events.put_nowait(ev)
        else:
            self.events.put_nowait(ev)

    def _expect(self, tid: str, request: str) -> asyncio.Future[Json]:
        fut: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._pending[tid] = (fut, request)
        return fut


class JanusHandle:
    """A plugin handle in a session."""

    def __init__(self, session: JanusSession, handle_id: int, plugin: str) -> None:
        self.session = session
        self.id = handle_id
        self.plugin = plugin
        self.events: asyncio.Queue[Json] = asyncio.Queue()

    def __repr__(self) -> str:
        return f"JanusHandle({self.plugin}, {self.id})"

    @property
    def _path(self) -> str:
        return f"/{self.session.id}/{self.id}"

    async def request(
        self, body: Json, *, jsep: Json | None = None, time_limit: float | None = None
    ) -> PluginReply:
        """Send ``body`` to the plugin; the plugin's answer, sync or async, as a ``PluginReply``."""
        s = self.session
        request = str(body.get("request", "message"))
        s._check_open(request)
        extra: Json = {"body": body}
        if jsep is not None:
            extra["jsep"] = jsep
        msg = s.client._body("message", **extra)
        fut = s._expect(msg["transaction"], f"{self.plugin} {request}")
        try:
            data = await s.client.post(f"{self.plugin} {request}", self._path, msg, time_limit)
            if data.get("janus") == "ack":
                t = s.client._http.timeout if time_limit is None else time_limit
                try:
                    async with asyncio.timeout(t):
                        data = await asyncio.shield(fut)
                except TimeoutError:
                    raise JanusTimeout(
                        f"{self.plugin} {request}", None, f"no event within {t:g} s"
                    ) from None
                _raise_for_error(f"{self.plugin} {request}", data)
        finally:
            s._pending.pop(msg["transaction"], None)
            if not fut.done():
                fut.cancel()
        return _plugin_reply(self.plugin, request, data)

    async def trickle(self, candidate: Json) -> None:
        """Send one ICE candidate of the browser's (or ``{"completed": True}``) to this handle."""
        s = self.session
        await s.client.post("trickle", self._path, s.client._body("trickle", candidate=candidate))

    async def detach(self) -> None:
        s = self.session
        try:
            await s.client.post(f"detach {self.plugin}", self._path, s.client._body("detach"))
        finally:
            s._handles.pop(self.id, None)


class JanusAdmin:
    """The Janus admin API at ``base_url`` (e.g. ``http://127.0.0.1:7088/admin``)."""

    def __init__(
        self,
        base_url: str,
        admin_secret: str,
        *,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = _Http(base_url, timeout, http)
        self.admin_secret = admin_secret

    async def __aenter__(self) -> JanusAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, request: str, path: str = "", **extra: Any) -> Json:
        body = {"janus": request, "transaction": _tid(), "admin_secret": self.admin_secret, **extra}
        data = await self._http.call(f"admin {request}", "POST", path, body)
        if not isinstance(data, dict):
            raise JanusError(f"admin {request}", None, f"unexpected answer {data!r}")
        return data

    async def info(self) -> ServerInfo:
        return ServerInfo.from_json(await self._post("info"))

    async def list_sessions(self) -> list[int]:
        return [int(x) for x in (await self._post("list_sessions")).get("sessions", [])]

    async def list_handles(self, session_id: int) -> list[int]:
        data = await self._post("list_handles", f"/{session_id}")
        return [int(x) for x in data.get("handles", [])]

    async def handle_info(self, session_id: int, handle_id: int) -> Json:
        data = await self._post("handle_info", f"/{session_id}/{handle_id}")
        info = data.get("info")
        return info if isinstance(info, dict) else {}

    async def hangup_webrtc(self, session_id: int, handle_id: int) -> None:
        """Hang up the handle's PeerConnection, as a failed ICE check would: the handle gets a
        ``hangup`` event and stays attached (an operator's way to drop a stuck viewer)."""
        await self._post("hangup_webrtc", f"/{session_id}/{handle_id}")
