"""Live play of one GB/T 28181 channel: the INVITE dialog and the media it brings in.

A :class:`GbSpec` is what a GB channel's directory ``attrs`` say (``{"source": "gb28181",
"gb_device": DEVICE, "gb_channel": CHANNEL}``); the media service asks the node's
:class:`~vmesh.gb28181.service.GbService` for a :class:`GbLiveSource` for it and drives it like
an ingest source (``start``, ``stop``, ``status``).

``start`` binds a UDP port of ``[gb28181] media_port_range``, allocates an SSRC (``y=``) from the
service's :class:`~vmesh.gb28181.sdp.SsrcAllocator`, sends ``INVITE`` (``s=Play``, recvonly,
``PS/90000``) to the device and ACKs its 200. PS over RTP arriving on the port goes through
:class:`~vmesh.gb28181.ps.RtpPsReceiver` (reassembly, demux) and :class:`RtpPacketizer` (H.264
RFC 6184) and is sent as plain RTP to the switch input's loopback port. ``stop`` sends ``BYE``
and releases the SSRC and the port; so does a failed INVITE, a BYE from the device, and the
device going offline (``GbService`` calls :meth:`GbLiveSource.end`). The SSRC is released exactly
once whatever happens.

Media comes over UDP, or over TCP (RFC 4571 framing, ``TCP/RTP/AVP``) in either direction:
``tcp_passive`` listens on a port of the range (``a=setup:passive``) and the device connects;
``tcp_active`` (``a=setup:active``) connects, after the ACK, to the address and port of the
device's answer. The mode is the channel's ``attrs.gb_media`` or ``[gb28181] media_transport``.
A TCP stream that closes or cannot be opened ends the session (error, SSRC released).

Status follows ``vmesh.ingest.status``: ``connecting`` until the first access unit, ``sending``,
``no_signal`` after ``stall_seconds`` without one, ``error`` when the INVITE failed (with the
device's status line as the reason) or the device hung up.

Public: ``GbSpec``, ``GbLiveSource``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmesh.gb28181.message import SipRequest, ascii_digits
from vmesh.gb28181.ps import PsCodec, Rfc4571Deframer, RtpPacketizer, RtpPsReceiver
from vmesh.gb28181.sdp import GbSdp, parse_sdp
from vmesh.ingest.status import Failure, FailureKind, IngestState, IngestStatus
from vmesh.switch.rtp import MalformedPacket, parse_rtp

if TYPE_CHECKING:
    from vmesh.gb28181.service import Device, GbService
    from vmesh.ingest.ffmpeg import RtpTarget

log = logging.getLogger(__name__)

MEDIA_MODES = ("udp", "tcp_passive", "tcp_active")


@dataclass(frozen=True)
class GbSpec:
    """A GB channel as a media source: the registered device and the channel to INVITE."""

    device: str
    channel: str
    media: str = ""  # udp / tcp_passive / tcp_active; empty: [gb28181] media_transport

    @classmethod
    def from_attrs(cls, code: str, attrs: dict[str, Any]) -> GbSpec:
        from vmesh.errors import InvalidInput

        device = attrs.get("gb_device")
        channel = attrs.get("gb_channel") or code
        if not isinstance(device, str) or len(device) != 20 or not ascii_digits(device):
            raise InvalidInput.one("attrs.gb_device", "must be the 20-digit code of the device")
        if not isinstance(channel, str) or len(channel) != 20 or not ascii_digits(channel):
            raise InvalidInput.one("attrs.gb_channel", "must be a 20-digit channel code")
        media = attrs.get("gb_media") or ""
        if media not in ("", *MEDIA_MODES):
            raise InvalidInput.one("attrs.gb_media", f"must be one of {', '.join(MEDIA_MODES)}")
        return cls(device, channel, media)


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self, source: GbLiveSource) -> None:
        self.source = source

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.source._datagram(data)


class _TcpRtp(asyncio.Protocol):
    """One TCP media connection: RFC 4571 frames → the source's packet path."""

    def __init__(self, source: GbLiveSource) -> None:
        self.source = source
        self.deframer = Rfc4571Deframer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.source._tcp is not None or self.source._ended:
            transport.close()  # one stream per session
            return
        self.transport = transport
        self.source._tcp = transport
        log.info("gb tcp media connected channel=%s", self.source.spec.channel)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        for packet in self.deframer.feed(data):
            self.source._datagram(packet)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None and not self.source._ended:
            self.source.end(
                IngestState.ERROR, Failure(FailureKind.NO_SIGNAL, "the TCP media stream closed")
            )


class GbLiveSource:
    """One live INVITE session feeding one switch input (see the module docstring)."""

    # Playback sessions (vmesh.gb28181.playback) take SSRCs of the playback range and their own SDP.
    PLAYBACK = False

    def __init__(
        self,
        service: GbService,
        code: str,
        spec: GbSpec,
        target: RtpTarget,
        *,
        on_status: Callable[[IngestStatus], None] | None = None,
        stall_seconds: float = 3.0,
    ) -> None:
        self.service = service
        self.code = code
        self.spec = spec
        self.target = target
        self.on_status = on_status
        self.stall_seconds = stall_seconds
        self.ssrc: str | None = None
        self.port: int | None = None
        self.call_id = secrets.token_hex(10)
        self.from_tag = secrets.token_hex(4)
        self.to_tag: str | None = None
        self.cseq = 1
        self.answer: GbSdp | None = None
        self.packets = 0
        self.access_units = 0
        self.bye_sent = False
        self.mode = "udp"
        self._rtp: asyncio.DatagramTransport | asyncio.Server | None = None
        self._tcp: asyncio.Transport | None = None
        self._connect: asyncio.Task[None] | None = None
        self._receiver: RtpPsReceiver | None = None
        self._packetizer = RtpPacketizer(ssrc=target.video_ssrc, payload_type=96)
        self._status = IngestStatus(code, IngestState.STARTING)
        self._last_au: float | None = None
        self._watch: asyncio.Task[None] | None = None
        self._invite: asyncio.Task[None] | None = None
        self._ended = False
        self._codec_warned = False

    # -- ingest-source interface

    @property
    def status(self) -> IngestStatus:
        return self._status

    async def start(self) -> None:
        """Bind the media port and send the INVITE in the background (the tile shows connecting)."""
        svc = self.service
        loop = asyncio.get_running_loop()
        self.mode = self.spec.media or svc.config.media_transport
        if self.mode == "udp":
            self.port, self._rtp = await svc.bind_media_port(lambda: _Rtp(self))
        elif self.mode == "tcp_passive":
            self.port, self._rtp = await svc.bind_media_port(lambda: _TcpRtp(self), tcp=True)
        else:
            self.port = 9  # active: we connect; the offer's port is the discard port (RFC 4145)
        self.ssrc = svc.ssrcs.allocate(loop.time(), playback=self.PLAYBACK)
        self._receiver = RtpPsReceiver(int(self.ssrc))
        self._set(IngestState.CONNECTING)
        self._invite = asyncio.create_task(self._run_invite(), name=f"gb-invite-{self.code}")
        self._watch = asyncio.create_task(self._stall_watch(), name=f"gb-stall-{self.code}")
        svc.sessions[self.call_id] = self

    async def stop(self) -> None:
        """BYE (if the dialog was established) and release everything."""
        if self._invite is not None and not self._invite.done():
            self._invite.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._invite
        if self.to_tag is not None and not self._ended:
            with contextlib.suppress(Exception):
                await self._bye()
        self.end(IngestState.STOPPED)

    # -- dialog

    async def _run_invite(self) -> None:
        svc = self.service
        dev = svc.devices.get(self.spec.device)
        try:
            if dev is None or not dev.online:
                raise Failure(FailureKind.UNREACHABLE, f"device {self.spec.device} is offline")
            offer = self._offer()
            req = svc.make_request(
                "INVITE",
                dev,
                to_user=self.spec.channel,
                call_id=self.call_id,
                from_tag=self.from_tag,
                cseq=self.cseq,
                body=offer.encode().encode(),
                content_type="APPLICATION/SDP",
                subject=f"{self.spec.channel}:{self.ssrc},{svc.server_id}:0",
            )
            async with asyncio.timeout(svc.config.invite_timeout_seconds):
                resp = await svc.endpoint_request(req, dev.addr)
            if resp.status >= 300:
                kind = FailureKind.NOT_FOUND if resp.status == 404 else FailureKind.UNREACHABLE
                raise Failure(kind, f"device answered {resp.status} {resp.reason}")
            self.to_tag = resp.to.tag
            self.answer = parse_sdp(resp.body) if resp.body else None
            if self.answer is not None and self.answer.ssrc and self.answer.ssrc != self.ssrc:
                # The device insists on its own SSRC: filter on that one instead.
                self._receiver = RtpPsReceiver(int(self.answer.ssrc))
            svc.send_stateless(self._in_dialog("ACK", dev), dev.addr)
            log.info(
                "gb invite ok channel=%s device=%s ssrc=%s port=%s media=%s",
                self.spec.channel,
                self.spec.device,
                self.ssrc,
                self.port,
                self.mode,
            )
            if self.mode == "tcp_active":
                await self._connect_active()
        except asyncio.CancelledError:
            raise
        except Failure as f:
            log.info("gb invite failed channel=%s: %s", self.spec.channel, f)
            self.end(IngestState.ERROR, f)
        except TimeoutError:
            log.info("gb invite timed out channel=%s", self.spec.channel)
            self.end(IngestState.ERROR, Failure(FailureKind.UNREACHABLE, "INVITE timed out"))
        except Exception as e:
            log.warning("gb invite error channel=%s: %s", self.spec.channel, e)
            self.end(IngestState.ERROR, Failure(FailureKind.BAD_STREAM, str(e)))

    def _offer(self) -> GbSdp:
        """The SDP offer of the INVITE (``s=Play``; playback overrides it)."""
        svc = self.service
        assert self.ssrc is not None and self.port is not None
        return GbSdp(
            session_name="Play",
            origin_user=svc.server_id,
            origin_address=svc.address,
            connection_address=svc.address,
            port=self.port,
            payload_types=[96, 98, 97],
            rtpmap={96: "PS/90000", 98: "H264/90000", 97: "MPEG4/90000"},
            direction="recvonly",
            ssrc=self.ssrc,
            tcp=self.mode != "udp",
            setup={"tcp_passive": "passive", "tcp_active": "active"}.get(self.mode),
            connection_new=self.mode != "udp",
        )

    async def _connect_active(self) -> None:
        """tcp_active: open the media connection to the address and port of the answer."""
        a = self.answer
        if a is None or not a.port or a.connection_address in ("", "0.0.0.0"):
            raise Failure(FailureKind.BAD_STREAM, "the answer names no TCP address and port")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.service.config.invite_timeout_seconds):
                await loop.create_connection(lambda: _TcpRtp(self), a.connection_address, a.port)
        except (OSError, TimeoutError) as e:
            raise Failure(
                FailureKind.UNREACHABLE,
                f"TCP media connection to {a.connection_address}:{a.port} failed: {e}",
            ) from None

    def _in_dialog(
        self, method: str, dev: Device, body: bytes = b"", content_type: str | None = None
    ) -> SipRequest:
        """A request of the established dialog (ACK, BYE, a playback's INFO) with the current
        CSeq."""
        return self.service.make_request(
            method,
            dev,
            to_user=self.spec.channel,
            call_id=self.call_id,
            from_tag=self.from_tag,
            to_tag=self.to_tag,
            cseq=self.cseq,
            body=body,
            content_type=content_type,
        )

    async def _bye(self) -> None:
        svc = self.service
        dev = svc.devices.get(self.spec.device)
        if dev is None:
            return
        self.cseq += 1
        bye = self._in_dialog("BYE", dev)
        self.bye_sent = True
        log.info("gb bye channel=%s ssrc=%s", self.spec.channel, self.ssrc)
        async with asyncio.timeout(5.0):
            await svc.endpoint_request(bye, dev.addr)

    def on_bye(self, req: SipRequest) -> None:
        """The device hung up."""
        log.info("gb device hung up channel=%s", self.spec.channel)
        self.end(IngestState.ERROR, Failure(FailureKind.NO_SIGNAL, "the device ended the stream"))

    def end(self, state: IngestState, failure: Failure | None = None) -> None:
        """Release the SSRC, the port and the dialog (idempotent)."""
        if self._ended:
            return
        self._ended = True
        svc = self.service
        svc.sessions.pop(self.call_id, None)
        if self.ssrc is not None:
            svc.ssrcs.release(self.ssrc, asyncio.get_running_loop().time())
        if self._rtp is not None and self.port is not None:
            svc.release_media_port(self.port, self._rtp)
            self._rtp = None
        if self._tcp is not None:
            self._tcp.close()
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        self._set(state, failure)

    # -- media

    def _datagram(self, data: bytes) -> None:
        if self._receiver is None or self._ended:
            return
        try:
            pkt = parse_rtp(data)
        except MalformedPacket:
            return
        self.packets += 1
        try:
            aus = self._receiver.receive(pkt)
        except Exception:  # a demuxer bug must not kill the loop's protocol
            log.exception("gb demux failed channel=%s", self.spec.channel)
            return
        for au in aus:
            if au.codec is not PsCodec.h264:
                if au.codec is PsCodec.h265 and not self._codec_warned:
                    self._codec_warned = True
                    self._set(
                        IngestState.ERROR,
                        Failure(FailureKind.UNSUPPORTED_CODEC, "video codec h265"),
                        video_codec="h265",
                    )
                continue  # G.711 is not carried (browser channels carry Opus)
            self.access_units += 1
            self._last_au = time.time()
            if self._status.state is not IngestState.SENDING:
                self._set(IngestState.SENDING, video_codec="h264")
            for out in self._packetizer.packetize(au):
                self.service.send_media(out.serialize(), (self.target.host, self.target.video_port))

    async def _stall_watch(self) -> None:
        while True:
            await asyncio.sleep(max(0.2, self.stall_seconds / 4))
            if (
                self._status.state is IngestState.SENDING
                and self._last_au is not None
                and time.time() - self._last_au > self.stall_seconds
            ):
                self._set(IngestState.NO_SIGNAL, Failure(FailureKind.NO_SIGNAL, "no video"))

    def _set(
        self, state: IngestState, failure: Failure | None = None, video_codec: str | None = None
    ) -> None:
        self._status = IngestStatus(
            self.code,
            state,
            failure,
            attempts=1,
            last_packet_at=self._last_au,
            video_codec=video_codec or self._status.video_codec,
        )
        if self.on_status is not None:
            try:
                self.on_status(self._status)
            except Exception:
                log.exception("gb status callback failed")
