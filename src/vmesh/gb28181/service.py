"""``GbService``: the node's GB/T 28181 device access — registrar, keepalive, queries, live, PTZ.

It owns the node's SIP endpoint (UDP, ``[gb28181] sip_host:sip_port``) and:

- **Registrar.** ``REGISTER`` without credentials gets 401 with a digest challenge (realm = the
  SIP domain, ``qop=auth``); the password is the device's ``attrs.gb_password`` in the
  directory, else ``[gb28181] password``. A wrong answer gets 403 (audited
  ``gb28181.register`` ``denied``); a stale nonce a new challenge. A device that registers is
  matched to its directory entry or created under ``[gb28181] parent_code``
  (``devices.DeviceDirectory``); a code the directory refuses gets 403. ``Expires: 0``
  unregisters (offline, its live sessions ended). Refreshes keep the registration.
- **Keepalive.** ``MESSAGE`` Keepalive from a registered device → 200 and ``last_seen``; from an
  unknown one → 403 (devices re-register on that). A device silent for ``keepalive_missed`` ×
  ``keepalive_interval_seconds`` (or whose registration expired) goes offline with its channels,
  and its live sessions end (SSRCs released).
- **Queries.** After each new registration: Catalog (pages assembled by SN with
  ``CatalogAssembler``, idle timeout ``catalog_timeout_seconds``), then DeviceInfo and
  DeviceStatus, stored in the device's ``attrs``; channels become directory endpoints.
- **Refresh.** A REGISTER of an online device from the address it registered from is a refresh:
  digest against the password that last worked, expiry in memory, answered in the request
  handler itself (no task), no database access (the row of ``gb_devices`` is queued for the next
  write-behind batch once the expiry moved by half a period) — what keeps a REGISTER storm cheap.
- **Persistence.** Registrations are rows of ``gb_devices`` (``store.RegistrationStore``),
  written with the directory presence and the audit rows of state changes by
  ``store.WriteBehind`` in batches (a new registration's 200 after its batch committed;
  refreshes and keepalives not awaited, at most 0.5 s behind; only state changes audited): a
  restarted node knows its devices; those whose registration has not expired are online at once
  (fresh keepalive window), the others re-register on the 403 their next keepalive gets.
- **Catalog subscription.** After the catalogue of a new registration, ``SUBSCRIBE`` (``Event:
  Catalog``, ``Expires`` = ``catalog_subscribe_seconds``, refreshed before it ends; 0 = off).
  ``NOTIFY`` (or ``MESSAGE``) ``<Notify><CmdType>Catalog`` items apply their ``Event``: ADD and
  UPDATE create/update the channel, DEL deletes it, ON/OFF/VLOST/DEFECT set its presence.
- **Live.** ``open_source`` makes a :class:`~vmesh.gb28181.session.GbLiveSource` for the media
  service; the SSRC allocator's count is ``vmesh_gb28181_ssrcs_in_use`` on ``/metrics``.
- **PTZ.** ``ptz(channel, command, speed)`` sends DeviceControl ``PTZCmd`` to the channel's
  device.
- **Alarms.** ``MESSAGE`` ``Notify CmdType=Alarm`` from a registered device: checked
  (``alarms.alarm_from_notify``; 400 naming the element when wrong, nothing stored), stored once
  by ``alarms.AlarmDesk`` (``self.alarms``), then 200 and, with ``alarm_response``, a
  ``Response CmdType=Alarm`` MESSAGE back; new alarms go to ``self.alarms.listeners``. With
  ``alarm_subscribe_seconds``, each online device is SUBSCRIBEd to (``Event: presence``, a
  ``Query CmdType=Alarm`` body) by the watchdog and renewed before it ends.

Public: ``GbService``, ``Device``, ``PTZ_COMMANDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vmesh.audit.log import Actor, AuditLog
from vmesh.config import Gb28181Config
from vmesh.errors import Conflict, InvalidInput, NotFound, VmeshError
from vmesh.gb28181.alarms import Alarm, AlarmDesk, alarm_from_notify
from vmesh.gb28181.devices import DeviceDirectory, device_kind
from vmesh.gb28181.digest import DigestServer, Verdict
from vmesh.gb28181.manscdp import (
    CONTENT_TYPE,
    AlarmNotify,
    AlarmQuery,
    AlarmResponse,
    CatalogAssembler,
    CatalogItem,
    CatalogNotify,
    CatalogQuery,
    CatalogResponse,
    CatalogResult,
    DeviceControlResponse,
    DeviceInfoQuery,
    DeviceInfoResponse,
    DeviceStatusQuery,
    DeviceStatusResponse,
    Keepalive,
    ManscdpError,
    PtzCommand,
    PtzControl,
    RecordInfoResponse,
    UnknownMessage,
    decode_manscdp,
    encode_manscdp,
    preset_call,
    preset_delete,
    preset_set,
    ptz_move,
    ptz_stop,
)
from vmesh.gb28181.message import (
    Headers,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    ascii_digits,
    make_response,
)
from vmesh.gb28181.playback import GbPlaybackSource, GbPlaybackSpec, media_status
from vmesh.gb28181.records import RecordQueries
from vmesh.gb28181.sdp import SsrcAllocator
from vmesh.gb28181.session import GbLiveSource, GbSpec
from vmesh.gb28181.store import DeviceState, RegistrationStore, WriteBehind
from vmesh.gb28181.transaction import Address, ServerTransaction, new_branch
from vmesh.gb28181.transport import SipEndpoint
from vmesh.storage.db import Database

if TYPE_CHECKING:
    from vmesh.ingest.ffmpeg import RtpTarget
    from vmesh.ingest.status import IngestStatus

log = logging.getLogger(__name__)

# command → (pan, tilt, zoom) for moves; presets take their number in ``speed``.
_MOVES: dict[str, tuple[int, int, int]] = {
    "up": (0, 1, 0),
    "down": (0, -1, 0),
    "left": (-1, 0, 0),
    "right": (1, 0, 0),
    "up_left": (-1, 1, 0),
    "up_right": (1, 1, 0),
    "down_left": (-1, -1, 0),
    "down_right": (1, -1, 0),
    "zoom_in": (0, 0, 1),
    "zoom_out": (0, 0, -1),
}
PTZ_COMMANDS = (*_MOVES, "stop", "preset_call", "preset_set", "preset_delete")
# REGISTERs handled at once (each may read and write the database; the pool has 5 + 10).
_REGISTER_CONCURRENCY = 8


@dataclass
class Device:
    """A registered device as the registrar holds it (in memory; the directory has the rest)."""

    code: str
    kind: str
    addr: Address
    expires_at: float
    last_seen: float
    online: bool = True
    charset: str = "GB2312"
    catalog: list[str] = field(default_factory=list)
    transport: str = "udp"
    # Loop time the catalogue subscription ends (None: not subscribed).
    subscribed_until: float | None = None
    # The digest password that last worked (refreshes skip the directory); None when offline.
    password: str | None = None
    # expires_at as last written to gb_devices (loop time).
    saved_expires_at: float = 0.0
    # Loop time the alarm subscription is (re)sent (``alarm_subscribe_seconds``; inf: under way).
    alarm_next: float = 0.0


class GbService:
    """See the module docstring."""

    def __init__(
        self,
        config: Gb28181Config,
        node_code: str,
        db: Database,
        audit: AuditLog,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self.domain = config.domain or node_code[:10]
        self.server_id = config.server_id or node_code
        self.audit = audit
        self.directory = DeviceDirectory(db, audit)
        self.store = RegistrationStore(db)
        self.writer = WriteBehind(db, audit)  # registrations, presence, their audit: batched
        self.digest = DigestServer(self.domain)
        self.ssrcs = SsrcAllocator(self.domain)
        self.assembler = CatalogAssembler(config.catalog_timeout_seconds)
        self.records = RecordQueries(self)  # device recordings (vmesh.gb28181.records)
        self.devices: dict[str, Device] = {}
        self.sessions: dict[str, GbLiveSource] = {}
        self.endpoint: SipEndpoint | None = None
        self.address = config.sip_address or (
            "127.0.0.1" if config.sip_host in ("0.0.0.0", "") else config.sip_host
        )
        self.port = 0
        self._sn = secrets.randbelow(10000) + 1
        self._waiters: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self._register_locks: dict[str, asyncio.Lock] = {}
        self._register_gate = asyncio.Semaphore(_REGISTER_CONCURRENCY)
        # Directory writes of the queries after registration (a storm of first registrations
        # must not pile hundreds of writers on SQLite: "database is locked").
        self._query_gate = asyncio.Semaphore(_REGISTER_CONCURRENCY)
        self._catalogs: dict[tuple[str, int], asyncio.Future[CatalogResult]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._media_out: asyncio.DatagramTransport | None = None
        self._used_ports: set[int] = set()
        self.ptz_sent: int = 0
        self.alarms = AlarmDesk(db, audit, metrics)
        self._metrics = metrics
        self._collector = _GbCollector(self)
        # Cascade up ([[gb28181.upper]]): vmesh.gb28181.upper.
        from vmesh.gb28181.upper import Cascade

        self.cascade: Cascade | None = Cascade(self) if config.upper else None
        if metrics is not None:
            metrics.register(self._collector)

    # -- life cycle

    async def start(self) -> None:
        self.endpoint = SipEndpoint(self._on_request)
        self.endpoint.on_stray_response = self._on_stray_response
        _, self.port = await self.endpoint.start_udp(self.config.sip_host, self.config.sip_port)
        self.writer.start()
        await self._load_devices()
        loop = asyncio.get_running_loop()
        self._media_out, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        self._watchdog = asyncio.create_task(self._watch(), name="gb-watchdog")
        if self.cascade is not None:
            self.cascade.start()
        log.info(
            "gb28181 started sip=%s:%s id=%s domain=%s",
            self.config.sip_host,
            self.port,
            self.server_id,
            self.domain,
        )

    async def _load_devices(self) -> None:
        """The devices of ``gb_devices``: online again if their registration has not expired."""
        loop_now, wall = asyncio.get_running_loop().time(), time.time()
        expired: list[str] = []
        for row in await self.store.load():
            left = row.expires_at.timestamp() - wall
            online = row.online and left > 0
            dev = Device(
                row.code,
                row.kind,
                (row.host, row.port),
                loop_now + left,
                loop_now,
                online=online,
                charset=row.charset,
                transport=row.transport,
            )
            if online and row.subscribed_until is not None:
                dev.subscribed_until = loop_now + row.subscribed_until.timestamp() - wall
            self.devices[row.code] = dev
            if not online and row.online:
                expired.append(row.code)
        for code in expired:
            await self._unregister(code, "registration expired while the node was down")
        log.info(
            "gb devices loaded known=%d online=%d",
            len(self.devices),
            sum(d.online for d in self.devices.values()),
        )

    def _save(self, dev: Device) -> None:
        """Queue the device's ``gb_devices`` row (written by the next batch; ``await
        self.writer.commit()`` to wait for it)."""
        dev.saved_expires_at = dev.expires_at
        wall_minus_loop = time.time() - asyncio.get_running_loop().time()
        self.writer.put(
            DeviceState(
                dev.code,
                kind=dev.kind,
                addr=dev.addr,
                transport=dev.transport,
                online=dev.online,
                charset=dev.charset,
                expires_at=dev.expires_at + wall_minus_loop,
                subscribed_until=(
                    dev.subscribed_until + wall_minus_loop if dev.subscribed_until else None
                ),
            )
        )

    async def stop(self) -> None:
        if self.cascade is not None:
            await self.cascade.stop()
        for s in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3.0):
                    await s.stop()
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
        if self._media_out is not None:
            self._media_out.close()
        await self.writer.stop()  # what is queued is written: nothing lost on a clean stop
        self.alarms.close()
        if self._metrics is not None:
            with contextlib.suppress(KeyError):
                self._metrics.unregister(self._collector)
        await asyncio.sleep(0)  # transports close on the next loop turn: the port is free after
        log.info("gb28181 stopped")

    def _spawn(self, coro: Any, name: str) -> None:
        t = asyncio.create_task(coro, name=name)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- SIP helpers

    def next_sn(self) -> int:
        self._sn += 1
        return self._sn

    def make_request(
        self,
        method: str,
        dev: Device,
        *,
        to_user: str,
        call_id: str | None = None,
        from_tag: str | None = None,
        to_tag: str | None = None,
        cseq: int = 1,
        body: bytes = b"",
        content_type: str | None = None,
        subject: str | None = None,
    ) -> SipRequest:
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {self.address}:{self.port};rport;branch={new_branch()}")
        tag = from_tag or secrets.token_hex(4)
        h.add("From", f"<sip:{self.server_id}@{self.domain}>;tag={tag}")
        to = f"<sip:{to_user}@{self.domain}>"
        h.add("To", to + (f";tag={to_tag}" if to_tag else ""))
        h.add("Call-ID", call_id or secrets.token_hex(10))
        h.add("CSeq", f"{cseq} {method}")
        h.add("Max-Forwards", "70")
        h.add("Contact", f"<sip:{self.server_id}@{self.address}:{self.port}>")
        h.add("User-Agent", "vmesh")
        if subject is not None:
            h.add("Subject", subject)
        if content_type is not None:
            h.add("Content-Type", content_type)
        uri = SipUri(host=dev.addr[0], user=to_user, port=dev.addr[1])
        return SipRequest(headers=h, body=body, method=method, uri=uri)

    async def endpoint_request(self, req: SipRequest, dest: Address) -> SipResponse:
        if self.endpoint is None:
            raise Conflict("GB/T 28181 is not running")
        return await self.endpoint.request(req, dest)

    def send_stateless(self, msg: SipRequest | SipResponse, dest: Address) -> None:
        if self.endpoint is not None:
            self.endpoint.send_stateless(msg, dest)

    def _reply(self, txn: ServerTransaction, req: SipRequest, status: int, **headers: str) -> None:
        resp = make_response(req, status, to_tag=secrets.token_hex(4))
        for k, v in headers.items():
            resp.headers.add(k.replace("_", "-"), v)
        assert self.endpoint is not None
        self.endpoint.respond(txn, resp)

    def _challenge(
        self, txn: ServerTransaction, req: SipRequest, now: float, *, stale: bool = False
    ) -> None:
        """401 with a fresh digest challenge, answered statelessly (RFC 3261 §8.2.7): the nonce
        needs no memory (``DigestServer``), so no transaction is kept 32 s for it — half of what
        a REGISTER storm kept alive. A retransmitted REGISTER gets a new 401 (a new nonce; the
        earlier one stays good until its time to live)."""
        resp = make_response(req, 401, to_tag=secrets.token_hex(4))
        resp.headers.add("WWW-Authenticate", self.digest.challenge(now, stale=stale))
        assert self.endpoint is not None
        self.endpoint.respond_stateless(txn, resp)

    def _reply_status(
        self, txn: ServerTransaction, req: SipRequest, status: int, reason: str
    ) -> None:
        resp = make_response(req, status, reason)
        assert self.endpoint is not None
        self.endpoint.respond(txn, resp)

    def _on_stray_response(self, resp: SipResponse) -> None:
        # A retransmitted 200 to an INVITE whose transaction ended: ACK it again.
        with contextlib.suppress(SipParseError):
            if resp.cseq.method == "INVITE" and resp.status < 300:
                s = self.sessions.get(resp.call_id)
                dev = self.devices.get(s.spec.device) if s is not None else None
                if s is not None and dev is not None:
                    ack = self.make_request(
                        "ACK",
                        dev,
                        to_user=s.spec.channel,
                        call_id=s.call_id,
                        from_tag=s.from_tag,
                        to_tag=resp.to.tag,
                        cseq=resp.cseq.seq,
                    )
                    self.send_stateless(ack, dev.addr)

    # -- incoming requests

    def _on_request(self, req: SipRequest, source: Address, txn: ServerTransaction | None) -> None:
        if txn is None:  # ACK: of an upper platform's INVITE (cascade), else of nothing of ours
            if self.cascade is not None:
                with contextlib.suppress(SipParseError):
                    self.cascade.handle(req, source, None)
            return
        try:
            _ = (req.from_.uri, req.to.uri)  # every handler reads them: refuse bad ones here
        except SipParseError as e:
            log.info("gb bad request from=%s:%s: %s", source[0], source[1], e)
            self._reply_status(txn, req, 400, f"Bad Request ({e.field})")
            return
        if self.cascade is not None and self.cascade.handle(req, source, txn):
            return  # a request of an upper platform
        if req.method == "REGISTER":
            if not self._register_now(req, source, txn):
                self._spawn(self._register_guarded(req, source, txn), "gb-register")
        elif req.method == "MESSAGE":
            self._message(req, source, txn)
        elif req.method == "BYE":
            s = self.sessions.get(req.call_id)
            self._reply(txn, req, 200 if s is not None else 481)
            if s is not None:
                s.on_bye(req)
        elif req.method == "NOTIFY":
            self._notify(req, source, txn)
        elif req.method == "INFO":
            self._reply(txn, req, 200)
        else:
            self._reply(txn, req, 405, Allow="REGISTER, MESSAGE, BYE, NOTIFY, INFO")

    async def _register_guarded(
        self, req: SipRequest, source: Address, txn: ServerTransaction
    ) -> None:
        """One REGISTER at a time per device (a device that retransmits with a new CSeq must not
        race itself), at most ``_REGISTER_CONCURRENCY`` in the database at once (a storm queues
        here, not in the connection pool), and a 500 rather than silence if it fails."""
        code = req.from_.uri.user or ""
        lock = self._register_locks.setdefault(code, asyncio.Lock())
        try:
            async with lock, self._register_gate:
                await self._register(req, source, txn)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("gb register of %s failed", code)
            if not txn.terminated:
                self._reply(txn, req, 500)

    def _register_now(self, req: SipRequest, source: Address, txn: ServerTransaction) -> bool:
        """Answer at once, without a task, the REGISTERs that need no database — the challenge,
        and the refresh of an online device from its address with the password that last worked
        (most of a storm). False: anything else (the full path, ``_register_guarded``)."""
        code = req.from_.uri.user or ""
        lock = self._register_locks.get(code)
        if lock is not None and lock.locked():
            return False  # that device's previous REGISTER is still being handled
        auth = req.headers.get("Authorization")
        if auth is None:
            try:
                device_kind(code)
            except InvalidInput:
                return False  # refused (and logged) by the full path
            self._challenge(txn, req, time.time())
            return True
        known = self.devices.get(code)
        if known is None or not known.online or known.password is None or known.addr != source:
            return False
        expires = _requested_expires(req)
        if expires == 0:
            return False
        password = known.password
        v = self.digest.verify(
            auth, "REGISTER", lambda user: password if user == code else None, time.time()
        )
        if not v.ok:
            return False  # stale, bad or wrong: answered (and audited) by the full path
        self._refresh(known, min(expires, self.config.register_expires_max), txn, req)
        return True

    def _refresh(self, dev: Device, expires: int, txn: ServerTransaction, req: SipRequest) -> None:
        """Refresh of an online device at the same address: only memory, and the stored expiry
        (written behind) when it has moved by more than half a period."""
        loop_now = asyncio.get_running_loop().time()
        dev.expires_at, dev.last_seen = loop_now + expires, loop_now
        if dev.expires_at - dev.saved_expires_at > expires / 2:
            self._save(dev)
        self._reply(txn, req, 200, Expires=str(expires), Date=time.strftime("%Y-%m-%dT%H:%M:%S"))

    async def _register(self, req: SipRequest, source: Address, txn: ServerTransaction) -> None:
        assert self.endpoint is not None
        now = time.time()
        code = req.from_.uri.user or ""
        actor = Actor(f"gb:{code}", "device", source[0])
        try:
            kind = device_kind(code)
        except InvalidInput as e:
            log.info("gb register refused from=%s: %s", source, e)
            self._reply(txn, req, 403)
            return
        auth = req.headers.get("Authorization")
        if auth is None:
            self._challenge(txn, req, now)
            return
        known = self.devices.get(code)
        entry: dict[str, Any] | None = None
        if known is not None and known.online and known.password is not None:
            password = known.password  # a refresh: no directory read
        else:
            entry = await self.directory.lookup(code)
            password = (entry or {}).get("attrs", {}).get("gb_password") or self.config.password
        v = self.digest.verify(
            auth, "REGISTER", lambda user: password if user == code else None, now
        )
        if v.verdict in (Verdict.stale, Verdict.bad_nonce):
            self._challenge(txn, req, now, stale=v.verdict is Verdict.stale)
            return
        if not v.ok:
            log.info("gb register denied device=%s from=%s: %s", code, source, v.reason)
            self._reply(txn, req, 403)
            await self.audit.write(
                actor, "gb28181.register", code, "denied", {"reason": v.reason, "addr": source[0]}
            )
            return
        expires = _requested_expires(req)
        if expires == 0:
            self.writer.record(actor, "gb28181.unregister", code, "ok", {})
            await self._unregister(code, "unregistered")
            self._reply(txn, req, 200, Expires="0")
            return
        expires = min(expires, self.config.register_expires_max)
        if known is not None and known.online and known.addr == source:
            self._refresh(known, expires, txn, req)
            return
        try:
            entry = await self.directory.ensure_device(code, self.config.parent_code, entry)
        except VmeshError as e:
            log.info("gb register refused device=%s: %s", code, e)
            self._reply(txn, req, 403)
            await self.audit.write(actor, "gb28181.register", code, "denied", {"reason": str(e)})
            return
        loop_now = asyncio.get_running_loop().time()
        dev = self.devices.get(code)
        fresh = dev is None or not dev.online or dev.addr != source
        if dev is None:
            dev = Device(code, entry["kind"] or kind, source, loop_now + expires, loop_now)
            self.devices[code] = dev
        dev.addr, dev.expires_at, dev.last_seen, dev.online = (
            source,
            loop_now + expires,
            loop_now,
            True,
        )
        dev.password = password
        # Row, presence and (a state change) the audit row go in the next batch, awaited: the
        # 200 says the registration is stored.
        self.writer.presence([code], True)
        self._save(dev)
        if fresh:
            self.writer.record(
                actor, "gb28181.register", code, "ok", {"addr": f"{source[0]}:{source[1]}"}
            )
        await self.writer.commit()
        self._reply(txn, req, 200, Expires=str(expires), Date=time.strftime("%Y-%m-%dT%H:%M:%S"))
        if fresh:
            dev.alarm_next = 0.0  # a device that registers anew has lost its subscriptions
            log.info("gb device registered code=%s addr=%s:%s", code, *source)
            self._spawn(self._after_register(dev), f"gb-queries-{code}")

    async def _unregister(self, code: str, why: str) -> None:
        dev = self.devices.get(code)
        if dev is not None:
            dev.online = False
            dev.subscribed_until = None
            dev.alarm_next = 0.0  # subscribe again once it is back
            dev.password = None
            self._save(dev)
        for s in [s for s in self.sessions.values() if s.spec.device == code]:
            from vmesh.ingest.status import Failure, FailureKind, IngestState

            s.end(IngestState.ERROR, Failure(FailureKind.UNREACHABLE, f"device {why}"))
        channels = await self.directory.channels_of(code)
        self.writer.presence([code, *channels], False)
        await self.writer.commit()  # a state change: stored (with its audit row) before going on
        log.info("gb device offline code=%s (%s)", code, why)

    def _message(self, req: SipRequest, source: Address, txn: ServerTransaction) -> None:
        try:
            decoded = decode_manscdp(req.body)
        except ManscdpError as e:
            log.info("gb bad MANSCDP from=%s:%s: %s", source[0], source[1], e)
            self._reply(txn, req, 400)
            return
        msg = decoded.message
        dev = self.devices.get(msg.device_id)
        if isinstance(msg, Keepalive):
            device = self.devices.get(msg.device_id)
            if device is None or not device.online:
                self._reply(txn, req, 403)
                return
            self._reply(txn, req, 200)
            device.last_seen = asyncio.get_running_loop().time()
            device.addr = source
            self.writer.presence([device.code], True)  # status and last_seen, written behind
            return
        # Answers come from the device itself or name one of its channels.
        sender = req.from_.uri.user or ""
        if sender in self.devices:
            dev = self.devices[sender]
        if dev is None or not dev.online:
            self._reply(txn, req, 403)
            return
        dev.charset = decoded.charset if decoded.charset != "GB18030" else "GB2312"
        if isinstance(msg, AlarmNotify):
            self._alarm(req, source, txn, dev, msg)
            return
        self._reply(txn, req, 200)
        if isinstance(msg, CatalogNotify):
            self._spawn(self._catalog_events(dev, msg.items), f"gb-notify-{dev.code}")
        elif isinstance(msg, CatalogResponse):
            result = self.assembler.add(msg, time.monotonic())
            if result is not None:
                self._finish_catalog(result)
        elif isinstance(msg, DeviceInfoResponse | DeviceStatusResponse | DeviceControlResponse):
            fut = self._waiters.get((sender or msg.device_id, msg.sn))
            if fut is None:
                fut = self._waiters.get((msg.device_id, msg.sn))
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif isinstance(msg, RecordInfoResponse):  # device recordings (records.py)
            self.records.add(msg)
        elif isinstance(msg, UnknownMessage) and msg.cmd_type == "MediaStatus":
            media_status(self, req.call_id, msg)  # end of a playback (playback.py)

    def _alarm(
        self,
        req: SipRequest,
        source: Address,
        txn: ServerTransaction,
        dev: Device,
        msg: AlarmNotify,
    ) -> None:
        """An alarm: 400 naming what is wrong (nothing stored), or stored then 200, then the
        ``Response CmdType=Alarm`` MESSAGE when ``alarm_response`` (``vmesh.gb28181.alarms``)."""
        try:
            alarm = alarm_from_notify(msg, dev.code)
        except ManscdpError as e:
            self.alarms.invalid(source, e)
            self._reply_status(txn, req, 400, f"Bad Request ({e.field}: {e.reason})")
            return
        self._spawn(self._store_alarm(req, source, txn, dev, alarm), f"gb-alarm-{dev.code}")

    async def _store_alarm(
        self, req: SipRequest, source: Address, txn: ServerTransaction, dev: Device, alarm: Alarm
    ) -> None:
        try:
            await self.alarms.receive(alarm, source[0])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("gb alarm of %s not stored", dev.code)
            if not txn.terminated:
                self._reply(txn, req, 500)  # the device sends it again
            return
        if not txn.terminated:
            self._reply(txn, req, 200)
        if self.config.alarm_response:
            try:
                await self._send_message(dev, AlarmResponse(alarm.channel, alarm.sn, "OK"))
            except (TimeoutError, VmeshError) as e:
                log.info("gb alarm response to %s not delivered: %s", dev.code, e)

    def _notify(self, req: SipRequest, source: Address, txn: ServerTransaction) -> None:
        """NOTIFY of a catalogue subscription: 200, then its items' events applied."""
        event = (req.headers.get("Event") or "").split(";", 1)[0].strip().lower()
        if event != "catalog":
            self._reply(txn, req, 489 if event else 400)  # Bad Event / no Event header
            return
        try:
            msg = decode_manscdp(req.body).message
        except ManscdpError as e:
            log.info("gb bad catalog NOTIFY from=%s:%s: %s", source[0], source[1], e)
            self._reply(txn, req, 400)
            return
        dev = self.devices.get(req.from_.uri.user or "") or self.devices.get(msg.device_id)
        if dev is None or not dev.online or not isinstance(msg, CatalogNotify):
            self._reply(txn, req, 403 if dev is None or not dev.online else 400)
            return
        self._reply(txn, req, 200)
        self._spawn(self._catalog_events(dev, msg.items), f"gb-notify-{dev.code}")

    async def _catalog_events(self, dev: Device, items: list[CatalogItem]) -> None:
        entry = await self.directory.lookup(dev.code)
        if entry is None:
            return
        for it in items:
            ev = (it.event or "UPDATE").upper()
            try:
                if ev in ("ADD", "UPDATE"):
                    for code in await self.directory.upsert_channels(entry, [it]):
                        if code not in dev.catalog:
                            dev.catalog.append(code)
                elif ev == "DEL":
                    if await self.directory.remove_channel(dev.code, it.device_id):
                        dev.catalog = [c for c in dev.catalog if c != it.device_id]
                elif ev in ("ON", "OFF", "VLOST", "DEFECT"):
                    if it.device_id in await self.directory.channels_of(dev.code):
                        await self.directory.set_presence([it.device_id], ev == "ON")
                else:
                    log.info("gb catalog notify device=%s: unknown event %r", dev.code, ev)
                    continue
                log.info("gb catalog notify device=%s channel=%s %s", dev.code, it.device_id, ev)
            except VmeshError as e:
                log.info(
                    "gb catalog notify device=%s channel=%s %s: %s", dev.code, it.device_id, ev, e
                )

    async def subscribe_catalog(self, dev: Device) -> None:
        """SUBSCRIBE to the device's catalogue changes for ``catalog_subscribe_seconds``."""
        expires = self.config.catalog_subscribe_seconds
        sn = self.next_sn()
        req = self.make_request(
            "SUBSCRIBE",
            dev,
            to_user=dev.code,
            body=encode_manscdp(CatalogQuery(dev.code, sn), dev.charset),
            content_type=CONTENT_TYPE,
        )
        req.headers.add("Event", f"Catalog;id={sn}")
        req.headers.add("Expires", str(expires))
        resp = await self.endpoint_request(req, dev.addr)
        if resp.status >= 300:
            dev.subscribed_until = None
            log.info("gb catalog subscribe device=%s refused: %s", dev.code, resp.status)
            return
        granted = resp.expires if resp.expires is not None else expires
        dev.subscribed_until = asyncio.get_running_loop().time() + granted
        self._save(dev)
        log.info("gb catalog subscribed device=%s expires=%s", dev.code, granted)

    async def subscribe_alarm(self, dev: Device) -> None:
        """SUBSCRIBE (``Event: presence``, a ``Query CmdType=Alarm`` body) to the device's alarms
        for ``alarm_subscribe_seconds``; renewed a fifth before it ends, retried after 60 s when
        refused or unanswered. The alarms themselves come as MESSAGE/NOTIFY like any other."""
        expires = self.config.alarm_subscribe_seconds
        loop = asyncio.get_running_loop()
        try:
            req = self.make_request(
                "SUBSCRIBE",
                dev,
                to_user=dev.code,
                body=encode_manscdp(AlarmQuery(dev.code, self.next_sn()), dev.charset),
                content_type=CONTENT_TYPE,
            )
            req.headers.add("Event", "presence")
            req.headers.add("Expires", str(expires))
            resp = await self.endpoint_request(req, dev.addr)
        except (TimeoutError, VmeshError) as e:
            dev.alarm_next = loop.time() + 60.0
            log.info("gb alarm subscribe device=%s failed: %s", dev.code, e)
            return
        if resp.status >= 300:
            dev.alarm_next = loop.time() + 60.0
            log.info("gb alarm subscribe device=%s refused: %s", dev.code, resp.status)
            return
        granted = resp.expires if resp.expires is not None else expires
        dev.alarm_next = loop.time() + max(1.0, granted * 0.8)
        log.info("gb alarm subscribed device=%s expires=%s", dev.code, granted)

    def _finish_catalog(self, result: CatalogResult) -> None:
        fut = self._catalogs.get((result.device_id, result.sn))
        if fut is not None and not fut.done():
            fut.set_result(result)

    # -- queries

    async def _send_message(self, dev: Device, body: Any) -> SipResponse:
        req = self.make_request(
            "MESSAGE",
            dev,
            to_user=dev.code,
            body=encode_manscdp(body, dev.charset),
            content_type=CONTENT_TYPE,
        )
        resp = await self.endpoint_request(req, dev.addr)
        if resp.status >= 300:
            raise Conflict(f"device {dev.code} answered {resp.status} {resp.reason}")
        return resp

    async def query(self, dev: Device, message: Any, wait: float = 10.0) -> Any:
        """Send a DeviceInfo/DeviceStatus query and await the device's answer MESSAGE."""
        key = (dev.code, message.sn)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[key] = fut
        try:
            await self._send_message(dev, message)
            async with asyncio.timeout(wait):
                return await fut
        finally:
            self._waiters.pop(key, None)

    async def catalog(self, dev: Device) -> CatalogResult:
        sn = self.next_sn()
        key = (dev.code, sn)
        fut: asyncio.Future[CatalogResult] = asyncio.get_running_loop().create_future()
        self._catalogs[key] = fut
        self.assembler.expect(dev.code, sn, time.monotonic())
        try:
            await self._send_message(dev, CatalogQuery(dev.code, sn))
            return await fut  # the watchdog expires it after the idle timeout
        finally:
            self._catalogs.pop(key, None)

    async def _after_register(self, dev: Device) -> None:
        try:
            result = await self.catalog(dev)
            if result.error:
                log.warning("gb catalog device=%s: %s", dev.code, result.error)
            async with self._query_gate:
                entry = await self.directory.lookup(dev.code)
                if entry is not None and entry["kind"] == "platform":  # a lower platform
                    from vmesh.gb28181.lower import upsert_platform_catalog

                    dev.catalog = await upsert_platform_catalog(self.directory, entry, result.items)
                elif entry is not None:
                    dev.catalog = await self.directory.upsert_channels(entry, result.items)
            log.info("gb catalog device=%s channels=%d", dev.code, len(dev.catalog))
            if self.config.catalog_subscribe_seconds > 0:
                try:
                    await self.subscribe_catalog(dev)
                except (TimeoutError, VmeshError) as e:
                    log.info("gb catalog subscribe device=%s failed: %s", dev.code, e)
            info = await self.query(dev, DeviceInfoQuery(dev.code, self.next_sn()))
            status = await self.query(dev, DeviceStatusQuery(dev.code, self.next_sn()))
            async with self._query_gate:
                await self.directory.merge_attrs(
                    dev.code,
                    {
                        "manufacturer": info.manufacturer,
                        "model": info.model,
                        "firmware": info.firmware,
                        "channels": info.channel,
                        "gb_status": {
                            "online": status.online,
                            "status": status.status,
                            "encode": status.encode,
                            "record": status.record,
                        },
                        "gb_catalog_complete": result.complete,
                    },
                    name=info.device_name,
                )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("gb queries after register device=%s failed: %s", dev.code, e)

    # -- watchdog

    async def _watch(self) -> None:
        c = self.config
        tick = min(1.0, c.keepalive_interval_seconds / 4)
        while True:
            await asyncio.sleep(tick)
            now = asyncio.get_running_loop().time()
            for res in self.assembler.expire(time.monotonic()):
                self._finish_catalog(res)
            for dev in list(self.devices.values()):
                if not dev.online:
                    continue
                if dev.subscribed_until is not None and now > dev.subscribed_until - min(
                    60.0, c.catalog_subscribe_seconds / 5
                ):
                    dev.subscribed_until = None  # one refresh at a time
                    self._spawn(self._resubscribe(dev), f"gb-subscribe-{dev.code}")
                if c.alarm_subscribe_seconds > 0 and now >= dev.alarm_next:
                    dev.alarm_next = float("inf")  # one at a time
                    self._spawn(self.subscribe_alarm(dev), f"gb-alarm-subscribe-{dev.code}")
                silent = now - dev.last_seen > c.keepalive_interval_seconds * c.keepalive_missed
                if silent or now > dev.expires_at:
                    dev.online = False
                    why = "missed keepalives" if silent else "registration expired"
                    try:
                        self.writer.record(
                            Actor(f"gb:{dev.code}", "device"),
                            "gb28181.offline",
                            dev.code,
                            "ok",
                            {"reason": why},
                        )
                        await self._unregister(dev.code, why)
                    except Exception:
                        log.exception("gb offline of %s not recorded", dev.code)

    async def _resubscribe(self, dev: Device) -> None:
        try:
            await self.subscribe_catalog(dev)
        except (TimeoutError, VmeshError) as e:
            log.info("gb catalog subscription refresh device=%s failed: %s", dev.code, e)

    # -- live

    def open_source(
        self,
        code: str,
        spec: GbSpec,
        target: RtpTarget,
        on_status: Callable[[IngestStatus], None] | None,
        stall_seconds: float,
    ) -> GbLiveSource:
        if isinstance(spec, GbPlaybackSpec):  # a device recording (playback.py)
            return GbPlaybackSource(
                self, code, spec, target, on_status=on_status, stall_seconds=stall_seconds
            )
        return GbLiveSource(
            self, code, spec, target, on_status=on_status, stall_seconds=stall_seconds
        )

    async def bind_media_port(
        self, factory: Callable[[], asyncio.BaseProtocol], *, tcp: bool = False
    ) -> tuple[int, asyncio.DatagramTransport | asyncio.Server]:
        """A UDP socket (or, ``tcp``, a listening TCP server) on a free even port of the range."""
        lo, hi = self.config.media_port_range
        loop = asyncio.get_running_loop()
        host = self.config.sip_host or "0.0.0.0"
        for port in range(lo, hi + 1, 2):
            if port in self._used_ports:
                continue
            handle: asyncio.DatagramTransport | asyncio.Server
            try:
                if tcp:
                    handle = await loop.create_server(
                        factory,
                        host,
                        port,
                        family=socket.AF_INET,
                        reuse_address=True,
                    )
                else:
                    handle, _ = await loop.create_datagram_endpoint(
                        factory,
                        local_addr=(host, port),
                        family=socket.AF_INET,
                    )
            except OSError:
                continue
            self._used_ports.add(port)
            return port, handle
        raise Conflict(f"no free port left in [gb28181] media_port_range {lo}-{hi}")

    def release_media_port(
        self, port: int, handle: asyncio.DatagramTransport | asyncio.Server
    ) -> None:
        """Close a port from ``bind_media_port`` and hand it out again."""
        handle.close()
        self._used_ports.discard(port)

    def send_media(self, data: bytes, dest: tuple[str, int]) -> None:
        if self._media_out is not None:
            self._media_out.sendto(data, dest)

    # -- PTZ

    async def ptz(self, channel: str, command: str, speed: int = 128) -> str:
        """Send DeviceControl PTZCmd for ``channel``; returns the command bytes as hex."""
        if command not in PTZ_COMMANDS:
            raise InvalidInput.one("command", f"must be one of {', '.join(PTZ_COMMANDS)}", command)
        if not 0 <= speed <= 255:
            raise InvalidInput.one("speed", "must be between 0 and 255", speed)
        entry = await self.directory.lookup(channel)
        if entry is None:
            raise NotFound(f"no directory entry with code {channel}")
        device_code = entry["attrs"].get("gb_device")
        if not device_code:
            raise InvalidInput.one("code", "is not a GB/T 28181 channel", channel)
        dev = self.devices.get(device_code)
        if dev is None or not dev.online:
            raise Conflict(f"device {device_code} is offline")
        cmd: PtzCommand
        if command in _MOVES:
            pan, tilt, zoom = _MOVES[command]
            zs = min(15, speed >> 4)
            cmd = ptz_move(pan=pan, tilt=tilt, zoom=zoom, speed=speed, zoom_speed=zs)
        elif command == "stop":
            cmd = ptz_stop()
        else:
            if not 1 <= speed <= 255:
                raise InvalidInput.one("speed", "is the preset number, 1 to 255", speed)
            builder = {"preset_call": preset_call, "preset_set": preset_set}.get(
                command, preset_delete
            )
            cmd = builder(speed)
        await self._send_message(dev, PtzControl(channel, self.next_sn(), cmd))
        self.ptz_sent += 1
        return cmd.hex()


def _requested_expires(req: SipRequest) -> int:
    """The registration period asked for: ``Expires``, else the Contact's ``expires``, else 3600."""
    try:
        expires = req.expires
        if expires is None:
            contacts = req.contacts
            ce = contacts[0].param("expires") if contacts else None
            expires = int(ce) if ce and ascii_digits(ce) else 3600
    except SipParseError:
        expires = 3600
    return expires


class _GbCollector(Collector):
    def __init__(self, svc: GbService) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        ssrc = GaugeMetricFamily("vmesh_gb28181_ssrcs_in_use", "SSRCs allocated to live sessions")
        ssrc.add_metric([], self.svc.ssrcs.in_use)
        sess = GaugeMetricFamily("vmesh_gb28181_sessions", "live INVITE sessions")
        sess.add_metric([], len(self.svc.sessions))
        devs = GaugeMetricFamily("vmesh_gb28181_devices_online", "registered devices online")
        devs.add_metric([], sum(1 for d in self.svc.devices.values() if d.online))
        yield from (ssrc, sess, devs)
