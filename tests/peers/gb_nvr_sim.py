"""A simulated GB/T 28181 NVR with recordings, for tests: RecordInfo, playback, INFO, MediaStatus.

``GbNvrSim`` is a ``GbDeviceSim`` (digest REGISTER, keepalive, paged Catalog, live INVITE) that
also keeps recordings per channel (``recordings``: ``(start, end)`` Unix seconds) and:

- answers ``Query CmdType=RecordInfo`` with the segments overlapping the asked range, paged
  ``record_page_size`` items per MESSAGE (``SumNum`` the total), device-local times;
- serves ``s=Playback`` INVITEs (``u=<channel>:0``, ``t=<start> <end>``) with real PS over RTP:
  the picture is a plain colour that depends on the recorded time (``colour_at``: it changes every
  ``colour_seconds``), from ffmpeg-encoded H.264 clips (one per colour, restarted at their IDR
  whenever the colour changes or a seek lands), 25 fps, advancing ``scale`` × 40 ms per frame;
- honours in-dialog ``INFO`` with MANSRTSP bodies: ``PAUSE`` (no packet until resumed),
  ``PLAY`` with ``Range: npt=<s>-`` (seek) or ``npt=now-`` (resume), ``Scale`` (speed; answered
  ``457`` when ``refuse_scale``, as NVRs that cannot do it), each answered with an
  ``RTSP/1.0 200 OK`` body;
- at the end of the range sends ``MESSAGE`` ``Notify CmdType=MediaStatus NotifyType=121`` in the
  dialog's Call-ID, and streams no more.

What it saw is kept: ``record_queries``, ``infos`` (parsed MANSRTSP requests), ``playbacks``
(per Call-ID: range, position, colour being sent, packets), ``media_status_sent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from peers.gb_device_sim import GbDeviceSim, Stream, h264_clip
from vmesh.gb28181 import mansrtsp
from vmesh.gb28181.manscdp import (
    CONTENT_TYPE,
    RecordInfoQuery,
    RecordInfoResponse,
    RecordItem,
    UnknownMessage,
    encode_manscdp,
)
from vmesh.gb28181.message import SipRequest, make_response
from vmesh.gb28181.ps import AccessUnit, PsCodec, PsMuxer, RtpPsPacketizer, split_annexb
from vmesh.gb28181.records import parse_wire_time, wire_time
from vmesh.gb28181.sdp import parse_sdp
from vmesh.gb28181.transaction import Address, ServerTransaction

# name → (R, G, B) as ffmpeg draws it; far apart so a decoded frame's mean tells them apart.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
}


def colour_clips(folder: Path, size: str = "160x120") -> dict[str, list[bytes]]:
    """One second (25 frames, one GOP) of each colour of ``COLOURS`` as H.264 access units."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        name: h264_clip(
            folder / f"{name}.h264", frames=25, gop=25, lavfi=f"color=c={name}:size={size}:rate=25"
        )
        for name in COLOURS
    }


@dataclass
class Playback:
    channel: str
    start: int
    stop: int
    position: float = 0.0  # seconds after start
    paused: bool = False
    scale: float = 1.0
    restart: bool = True  # next frame from a clip's IDR
    colour: str | None = None
    colours_sent: list[str] = field(default_factory=list)
    packets: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    platform: Address | None = None
    dialog: tuple[str, str, str] = ("", "", "")  # Call-ID, platform's tag, our tag


@dataclass
class GbNvrSim(GbDeviceSim):
    recordings: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    colour_clip: dict[str, list[bytes]] = field(default_factory=dict)
    colour_seconds: float = 60.0
    record_page_size: int = 2
    refuse_scale: bool = False
    lose_record_page: int | None = None  # the index of a RecordInfo page never sent (lost)
    record_queries: list[RecordInfoQuery] = field(default_factory=list)
    infos: list[mansrtsp.MansrtspRequest] = field(default_factory=list)
    playbacks: dict[str, Playback] = field(default_factory=dict)
    media_status_sent: list[str] = field(default_factory=list)

    def colour_at(self, t: float) -> str:
        """The colour of the recording at Unix time ``t``."""
        names = list(COLOURS)
        return names[int(t // self.colour_seconds) % len(names)]

    # -- requests from the platform

    def _on_request(self, req: SipRequest, source: Address, txn: ServerTransaction | None) -> None:
        assert self.endpoint is not None
        if txn is not None and req.method == "INFO":
            self._info(req, txn)
            return
        if txn is not None and req.method == "INVITE":
            offer = parse_sdp(req.body)
            if offer.session_name == "Playback":
                channel = (offer.uri or "").split(":", 1)[0] or (req.to.uri.user or "")
                self.playbacks[req.call_id] = Playback(
                    channel,
                    offer.start,
                    offer.stop,
                    platform=source,
                    dialog=(req.call_id, req.from_.tag or "", ""),
                )
        if txn is not None and req.method == "BYE":
            pb = self.playbacks.get(req.call_id)
            if pb is not None:
                pb.wake.set()
        super()._on_request(req, source, txn)

    def _info(self, req: SipRequest, txn: ServerTransaction) -> None:
        assert self.endpoint is not None
        pb = self.playbacks.get(req.call_id)
        tag = req.to.tag or secrets.token_hex(4)
        try:
            rq = mansrtsp.parse(req.body)
        except mansrtsp.MansrtspError:
            self.endpoint.respond(txn, make_response(req, 400, to_tag=tag))
            return
        if pb is None:
            self.endpoint.respond(txn, make_response(req, 481, to_tag=tag))
            return
        self.infos.append(rq)
        if rq.scale is not None and self.refuse_scale:
            self.endpoint.respond(txn, make_response(req, 457, "Invalid Range", to_tag=tag))
            return
        if rq.method == "PAUSE":
            pb.paused = True
        else:
            if rq.scale is not None:
                pb.scale = rq.scale
            if rq.npt is not None:
                pb.position, pb.restart = rq.npt, True
            if pb.paused:
                pb.paused, pb.restart = False, True
                pb.wake.set()
        resp = make_response(req, 200, to_tag=tag)
        resp.headers.add("Content-Type", mansrtsp.CONTENT_TYPE)
        resp.body = f"RTSP/1.0 200 OK\r\nCSeq: {rq.cseq}\r\nRTP-Info: seq=0;rtptime=0\r\n".encode()
        self.endpoint.respond(txn, resp)

    async def _answer(self, msg: object) -> None:
        if isinstance(msg, RecordInfoQuery):
            self.record_queries.append(msg)
            a = parse_wire_time(msg.start_time) or 0.0
            b = parse_wire_time(msg.end_time) or 0.0
            items = [
                RecordItem(
                    msg.device_id,
                    name=f"录像{i}",
                    file_path=f"/rec/{msg.device_id}/{int(s)}.ps",
                    address="模拟录像机",
                    start_time=wire_time(s),
                    end_time=wire_time(e),
                    secrecy=0,
                    type="time",
                    recorder_id=self.device_id,
                    file_size=int((e - s) * 50_000),
                )
                for i, (s, e) in enumerate(self.recordings.get(msg.device_id, []))
                if e > a and s < b
            ]
            size = self.record_page_size
            pages = [items[i : i + size] for i in range(0, len(items), size)] or [[]]
            for i, page in enumerate(pages):
                if i == self.lose_record_page:
                    continue
                await self._send(
                    RecordInfoResponse(msg.device_id, msg.sn, len(items), self.name, page)
                )
            return
        await super()._answer(msg)

    # -- media

    async def _stream(self, s: Stream) -> None:
        pb = self.playbacks.get(s.call_id)
        if pb is None:
            await super()._stream(s)
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=s.dest
        )
        mux = PsMuxer(PsCodec.h264, PsCodec.pcma)
        rtp = RtpPsPacketizer(ssrc=s.ssrc)
        pts, frame = 0, 0
        try:
            while s.call_id in self.streams:
                if pb.paused:
                    pb.wake.clear()
                    await pb.wake.wait()
                    continue
                at = pb.start + pb.position
                if at >= pb.stop:
                    await self._media_status(pb)
                    return
                colour = self.colour_at(at)
                if colour != pb.colour or pb.restart:
                    frame, pb.restart, pb.colour = 0, False, colour
                    pb.colours_sent.append(colour)
                clip = self.colour_clip[colour]
                data = clip[frame % len(clip)]
                frame += 1
                key = any(n[0] & 0x1F == 5 for n in split_annexb(data))
                for p in rtp.packetize(
                    mux.mux(AccessUnit(PsCodec.h264, 0xE0, pts, data, key)), pts
                ):
                    transport.sendto(p.serialize())
                    s.packets += 1
                    pb.packets += 1
                pts += 3600
                pb.position += 0.04 * pb.scale
                await asyncio.sleep(0.04)
        finally:
            with contextlib.suppress(Exception):
                transport.close()

    async def _media_status(self, pb: Playback) -> None:
        """End of the recording: MESSAGE MediaStatus 121 in the dialog's Call-ID."""
        assert self.endpoint is not None
        self._sn += 1
        body = encode_manscdp(
            UnknownMessage("Notify", "MediaStatus", pb.channel, self._sn, {"NotifyType": "121"})
        )
        req = self._request("MESSAGE", body, CONTENT_TYPE)
        req.headers.set("Call-ID", pb.dialog[0])
        self.media_status_sent.append(pb.dialog[0])
        with contextlib.suppress(TimeoutError):
            await self.endpoint.request(req, self.platform)
