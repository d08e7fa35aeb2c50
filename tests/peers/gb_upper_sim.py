"""A simulated upper GB/T 28181 platform for cascade tests: our own SIP UA over the project's core.

It is a registrar that challenges (digest, ``qop=auth``, realm = its domain) and accepts the
lower platform (a vmesh node) whose password it was given; it answers Keepalive MESSAGEs, and
then, driven by the test:

- ``query_catalog()`` sends ``Query CmdType=Catalog`` (declaring ``charset``) to the address the
  lower registered from and collects every page (``CatalogAssembler``) until ``SumNum`` items;
- ``query(DeviceInfoQuery|DeviceStatusQuery)`` awaits the answer MESSAGE;
- ``invite(channel, mode)`` sends a live INVITE (``s=Play``, recvonly, ``PS/90000``, ``y=`` SSRC)
  and receives the PS over RTP the lower sends: UDP on a port of its own, or TCP with RFC 4571
  framing — ``tcp_passive`` (we listen: ``a=setup:passive``) or ``tcp_active`` (we connect to the
  answer's port: ``a=setup:active``); ``bye(call_id)`` ends it.

``Play.ps()`` is the PS byte stream received (frames reassembled by ``RtpPsReassembler`` with the
SSRC we gave); ``decoded_frames(ps)`` decodes it with PyAV (``format="mpeg"``) — the check that
what the lower sends is a real PS stream of H.264 pictures.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import av

from vmesh.gb28181.digest import DigestServer
from vmesh.gb28181.manscdp import (
    CONTENT_TYPE,
    CatalogAssembler,
    CatalogQuery,
    CatalogResponse,
    CatalogResult,
    Keepalive,
    decode_manscdp,
    encode_manscdp,
)
from vmesh.gb28181.message import Headers, SipRequest, SipResponse, SipUri, make_response
from vmesh.gb28181.ps import Rfc4571Deframer, RtpPsReassembler
from vmesh.gb28181.sdp import GbSdp, parse_sdp
from vmesh.gb28181.transaction import Address, ServerTransaction, new_branch
from vmesh.gb28181.transport import SipEndpoint
from vmesh.switch.rtp import MalformedPacket, parse_rtp


def decoded_frames(ps: bytes) -> int:
    """Video frames PyAV decodes from a PS byte stream (FFmpeg's ``mpeg`` demuxer)."""
    n = 0
    with av.open(io.BytesIO(ps), mode="r", format="mpeg") as c:
        if not c.streams.video:
            return 0
        for packet in c.demux(c.streams.video[0]):
            with contextlib.suppress(av.error.InvalidDataError):
                n += len(packet.decode())
    return n


@dataclass
class Play:
    call_id: str
    channel: str
    ssrc: str
    mode: str
    from_tag: str
    to_tag: str | None = None
    answer: GbSdp | None = None
    packets: int = 0
    frames: list[bytes] = field(default_factory=list)
    reassembler: RtpPsReassembler | None = None
    transport: Any = None
    server: asyncio.Server | None = None
    writer: asyncio.StreamWriter | None = None
    got_frames: asyncio.Event = field(default_factory=asyncio.Event)

    def packet(self, data: bytes) -> None:
        try:
            pkt = parse_rtp(data)
        except MalformedPacket:
            return
        self.packets += 1
        assert self.reassembler is not None
        self.frames += self.reassembler.receive(pkt)

    def ps(self) -> bytes:
        return b"".join(self.frames)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, play: Play) -> None:
        self.play = play

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.play.packet(data)


@dataclass
class GbUpperSim:
    platform_id: str
    password: str  # what the lower must answer the challenge with
    lower_id: str
    charset: str = "GB2312"
    endpoint: SipEndpoint | None = None
    local: Address = ("127.0.0.1", 0)
    lower: Address | None = None  # where the lower registered from
    registers: int = 0
    refused: int = 0
    keepalives: int = 0
    # Answer keepalives 403 (an upper that restarted and forgot us): the lower must re-register.
    refuse_keepalives: bool = False
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    pages: int = 0
    page_charsets: set[str] = field(default_factory=set)  # what the catalogue pages' bytes were
    plays: dict[str, Play] = field(default_factory=dict)
    _assembler: CatalogAssembler = field(default_factory=lambda: CatalogAssembler(60.0))
    _catalogs: dict[int, asyncio.Future[CatalogResult]] = field(default_factory=dict)
    _waiters: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    _sn: int = 100

    def __post_init__(self) -> None:
        self.digest = DigestServer(self.platform_id[:10])

    async def start(self, port: int = 0) -> Address:
        self.endpoint = SipEndpoint(self._on_request)
        self.local = await self.endpoint.start_udp("127.0.0.1", port)
        return self.local

    async def close(self) -> None:
        for p in self.plays.values():
            for t in (p.transport, p.server, p.writer):
                if t is not None:
                    with contextlib.suppress(Exception):
                        t.close()
        if self.endpoint is not None:
            self.endpoint.close()

    # -- requests of the lower

    def _on_request(self, req: SipRequest, source: Address, txn: ServerTransaction | None) -> None:
        assert self.endpoint is not None
        if txn is None:
            return
        if req.method == "REGISTER":
            self._register(req, source, txn)
        elif req.method == "MESSAGE":
            self._message(req, source, txn)
        elif req.method == "BYE":
            self.endpoint.respond(txn, make_response(req, 200, to_tag=secrets.token_hex(4)))
        else:
            self.endpoint.respond(txn, make_response(req, 405, to_tag=secrets.token_hex(4)))

    def _register(self, req: SipRequest, source: Address, txn: ServerTransaction) -> None:
        assert self.endpoint is not None
        now = time.time()
        auth = req.headers.get("Authorization")
        resp = make_response(req, 401, to_tag=secrets.token_hex(4))
        if auth is None:
            resp.headers.add("WWW-Authenticate", self.digest.challenge(now))
        else:
            v = self.digest.verify(
                auth, "REGISTER", lambda u: self.password if u == self.lower_id else None, now
            )
            if v.ok:
                resp = make_response(req, 200, to_tag=secrets.token_hex(4))
                resp.headers.add("Expires", str(req.expires if req.expires is not None else 3600))
                if req.expires != 0:
                    self.registers += 1
                    self.refuse_keepalives = False  # registered again: known again
                    self.lower = source
                    self.registered.set()
            else:
                self.refused += 1
                resp = make_response(req, 403, to_tag=secrets.token_hex(4))
        self.endpoint.respond(txn, resp)

    def _message(self, req: SipRequest, source: Address, txn: ServerTransaction) -> None:
        assert self.endpoint is not None
        decoded = decode_manscdp(req.body)
        msg = decoded.message
        registered = self.lower == source or isinstance(msg, CatalogResponse)
        if isinstance(msg, Keepalive) and self.refuse_keepalives:
            registered = False
        status = 200 if registered else 403
        self.endpoint.respond(txn, make_response(req, status, to_tag=secrets.token_hex(4)))
        if isinstance(msg, Keepalive) and registered:
            self.keepalives += 1
        elif isinstance(msg, CatalogResponse):
            self.pages += 1
            self.page_charsets.add(decoded.charset)
            result = self._assembler.add(msg, time.monotonic())
            fut = self._catalogs.get(msg.sn)
            if result is not None and fut is not None and not fut.done():
                fut.set_result(result)
        else:
            fut2 = self._waiters.get(getattr(msg, "sn", -1))
            if fut2 is not None and not fut2.done():
                fut2.set_result(msg)

    # -- requests to the lower

    def _request(
        self,
        method: str,
        to_user: str,
        *,
        body: bytes = b"",
        ctype: str | None = None,
        call_id: str | None = None,
        from_tag: str | None = None,
        to_tag: str | None = None,
        cseq: int = 1,
    ) -> SipRequest:
        assert self.lower is not None, "the lower has not registered"
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {self.local[0]}:{self.local[1]};rport;branch={new_branch()}")
        domain = self.platform_id[:10]
        h.add("From", f"<sip:{self.platform_id}@{domain}>;tag={from_tag or secrets.token_hex(4)}")
        h.add("To", f"<sip:{to_user}@{self.lower_id[:10]}>" + (f";tag={to_tag}" if to_tag else ""))
        h.add("Call-ID", call_id or secrets.token_hex(8))
        h.add("CSeq", f"{cseq} {method}")
        h.add("Max-Forwards", "70")
        h.add("Contact", f"<sip:{self.platform_id}@{self.local[0]}:{self.local[1]}>")
        if ctype:
            h.add("Content-Type", ctype)
        uri = SipUri(host=self.lower[0], user=to_user, port=self.lower[1])
        return SipRequest(headers=h, body=body, method=method, uri=uri)

    async def _send(self, message: Any) -> SipResponse:
        assert self.endpoint is not None and self.lower is not None
        body = encode_manscdp(message, self.charset)
        req = self._request("MESSAGE", self.lower_id, body=body, ctype=CONTENT_TYPE)
        return await self.endpoint.request(req, self.lower)

    def next_sn(self) -> int:
        self._sn += 1
        return self._sn

    async def query_catalog(self) -> CatalogResult:
        sn = self.next_sn()
        fut: asyncio.Future[CatalogResult] = asyncio.get_running_loop().create_future()
        self._catalogs[sn] = fut
        self._assembler.expect(self.lower_id, sn, time.monotonic())
        resp = await self._send(CatalogQuery(self.lower_id, sn))
        assert resp.status == 200, resp.status
        while not fut.done():  # the assembler's idle timeout, checked as pages stop coming
            for res in self._assembler.expire(time.monotonic()):
                if res.sn == sn:
                    fut.set_result(res)
            await asyncio.wait([fut], timeout=0.5)
        return fut.result()

    async def query(self, message: Any, wait: float = 10.0) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[message.sn] = fut
        await self._send(message)
        return await asyncio.wait_for(fut, wait)

    async def invite(
        self, channel: str, mode: str = "udp", ssrc: str | None = "0100000001"
    ) -> tuple[SipResponse, Play]:
        """INVITE ``channel``; the final response and the play (media flowing after 2xx)."""
        assert self.endpoint is not None and self.lower is not None
        loop = asyncio.get_running_loop()
        play = Play(secrets.token_hex(8), channel, ssrc or "", mode, secrets.token_hex(4))
        play.reassembler = RtpPsReassembler(int(ssrc) if ssrc else None)
        port = 9
        if mode == "udp":
            play.transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(play), local_addr=("127.0.0.1", 0)
            )
            port = play.transport.get_extra_info("sockname")[1]
        elif mode == "tcp_passive":

            async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                await self._read_tcp(play, r)

            play.server = await asyncio.start_server(accept, "127.0.0.1", 0)
            port = play.server.sockets[0].getsockname()[1]
        offer = GbSdp(
            session_name="Play",
            origin_user=self.platform_id,
            origin_address=self.local[0],
            connection_address=self.local[0],
            port=port,
            payload_types=[96, 98, 97],
            rtpmap={96: "PS/90000", 98: "H264/90000", 97: "MPEG4/90000"},
            direction="recvonly",
            ssrc=ssrc,
            tcp=mode != "udp",
            setup={"tcp_passive": "passive", "tcp_active": "active"}.get(mode),
            connection_new=mode != "udp",
        )
        req = self._request(
            "INVITE",
            channel,
            body=offer.encode().encode(),
            ctype="APPLICATION/SDP",
            call_id=play.call_id,
            from_tag=play.from_tag,
        )
        req.headers.add("Subject", f"{channel}:{ssrc or 0},{self.platform_id}:0")
        resp = await self.endpoint.request(req, self.lower)
        if resp.status >= 300:
            return resp, play
        play.to_tag = resp.to.tag
        play.answer = parse_sdp(resp.body)
        if ssrc is None and play.answer.ssrc:
            play.reassembler = RtpPsReassembler(int(play.answer.ssrc))
            play.ssrc = play.answer.ssrc
        self.plays[play.call_id] = play
        ack = self._request(
            "ACK",
            channel,
            call_id=play.call_id,
            from_tag=play.from_tag,
            to_tag=play.to_tag,
        )
        self.endpoint.send_stateless(ack, self.lower)
        if mode == "tcp_active":
            r, play.writer = await asyncio.open_connection(
                play.answer.connection_address, play.answer.port
            )
            asyncio.get_running_loop().create_task(self._read_tcp(play, r))
        return resp, play

    async def _read_tcp(self, play: Play, reader: asyncio.StreamReader) -> None:
        deframer = Rfc4571Deframer()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                for p in deframer.feed(data):
                    play.packet(p)

    async def bye(self, play: Play) -> int:
        assert self.endpoint is not None and self.lower is not None
        bye = self._request(
            "BYE",
            play.channel,
            call_id=play.call_id,
            from_tag=play.from_tag,
            to_tag=play.to_tag,
            cseq=2,
        )
        resp = await self.endpoint.request(bye, self.lower)
        for t in (play.transport, play.server, play.writer):
            if t is not None:
                with contextlib.suppress(Exception):
                    t.close()
        return resp.status

    async def wait_frames(self, play: Play, n: int, limit: float = 30.0) -> None:
        """Until ``n`` PS frames arrived (a readiness bound, not a performance assertion)."""
        end = asyncio.get_running_loop().time() + limit
        while len(play.frames) < n:
            if asyncio.get_running_loop().time() > end:
                raise AssertionError(f"{len(play.frames)} PS frames of {n} after {limit} s")
            await asyncio.sleep(0.1)
