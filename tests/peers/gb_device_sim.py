"""A simulated GB/T 28181 device (IPC or NVR) for tests: our own SIP UA over the project's core.

It registers with digest (answering the platform's 401 challenge), sends Keepalive MESSAGEs,
answers Catalog (paged ``page_size`` items per MESSAGE, GB2312 names), DeviceInfo and
DeviceStatus queries, logs the PTZ commands it receives (DeviceControl ``PTZCmd``, parsed), and
accepts a live INVITE: it answers 200 with ``y=`` echoing the platform's SSRC and, after the ACK,
sends PS over RTP (our ``PsMuxer`` + ``RtpPsPacketizer``) of an ffmpeg-encoded H.264 clip at
25 fps, in a loop, to the address and port of the offer, until BYE. An offer of ``TCP/RTP/AVP``
gets RFC 4571 framed RTP over TCP: ``a=setup:passive`` (the platform listens) → the simulator
connects to the offer's address and port; ``a=setup:active`` → it listens on a port of its own,
answers ``a=setup:passive`` with that port and streams down the connection the platform opens.

With ``start_keepalive(interval)`` it sends a Keepalive every ``interval`` seconds (with jitter)
and registers again when the platform answers 403 (what a device does after a platform restart).
``SimThread`` runs simulators on an event loop of their own in a background thread, for
synchronous (browser) tests.

Everything it saw is kept for assertions: ``ptz`` (commands), ``invites``, ``byes``, ``acks``,
``alarm_responses`` (the platform's Response/Alarm to ``send_alarm``), ``alarm_subscribes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import subprocess
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from vmesh.gb28181.digest import answer_challenge
from vmesh.gb28181.manscdp import (
    CONTENT_TYPE,
    AlarmNotify,
    AlarmQuery,
    AlarmResponse,
    CatalogItem,
    CatalogNotify,
    CatalogQuery,
    CatalogResponse,
    DeviceControlResponse,
    DeviceInfoQuery,
    DeviceInfoResponse,
    DeviceStatusQuery,
    DeviceStatusResponse,
    Keepalive,
    PtzCommand,
    PtzControl,
    decode_manscdp,
    encode_manscdp,
)
from vmesh.gb28181.message import Headers, SipRequest, SipResponse, SipUri, make_response
from vmesh.gb28181.ps import (
    AccessUnit,
    PsCodec,
    PsMuxer,
    RtpPsPacketizer,
    frame_rfc4571,
    split_annexb,
)
from vmesh.gb28181.sdp import GbSdp, parse_sdp
from vmesh.gb28181.transaction import Address, ServerTransaction, new_branch
from vmesh.gb28181.transport import SipEndpoint


def h264_clip(
    path: Path, frames: int = 50, size: str = "320x240", gop: int = 25, lavfi: str | None = None
) -> list[bytes]:
    """Access units (Annex-B) of an ffmpeg testsrc2 clip (or another ``lavfi`` source), split at
    access unit delimiters."""
    if not path.exists():
        subprocess.run(
            [
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", lavfi or f"testsrc2=size={size}:rate=25",
                "-frames:v", str(frames), "-g", str(gop), "-bf", "0", "-pix_fmt", "yuv420p",
                "-c:v", "libx264", "-profile:v", "baseline", "-bsf:v", "h264_metadata=aud=insert",
                "-f", "h264", str(path),
            ],
            check=True,
            timeout=120,
        )  # fmt: skip
    aus: list[list[bytes]] = []
    for nal in split_annexb(path.read_bytes()):
        if nal[0] & 0x1F == 9 or not aus:
            aus.append([])
        aus[-1].append(nal)
    return [b"".join(b"\x00\x00\x00\x01" + n for n in au) for au in aus]


@dataclass
class Stream:
    call_id: str
    dest: Address
    ssrc: int
    task: asyncio.Task[None] | None = None
    packets: int = 0
    tcp: str | None = None  # None (UDP), "connect" (we dial dest) or "listen" (platform dials)
    server: asyncio.Server | None = None
    accepted: asyncio.Future[asyncio.StreamWriter] | None = None


@dataclass
class GbDeviceSim:
    device_id: str
    password: str
    platform_id: str
    platform: Address
    channels: list[tuple[str, str]] = field(default_factory=list)  # (code, name)
    clip: list[bytes] = field(default_factory=list)
    page_size: int = 2
    expires: int = 3600
    name: str = "模拟摄像机"
    endpoint: SipEndpoint | None = None
    local: Address = ("127.0.0.1", 0)
    ptz: list[tuple[str, PtzCommand]] = field(default_factory=list)
    invites: list[GbSdp] = field(default_factory=list)
    acks: int = 0
    byes: list[str] = field(default_factory=list)
    catalog_queries: int = 0
    # The platform's catalogue subscription: (its address, Call-ID, our tag, Expires) or None.
    subscription: tuple[Address, str, str, int] | None = None
    subscribes: int = 0
    reregistrations: int = 0
    alarm_responses: list[AlarmResponse] = field(default_factory=list)
    alarm_subscribes: list[str] = field(default_factory=list)  # their Event headers
    streams: dict[str, Stream] = field(default_factory=dict)
    _sn: int = 1
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _cseq: int = 1
    _call_id: str = field(default_factory=lambda: secrets.token_hex(8))

    async def start(self) -> None:
        self.endpoint = SipEndpoint(self._on_request)
        self.local = await self.endpoint.start_udp("127.0.0.1", 0)

    async def close(self) -> None:
        for s in list(self.streams.values()):
            if s.task is not None:
                s.task.cancel()
        for t in list(self._tasks):
            t.cancel()
        if self.endpoint is not None:
            self.endpoint.close()

    # -- requests to the platform

    def _request(self, method: str, body: bytes = b"", ctype: str | None = None) -> SipRequest:
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {self.local[0]}:{self.local[1]};rport;branch={new_branch()}")
        domain = self.platform_id[:10]
        h.add("From", f"<sip:{self.device_id}@{domain}>;tag={secrets.token_hex(4)}")
        to_user = self.device_id if method == "REGISTER" else self.platform_id
        h.add("To", f"<sip:{to_user}@{domain}>")
        h.add("Call-ID", self._call_id if method == "REGISTER" else secrets.token_hex(8))
        self._cseq += 1
        h.add("CSeq", f"{self._cseq} {method}")
        h.add("Max-Forwards", "70")
        h.add("Contact", f"<sip:{self.device_id}@{self.local[0]}:{self.local[1]}>")
        if ctype:
            h.add("Content-Type", ctype)
        uri = SipUri(host=self.platform[0], user=self.platform_id, port=self.platform[1])
        return SipRequest(headers=h, body=body, method=method, uri=uri)

    async def register(self, expires: int | None = None) -> int:
        """REGISTER, answering a digest challenge; the final status code."""
        assert self.endpoint is not None
        exp = self.expires if expires is None else expires
        req = self._request("REGISTER")
        req.headers.add("Expires", str(exp))
        resp = await self.endpoint.request(req, self.platform)
        if resp.status == 401:
            challenge = resp.headers.get("WWW-Authenticate") or ""
            req = self._request("REGISTER")
            req.headers.add("Expires", str(exp))
            req.headers.add(
                "Authorization",
                answer_challenge(
                    challenge,
                    method="REGISTER",
                    uri=str(req.uri),
                    username=self.device_id,
                    password=self.password,
                ),
            )
            resp = await self.endpoint.request(req, self.platform)
        return resp.status

    async def keepalive(self) -> int:
        assert self.endpoint is not None
        self._sn += 1
        body = encode_manscdp(Keepalive(self.device_id, self._sn))
        resp = await self.endpoint.request(
            self._request("MESSAGE", body, CONTENT_TYPE), self.platform
        )
        return resp.status

    def start_keepalive(self, interval: float) -> None:
        """Keepalive every ``interval`` s (±20 % jitter); register again on a 403."""
        self._spawn(self._keepalive_loop(interval))

    async def _keepalive_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            with contextlib.suppress(TimeoutError):
                if await self.keepalive() == 403:
                    self.reregistrations += 1
                    await self.register()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def notify_catalog(self, items: list[CatalogItem], *, sip_method: str = "NOTIFY") -> int:
        """Send catalogue changes (items with ``event``) as NOTIFY (or MESSAGE); the status."""
        assert self.endpoint is not None
        self._sn += 1
        body = encode_manscdp(CatalogNotify(self.device_id, self._sn, len(items), items), "GB2312")
        req = self._request(sip_method, body, CONTENT_TYPE)
        if sip_method == "NOTIFY":
            req.headers.add("Event", "Catalog")
            req.headers.add("Subscription-State", "active")
        resp = await self.endpoint.request(req, self.platform)
        return resp.status

    async def send_alarm(self, alarm: AlarmNotify, body: bytes | None = None) -> SipResponse:
        """MESSAGE Notify/Alarm (or ``body`` as it is, for malformed ones); a new transaction
        each time, as a device repeating an alarm that got no Response does."""
        assert self.endpoint is not None
        wire = body if body is not None else encode_manscdp(alarm, "GB2312")
        return await self.endpoint.request(
            self._request("MESSAGE", wire, CONTENT_TYPE), self.platform
        )

    async def _send(self, message: object) -> SipResponse:
        assert self.endpoint is not None
        body = encode_manscdp(message, "GB2312")  # type: ignore[arg-type]
        return await self.endpoint.request(
            self._request("MESSAGE", body, CONTENT_TYPE), self.platform
        )

    # -- requests from the platform

    def _on_request(self, req: SipRequest, source: Address, txn: ServerTransaction | None) -> None:
        assert self.endpoint is not None
        if req.method == "ACK":
            self.acks += 1
            s = self.streams.get(req.call_id)
            if s is not None and s.task is None:
                s.task = asyncio.create_task(self._stream(s))
            return
        if txn is None:
            return
        if req.method == "MESSAGE":
            self.endpoint.respond(txn, make_response(req, 200, to_tag=secrets.token_hex(4)))
            self._spawn(self._answer(decode_manscdp(req.body).message))
        elif req.method == "INVITE":
            offer = parse_sdp(req.body)
            self.invites.append(offer)
            dest = (offer.connection_address, offer.port)
            stream = Stream(req.call_id, dest, offer.ssrc_value or 0)
            self.streams[req.call_id] = stream
            answer = GbSdp(
                session_name="Play",
                origin_user=self.device_id,
                origin_address=self.local[0],
                connection_address=self.local[0],
                port=15060,
                direction="sendonly",
                ssrc=offer.ssrc,
            )
            if offer.tcp:
                answer.tcp, answer.connection_new = True, True
                if offer.setup == "active":  # the platform dials us
                    self._spawn(self._answer_listening(req, txn, stream, answer))
                    return
                stream.tcp, answer.setup = "connect", "active"
            resp = make_response(req, 200, to_tag=secrets.token_hex(4))
            resp.headers.add("Contact", f"<sip:{self.device_id}@{self.local[0]}:{self.local[1]}>")
            resp.headers.add("Content-Type", "APPLICATION/SDP")
            resp.body = answer.encode().encode()
            self.endpoint.respond(txn, resp)
        elif req.method == "SUBSCRIBE" and isinstance(decode_manscdp(req.body).message, AlarmQuery):
            self.alarm_subscribes.append(req.headers.get("Event") or "")
            resp = make_response(req, 200, to_tag=secrets.token_hex(4))
            resp.headers.add("Expires", str(req.expires if req.expires is not None else 3600))
            self.endpoint.respond(txn, resp)
        elif req.method == "SUBSCRIBE":
            self.subscribes += 1
            expires = req.expires if req.expires is not None else 3600
            tag = secrets.token_hex(4)
            self.subscription = (source, req.call_id, tag, expires)
            resp = make_response(req, 200, to_tag=tag)
            resp.headers.add("Expires", str(expires))
            self.endpoint.respond(txn, resp)
        elif req.method == "BYE":
            self.byes.append(req.call_id)
            s = self.streams.pop(req.call_id, None)
            if s is not None and s.task is not None:
                s.task.cancel()
            status = 200 if s is not None else 481
            self.endpoint.respond(txn, make_response(req, status, to_tag=secrets.token_hex(4)))
        else:
            self.endpoint.respond(txn, make_response(req, 405, to_tag=secrets.token_hex(4)))

    async def _answer_listening(
        self, req: SipRequest, txn: ServerTransaction, s: Stream, answer: GbSdp
    ) -> None:
        """tcp_active offer: listen, answer setup:passive with our port, accept one connection."""
        assert self.endpoint is not None
        s.tcp = "listen"
        s.accepted = asyncio.get_running_loop().create_future()

        async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if s.accepted is not None and not s.accepted.done():
                s.accepted.set_result(w)
            else:
                w.close()

        s.server = await asyncio.start_server(accept, self.local[0], 0)
        answer.port = s.server.sockets[0].getsockname()[1]
        answer.setup = "passive"
        resp = make_response(req, 200, to_tag=secrets.token_hex(4))
        resp.headers.add("Contact", f"<sip:{self.device_id}@{self.local[0]}:{self.local[1]}>")
        resp.headers.add("Content-Type", "APPLICATION/SDP")
        resp.body = answer.encode().encode()
        self.endpoint.respond(txn, resp)

    async def _answer(self, msg: object) -> None:
        if isinstance(msg, CatalogQuery):
            self.catalog_queries += 1
            items = [
                CatalogItem(
                    code,
                    name=name,
                    manufacturer="vmesh-sim",
                    model="SIM-1",
                    parent_id=self.device_id,
                    status="ON",
                    ptz_type=1,
                )
                for code, name in self.channels
            ]
            total = len(items)
            pages = [items[i : i + self.page_size] for i in range(0, total, self.page_size)]
            for page in pages or [[]]:
                await self._send(CatalogResponse(self.device_id, msg.sn, total, page))
        elif isinstance(msg, DeviceInfoQuery):
            await self._send(
                DeviceInfoResponse(
                    self.device_id,
                    msg.sn,
                    device_name=self.name,
                    manufacturer="vmesh-sim",
                    model="SIM-1",
                    firmware="1.0",
                    channel=len(self.channels),
                    result="OK",
                )
            )
        elif isinstance(msg, DeviceStatusQuery):
            await self._send(
                DeviceStatusResponse(
                    self.device_id,
                    msg.sn,
                    result="OK",
                    online="ONLINE",
                    status="OK",
                    encode="ON",
                    record="OFF",
                )
            )
        elif isinstance(msg, AlarmResponse):
            self.alarm_responses.append(msg)
        elif isinstance(msg, PtzControl):
            self.ptz.append((msg.device_id, msg.command))
            await self._send(DeviceControlResponse(self.device_id, msg.sn, "OK"))

    async def _stream(self, s: Stream) -> None:
        """PS over RTP of the clip, 25 fps, looped, until BYE (UDP, or RFC 4571 over TCP)."""
        loop = asyncio.get_running_loop()
        writer: asyncio.StreamWriter | None = None
        transport: asyncio.DatagramTransport | None = None
        if s.tcp == "connect":
            _, writer = await asyncio.open_connection(*s.dest)
        elif s.tcp == "listen":
            assert s.accepted is not None
            writer = await s.accepted
        else:
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=s.dest
            )
        mux = PsMuxer(PsCodec.h264, PsCodec.pcma)  # declares audio and never sends it
        rtp = RtpPsPacketizer(ssrc=s.ssrc)
        pts = 0
        try:
            while True:
                for data in self.clip:
                    key = any(n[0] & 0x1F == 5 for n in split_annexb(data))
                    au = AccessUnit(PsCodec.h264, 0xE0, pts, data, key)
                    for p in rtp.packetize(mux.mux(au), pts):
                        if writer is not None:
                            writer.write(frame_rfc4571(p.serialize()))
                        elif transport is not None:
                            transport.sendto(p.serialize())
                        s.packets += 1
                    if writer is not None:
                        await writer.drain()
                    pts += 3600
                    await asyncio.sleep(0.04)
        finally:
            with contextlib.suppress(Exception):
                if transport is not None:
                    transport.close()
                if writer is not None:
                    writer.close()
                if s.server is not None:
                    s.server.close()


T = TypeVar("T")


class SimThread:
    """An event loop in a daemon thread for simulators driven from synchronous tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
