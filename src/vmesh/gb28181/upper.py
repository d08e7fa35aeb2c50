"""Cascade up: this node as a lower platform of one or more upper GB/T 28181 platforms.

For each ``[[gb28181.upper]]`` table an :class:`UpperLink`:

- **registers** to the upper (``REGISTER sip:{upper}@{host}:{port}``, ``From``/``To`` our
  ``server_id``), answering its digest challenge with ``upper.password`` (username = our
  ``server_id``); refreshes at half of the granted ``Expires``; a refused or unanswered REGISTER
  is retried with back-off (1 s doubling to 60 s). ``state`` is ``registering``, ``registered``,
  ``failed`` (with ``last_error``) or ``stopped``; ``GET /api/gb28181/uppers`` shows it.
- **keeps alive**: ``Notify CmdType=Keepalive`` every ``keepalive_interval_seconds``; three
  unanswered (or refused) keepalives in a row make it register again.
- **answers queries** from the upper (``MESSAGE`` whose ``From`` is the upper's id): ``Catalog``
  with the node's directory in ``upper.scope`` (default everything) as catalogue items — business
  groups (215, ``department``) and virtual organisations (216, ``virtual_org`` and ``region``) with
  ``ParentID``/``BusinessGroupID``, then devices and channels — ``SumNum`` paged by
  ``catalog_page_size`` items per MESSAGE, each page sent after the 200 of the previous one, in
  the charset the upper's query declared; ``DeviceInfo`` and ``DeviceStatus`` about this node.
- **serves live INVITEs** (``s=Play``) for a camera in scope: the camera's source is held in the
  media service, a switch output sends its RTP (H.264 or H.265) to a loopback socket of ours,
  access units are reassembled (``vmesh.recording.snapshot.depacketize``), muxed into PS
  (``ps.PsMuxer``) and sent as RTP (``ps.RtpPsPacketizer``, PT 96) with the SSRC of the offer's
  ``y=`` (ours when it gives none) to the offer's ``c=``/``m=``: over UDP, or over TCP with
  RFC 4571 framing — we connect when the offer says ``a=setup:passive``, we listen (and answer
  ``a=setup:passive`` with our port) when it says ``a=setup:active``. A BYE from the upper stops
  it (output removed, source released, SSRC freed). Unknown channel → 404, not in scope → 403,
  no source or video off → 488/503, a bad SDP → 400 naming the line.

``Cascade`` owns the links and routes the upper's requests; ``GbService`` calls
``Cascade.handle`` for requests whose ``From`` user is one of the uppers.

Public: ``Cascade``, ``UpperLink``, ``catalog_items``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from vmesh.config import GbUpperConfig
from vmesh.directory.models import Entry
from vmesh.directory.store import in_subtree
from vmesh.errors import VmeshError
from vmesh.gb28181.digest import answer_challenge
from vmesh.gb28181.manscdp import (
    CONTENT_TYPE,
    CatalogItem,
    CatalogQuery,
    CatalogResponse,
    DeviceInfoQuery,
    DeviceInfoResponse,
    DeviceStatusQuery,
    DeviceStatusResponse,
    Keepalive,
    ManscdpError,
    decode_manscdp,
    encode_manscdp,
)
from vmesh.gb28181.message import Headers, SipRequest, SipResponse, SipUri, make_response
from vmesh.gb28181.ps import AccessUnit, PsCodec, PsMuxer, RtpPsPacketizer, frame_rfc4571
from vmesh.gb28181.sdp import GbSdp, SdpError, parse_sdp
from vmesh.gb28181.transaction import Address, ServerTransaction, new_branch

if TYPE_CHECKING:
    from vmesh.gb28181.service import GbService

log = logging.getLogger(__name__)

_BACKOFF_MAX = 60.0
_KEEPALIVE_MISSES = 3
# Media service holders of upper sessions: negative, below the fabric's/recorder's/snapshot's.
_HOLDERS = itertools.count(-1000, -1)
_DECL_CHARSET = re.compile(rb"encoding\s*=\s*[\"']([A-Za-z0-9_-]+)[\"']")
_ENDPOINT_KINDS = ("camera", "nvr", "platform")


def declared_charset(body: bytes) -> str:
    """The charset an XML body's prolog declares (GB2312 when it declares none)."""
    m = _DECL_CHARSET.search(body[:200])
    cs = m.group(1).decode().upper() if m else "GB2312"
    return cs if cs in ("GB2312", "GBK", "GB18030", "UTF-8") else "GB2312"


# ------------------------------------------------------------------------------- catalogue


async def catalog_items(svc: GbService, scope: str) -> list[CatalogItem]:
    """The directory in ``scope`` (an org code; empty: all) as catalogue items, org units first."""
    db = svc.directory.db
    cols = (
        Entry.id,
        Entry.code,
        Entry.parent_id,
        Entry.kind,
        Entry.name,
        Entry.status,
        Entry.lat,
        Entry.lon,
        Entry.attrs,
    )
    async with db.sessions() as s:
        q = select(*cols)
        if scope:
            path = await s.scalar(select(Entry.path).where(Entry.code == scope))
            if path is None:
                log.warning("gb upper scope %s is not in the directory: nothing pushed", scope)
                return []
            q = q.where(in_subtree(path, db.dialect))
        rows = (await s.execute(q.order_by(Entry.path))).all()
    by_id = {r.id: r for r in rows}
    me = svc.server_id

    def parent_code(r: Any) -> str:
        p = by_id.get(r.parent_id)
        return p.code if p is not None else me

    def group_of(r: Any) -> str | None:
        p = by_id.get(r.parent_id)
        while p is not None:
            if p.kind == "department":
                return str(p.code)
            p = by_id.get(p.parent_id)
        return None

    orgs: list[CatalogItem] = []
    ends: list[CatalogItem] = []
    for r in rows:
        if r.kind == "department":
            orgs.append(CatalogItem(r.code, name=r.name, civil_code=r.code[:6], parent_id=me))
        elif r.kind in ("virtual_org", "region"):
            orgs.append(
                CatalogItem(
                    r.code,
                    name=r.name,
                    civil_code=r.code[:6],
                    parent_id=parent_code(r),
                    business_group_id=group_of(r),
                )
            )
        elif r.kind in _ENDPOINT_KINDS:
            attrs = _attrs(r.attrs)
            ends.append(
                CatalogItem(
                    r.code,
                    name=r.name,
                    manufacturer=attrs.get("manufacturer") or "vmesh",
                    model=attrs.get("model") or r.kind,
                    owner="vmesh",
                    civil_code=r.code[:6],
                    address=attrs.get("address") or r.name,
                    parental=1 if r.kind != "camera" else 0,
                    parent_id=parent_code(r),
                    business_group_id=group_of(r),
                    safety_way=0,
                    register_way=1,
                    secrecy=0,
                    status="ON" if r.status == "online" else "OFF",
                    longitude=r.lon,
                    latitude=r.lat,
                    ptz_type=attrs.get("ptz_type")
                    if isinstance(attrs.get("ptz_type"), int)
                    else None,
                )
            )
    return orgs + ends


def _attrs(raw: Any) -> dict[str, Any]:
    try:
        v = json.loads(raw or "{}") if not isinstance(raw, dict) else raw
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


# ------------------------------------------------------------------------------- upper link


class UpperLink:
    """Registration and keepalive to one upper platform (see the module docstring)."""

    def __init__(self, svc: GbService, config: GbUpperConfig) -> None:
        self.svc = svc
        self.config = config
        self.addr: Address = config.host_port
        self.domain = config.domain or config.id[:10]
        self.state = "registering"
        self.last_error: str | None = None
        self.registered_at: float | None = None
        self.expires = 0
        self.registrations = 0
        self.keepalives = 0
        self.catalog_answers = 0
        self._call_id = secrets.token_hex(10)
        self._cseq = 0
        self._sn = random.randint(1, 99999)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.config.id,
            "address": self.config.address,
            "state": self.state,
            "last_error": self.last_error,
            "registered_at": self.registered_at,
            "expires": self.expires,
            "registrations": self.registrations,
            "keepalives": self.keepalives,
            "catalog_answers": self.catalog_answers,
            "sessions": sum(1 for s in self.svc_sessions() if s.link is self),
        }

    def svc_sessions(self) -> list[UpperSession]:
        c = self.svc.cascade
        return list(c.sessions.values()) if c is not None else []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"gb-upper-{self.config.id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.state == "registered":
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.register(0)
        self.state = "stopped"

    def next_sn(self) -> int:
        self._sn += 1
        return self._sn

    def request(
        self, method: str, *, body: bytes = b"", content_type: str | None = None
    ) -> SipRequest:
        svc = self.svc
        me = svc.server_id
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {svc.address}:{svc.port};rport;branch={new_branch()}")
        h.add("From", f"<sip:{me}@{svc.domain}>;tag={secrets.token_hex(4)}")
        to_user = me if method == "REGISTER" else self.config.id
        to_domain = svc.domain if method == "REGISTER" else self.domain
        h.add("To", f"<sip:{to_user}@{to_domain}>")
        h.add("Call-ID", self._call_id if method == "REGISTER" else secrets.token_hex(10))
        self._cseq += 1
        h.add("CSeq", f"{self._cseq} {method}")
        h.add("Max-Forwards", "70")
        h.add("Contact", f"<sip:{me}@{svc.address}:{svc.port}>")
        h.add("User-Agent", "vmesh")
        if content_type:
            h.add("Content-Type", content_type)
        uri = SipUri(host=self.addr[0], user=self.config.id, port=self.addr[1])
        return SipRequest(headers=h, body=body, method=method, uri=uri)

    async def register(self, expires: int | None = None) -> SipResponse:
        exp = self.config.register_expires if expires is None else expires
        req = self.request("REGISTER")
        req.headers.add("Expires", str(exp))
        resp = await self.svc.endpoint_request(req, self.addr)
        if resp.status in (401, 407):
            challenge = resp.headers.get(
                "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
            )
            req = self.request("REGISTER")
            req.headers.add("Expires", str(exp))
            req.headers.add(
                "Authorization" if resp.status == 401 else "Proxy-Authorization",
                answer_challenge(
                    challenge or "",
                    method="REGISTER",
                    uri=str(req.uri),
                    username=self.svc.server_id,
                    password=self.config.password,
                ),
            )
            resp = await self.svc.endpoint_request(req, self.addr)
        return resp

    async def send(self, message: Any, charset: str = "GB2312") -> SipResponse:
        req = self.request(
            "MESSAGE", body=encode_manscdp(message, charset), content_type=CONTENT_TYPE
        )
        return await self.svc.endpoint_request(req, self.addr)

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            try:
                resp = await self.register()
                if resp.status >= 300:
                    raise VmeshError(f"REGISTER answered {resp.status} {resp.reason}")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # timeouts, refusals, transport errors
                self.state, self.last_error = "failed", str(e) or type(e).__name__
                log.info(
                    "gb upper %s register failed: %s (retry in %.0f s)", self.config.id, e, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(_BACKOFF_MAX, backoff * 2)
                continue
            backoff = 1.0
            granted = resp.expires if resp.expires is not None else self.config.register_expires
            first = self.state != "registered"
            self.state, self.last_error = "registered", None
            self.expires, self.registered_at = granted, time.time()
            self.registrations += 1
            if first:
                log.info("gb upper %s registered expires=%s", self.config.id, granted)
            await self._keepalive_until(asyncio.get_running_loop().time() + max(granted / 2, 1.0))

    async def _keepalive_until(self, refresh_at: float) -> None:
        """Keepalives until the refresh is due (returns) or three in a row fail (state failed)."""
        loop = asyncio.get_running_loop()
        misses = 0
        interval = self.config.keepalive_interval_seconds
        while True:
            wait = min(interval, refresh_at - loop.time())
            if wait > 0:
                await asyncio.sleep(wait)
            if loop.time() >= refresh_at:
                return
            try:
                resp = await self.send(Keepalive(self.svc.server_id, self.next_sn()))
                ok = resp.status < 300
            except asyncio.CancelledError:
                raise
            except Exception:
                ok = False
            self.keepalives += ok
            misses = 0 if ok else misses + 1
            if misses >= _KEEPALIVE_MISSES:
                self.state, self.last_error = "failed", "3 keepalives in a row unanswered"
                log.info("gb upper %s: keepalives failed, registering again", self.config.id)
                return


# ------------------------------------------------------------------------------- sessions


@dataclass
class UpperSession:
    """One INVITE of an upper platform: a camera's switch output, remuxed to PS over RTP."""

    link: UpperLink
    call_id: str
    code: str
    ssrc: str
    dest: Address
    mode: str  # udp / tcp_connect (we dial) / tcp_listen (the upper dials)
    holder: int
    output_id: str = ""
    own_ssrc: bool = False
    packets: int = 0
    frames: int = 0
    acked: bool = False
    _in: asyncio.DatagramTransport | None = None
    _out: asyncio.DatagramTransport | None = None
    _server: asyncio.Server | None = None
    _writer: asyncio.StreamWriter | None = None
    _task: asyncio.Task[None] | None = None


class _SwitchIn(asyncio.DatagramProtocol):
    """RTP from the switch output: packets of one frame until the marker, then one PS frame."""

    def __init__(self, cascade: Cascade, session: UpperSession, codec: PsCodec) -> None:
        self.cascade = cascade
        self.session = session
        self.codec = codec
        self.mux = PsMuxer(codec, None)
        self.rtp = RtpPsPacketizer(ssrc=int(session.ssrc))
        self.frame: list[bytes] = []
        self.ts: int | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        ts = int.from_bytes(data[4:8], "big")
        if self.ts is not None and ts != self.ts and self.frame:
            self._flush()
        self.ts = ts
        self.frame.append(data)
        if data[1] & 0x80:
            self._flush()

    def _flush(self) -> None:
        from vmesh.recording.snapshot import depacketize

        frame, self.frame = self.frame, []
        if self.ts is None:
            return
        annexb = depacketize(frame, "h264" if self.codec is PsCodec.h264 else "h265")
        if not annexb:
            return
        au = AccessUnit(
            self.codec, PsMuxer.VIDEO_ID, self.ts, annexb, _keyframe(self.codec, annexb)
        )
        try:
            self.cascade.send_ps(self.session, self.rtp, self.mux.mux(au), self.ts)
        except Exception:
            log.exception("gb upper session %s: PS send failed", self.session.call_id)


def _keyframe(codec: PsCodec, annexb: bytes) -> bool:
    from vmesh.gb28181.ps import split_annexb

    for nal in split_annexb(annexb):
        if not nal:
            continue
        if codec is PsCodec.h264 and nal[0] & 0x1F in (5, 7):
            return True
        if codec is PsCodec.h265 and 16 <= (nal[0] >> 1) & 0x3F <= 23:
            return True
    return False


class Cascade:
    """The node's upper links and the sessions they asked for."""

    def __init__(self, svc: GbService) -> None:
        self.svc = svc
        self.links = {u.id: UpperLink(svc, u) for u in svc.config.upper}
        self.sessions: dict[str, UpperSession] = {}
        self.media: Any = None  # vmesh.media.service.MediaService, set by the node process
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        for link in self.links.values():
            link.start()

    async def stop(self) -> None:
        for s in list(self.sessions.values()):
            await self.end(s, "node stopping")
        for t in list(self._tasks):
            t.cancel()
        for link in self.links.values():
            await link.stop()

    def _spawn(self, coro: Any, name: str) -> None:
        t = asyncio.create_task(coro, name=name)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- incoming

    def handle(self, req: SipRequest, source: Address, txn: ServerTransaction | None) -> bool:
        """Handle a request of an upper platform; False when it is not from one."""
        user = req.from_.uri.user or ""
        link = self.links.get(user)
        if link is None:
            return False
        if txn is None:
            if req.method == "ACK" and (s := self.sessions.get(req.call_id)) is not None:
                s.acked = True
            return True
        if req.method == "MESSAGE":
            self._message(link, req, source, txn)
        elif req.method == "INVITE":
            self._spawn(self._invite(link, req, txn), f"gb-upper-invite-{req.call_id}")
        elif req.method == "BYE":
            s = self.sessions.get(req.call_id)
            self._respond(txn, req, 200 if s is not None else 481)
            if s is not None:
                self._spawn(self.end(s, "upper hung up"), f"gb-upper-bye-{req.call_id}")
        else:
            self._respond(txn, req, 405)
        return True

    def _respond(
        self,
        txn: ServerTransaction,
        req: SipRequest,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> None:
        resp = make_response(req, status, reason, to_tag=to_tag or secrets.token_hex(4))
        if content_type:
            resp.headers.add(
                "Contact", f"<sip:{self.svc.server_id}@{self.svc.address}:{self.svc.port}>"
            )
            resp.headers.add("Content-Type", content_type)
            resp.body = body
        if self.svc.endpoint is not None:
            self.svc.endpoint.respond(txn, resp)

    def _message(
        self, link: UpperLink, req: SipRequest, source: Address, txn: ServerTransaction
    ) -> None:
        try:
            msg = decode_manscdp(req.body).message
        except ManscdpError as e:
            log.info("gb upper %s bad MANSCDP: %s", link.config.id, e)
            self._respond(txn, req, 400, f"Bad Request ({e.field}: {e.reason})")
            return
        self._respond(txn, req, 200)
        charset = declared_charset(req.body)
        if isinstance(msg, CatalogQuery):
            self._spawn(self._catalog(link, msg.sn, charset), f"gb-upper-catalog-{msg.sn}")
        elif isinstance(msg, DeviceInfoQuery):
            from vmesh import __version__

            info = DeviceInfoResponse(
                self.svc.server_id,
                msg.sn,
                device_name="vmesh",
                manufacturer="vmesh",
                model="vmesh node",
                firmware=__version__,
                result="OK",
            )
            self._spawn(link.send(info, charset), "gb-upper-info")
        elif isinstance(msg, DeviceStatusQuery):
            status = DeviceStatusResponse(
                self.svc.server_id,
                msg.sn,
                result="OK",
                online="ONLINE",
                status="OK",
                device_time=time.strftime("%Y-%m-%dT%H:%M:%S"),
            )
            self._spawn(link.send(status, charset), "gb-upper-status")
        else:
            log.info("gb upper %s: %s not answered", link.config.id, type(msg).__name__)

    async def _catalog(self, link: UpperLink, sn: int, charset: str) -> None:
        items = await catalog_items(self.svc, link.config.scope)
        size = link.config.catalog_page_size
        me = self.svc.server_id
        pages = [items[i : i + size] for i in range(0, len(items), size)] or [[]]
        for page in pages:
            try:
                resp = await link.send(CatalogResponse(me, sn, len(items), page), charset)
                if resp.status >= 300:
                    log.info("gb upper %s refused a catalog page: %s", link.config.id, resp.status)
                    return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("gb upper %s catalog page not delivered: %s", link.config.id, e)
                return
        link.catalog_answers += 1
        log.info(
            "gb upper %s catalog sent items=%d pages=%d", link.config.id, len(items), len(pages)
        )

    # -- live

    async def _invite(self, link: UpperLink, req: SipRequest, txn: ServerTransaction) -> None:
        code = req.uri.user or ""
        subject = req.headers.get("Subject") or ""
        if subject and len(subject.split(":", 1)[0]) == 20:
            code = subject.split(":", 1)[0]
        try:
            offer = parse_sdp(req.body)
        except SdpError as e:
            self._respond(txn, req, 400, f"Bad Request (SDP {e.errors[0].field})")
            return
        if offer.is_playback:
            self._respond(txn, req, 488, "Not Acceptable Here (only s=Play)")
            return
        entry = await self.svc.directory.lookup(code)
        if entry is None:
            self._respond(txn, req, 404)
            return
        if link.config.scope and not await self._in_scope(code, link.config.scope):
            self._respond(txn, req, 403)
            return
        media = self.media
        if media is None:
            self._respond(txn, req, 503, "Service Unavailable (live video is off)")
            return
        try:
            from vmesh.media.sources import source_from_attrs

            spec = source_from_attrs(code, entry["name"], entry["attrs"])
        except VmeshError as e:
            self._respond(txn, req, 488, f"Not Acceptable Here ({e})")
            return
        loop = asyncio.get_running_loop()
        own = offer.ssrc is None
        ssrc = offer.ssrc or self.svc.ssrcs.allocate(loop.time())
        tcp_mode = "tcp_listen" if offer.setup == "active" else "tcp_connect"
        mode = tcp_mode if offer.tcp else "udp"
        s = UpperSession(
            link,
            req.call_id,
            code,
            ssrc,
            (offer.connection_address, offer.port),
            mode,
            next(_HOLDERS),
            own_ssrc=own,
        )
        self.sessions[req.call_id] = s
        try:
            port = await self._start_media(s, spec)
        except Exception as e:
            log.info("gb upper invite %s failed: %s", code, e)
            await self.end(s, str(e))
            self._respond(txn, req, 503, "Service Unavailable (camera not available)")
            return
        answer = GbSdp(
            session_name="Play",
            origin_user=code,
            origin_address=self.svc.address,
            connection_address=self.svc.address,
            port=port,
            direction="sendonly",
            ssrc=ssrc,
            tcp=offer.tcp,
            setup={"tcp_listen": "passive", "tcp_connect": "active"}.get(mode),
            connection_new=offer.tcp,
        )
        self._respond(
            txn,
            req,
            200,
            to_tag=secrets.token_hex(4),
            body=answer.encode().encode(),
            content_type="APPLICATION/SDP",
        )
        log.info(
            "gb upper %s invite ok channel=%s ssrc=%s mode=%s", link.config.id, code, ssrc, mode
        )

    async def _in_scope(self, code: str, scope: str) -> bool:
        async with self.svc.directory.db.sessions() as s:
            path = await s.scalar(select(Entry.path).where(Entry.code == scope))
            mine = await s.scalar(select(Entry.path).where(Entry.code == code))
        return path is not None and mine is not None and mine.startswith(path)

    async def _start_media(self, s: UpperSession, spec: Any) -> int:
        """Hold the source, route a switch output to our socket; the port we send from."""
        from vmesh.switch.codecs import Codec
        from vmesh.switch.core import OutputSpec

        media = self.media
        loop = asyncio.get_running_loop()
        input_id = await media.hold(s.code, spec, s.holder)
        codec = media.transport.switch.snapshot().inputs[input_id].codec
        if codec not in (Codec.h264, Codec.h265):
            raise VmeshError(f"video codec {codec} cannot be carried in PS")
        ps_codec = PsCodec.h264 if codec is Codec.h264 else PsCodec.h265
        s._in, _ = await loop.create_datagram_endpoint(
            lambda: _SwitchIn(self, s, ps_codec), local_addr=("127.0.0.1", 0)
        )
        in_port = s._in.get_extra_info("sockname")[1]
        host = self.svc.config.sip_host or "0.0.0.0"
        if s.mode == "udp":
            s._out, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(host, 0)
            )
            port = int(s._out.get_extra_info("sockname")[1])
        elif s.mode == "tcp_listen":

            def accepted(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                if s._writer is None:
                    s._writer = w
                else:
                    w.close()

            s._server = await asyncio.start_server(accepted, host, 0)
            port = int(s._server.sockets[0].getsockname()[1])
        else:
            async with asyncio.timeout(10.0):
                _, writer = await asyncio.open_connection(*s.dest)
            s._writer = writer
            port = int(writer.get_extra_info("sockname")[1])
        s.output_id = f"gb-upper/{s.call_id}"
        await media.transport.add_output(
            OutputSpec(s.output_id, codec, ssrc=random.getrandbits(32), dest=("127.0.0.1", in_port))
        )
        media.transport.route(s.output_id, input_id)
        return port

    def send_ps(self, s: UpperSession, rtp: RtpPsPacketizer, frame: bytes, ts: int) -> None:
        s.frames += 1
        for p in rtp.packetize(frame, ts):
            data = p.serialize()
            if s.mode == "udp":
                if s._out is not None:
                    s._out.sendto(data, s.dest)
            elif s._writer is not None and not s._writer.is_closing():
                s._writer.write(frame_rfc4571(data))
            else:
                continue
            s.packets += 1

    async def end(self, s: UpperSession, why: str) -> None:
        """Stop a session: output, sockets, source, SSRC (idempotent)."""
        if self.sessions.pop(s.call_id, None) is None:
            return
        media = self.media
        if media is not None:
            if s.output_id:
                with contextlib.suppress(Exception):
                    media.transport.remove_output(s.output_id)
            with contextlib.suppress(Exception):
                media.unhold(s.code, s.holder)
        for t in (s._in, s._out, s._writer, s._server):
            if t is not None:
                with contextlib.suppress(Exception):
                    t.close()
        if s.own_ssrc:
            self.svc.ssrcs.release(s.ssrc, asyncio.get_running_loop().time())
        log.info("gb upper session ended channel=%s (%s) frames=%d", s.code, why, s.frames)
