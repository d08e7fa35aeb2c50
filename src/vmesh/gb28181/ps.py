"""MPEG-PS over RTP as GB/T 28181 devices send it: demux to access units, and ES → RTP. Pure.

Receive path: :class:`RtpPsReassembler` groups RTP packets (PT 96, one frame per RTP timestamp,
marker on the last packet) into frames, and drops a frame with a sequence gap instead of passing
damaged bytes on — one lost packet costs one frame. :class:`PsDemuxer` parses the PS bytes:

- pack header ``00 00 01 BA`` (MPEG-2 with stuffing, or MPEG-1 as ffmpeg's ``-f mpeg`` writes);
- system header ``BB`` (skipped), padding ``BE``, private stream 2 ``BF`` (skipped);
- program stream map ``BC``: stream types 0x1B H.264, 0x24 H.265, 0x90 G.711 A-law, 0x91 G.711
  µ-law (CRC not checked: cameras send bad ones);
- PES ``E0``–``EF`` video and ``C0``–``DF`` audio, MPEG-2 or MPEG-1 headers, with PTS.

Access units are the ES bytes of one PTS (video PES split at 64 KiB are joined), emitted when the
next PTS of that stream starts or on :meth:`PsDemuxer.flush` (the reassembler flushes at each frame
end, so nothing waits for the next frame). Without a PSM, video is sniffed (H.264 unless the first
NAL header is a valid H.265 parameter set) and audio is not guessed. Bytes that are not a start
code are skipped to the next pack header and counted in ``stats.resyncs``.

Send path: :class:`RtpPacketizer` turns access units into RTP packets: H.264 per RFC 6184
(single NAL unit, FU-A), H.265 per RFC 7798 (single NAL unit, FU), G.711 as PT 8 (A-law) or 0
(µ-law) with an 8 kHz clock.

Also :class:`PsMuxer` (access units → GB-style PS: pack header per frame, system header and PSM
before key frames, PES with PTS split under 64 KiB) and :class:`RtpPsPacketizer` (PS frames → RTP
PT 96, marker on each frame's last packet), for cascade and for the project's device simulator.

TCP media (GB/T 28181 ``TCP/RTP/AVP``, RFC 4571): :func:`frame_rfc4571` prefixes a packet with
its 16-bit length; :class:`Rfc4571Deframer` cuts a byte stream back into packets (a zero length
is skipped; nothing else can be malformed: every 16-bit length is a valid frame).

Public: ``AccessUnit``, ``PsCodec``, ``PsDemuxer``, ``DemuxStats``, ``RtpPsReassembler``,
``RtpPsReceiver``, ``RtpPacketizer``, ``packetize_h264``, ``packetize_h265``, ``PsMuxer``,
``RtpPsPacketizer``, ``split_annexb``, ``STREAM_TYPES``, ``frame_rfc4571``, ``Rfc4571Deframer``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

from vmesh.switch.rtp import RtpPacket, seq_distance

log = logging.getLogger(__name__)


class PsCodec(StrEnum):
    h264 = "H264"
    h265 = "H265"
    pcma = "PCMA"
    pcmu = "PCMU"


STREAM_TYPES: dict[int, PsCodec] = {
    0x1B: PsCodec.h264,
    0x24: PsCodec.h265,
    0x90: PsCodec.pcma,
    0x91: PsCodec.pcmu,
}

VIDEO_CODECS = frozenset({PsCodec.h264, PsCodec.h265})


@dataclass(slots=True)
class AccessUnit:
    """One frame of one elementary stream. ``pts`` is in 90 kHz units (None if absent)."""

    codec: PsCodec
    stream_id: int
    pts: int | None
    data: bytes  # video: Annex-B NAL units; audio: raw G.711 samples
    is_keyframe: bool = False


@dataclass(slots=True)
class DemuxStats:
    packs: int = 0
    pes: int = 0
    access_units: int = 0
    resyncs: int = 0
    truncated: int = 0
    unknown_streams: int = 0


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B byte stream (start codes removed, empty units dropped)."""
    out: list[bytes] = []
    n = len(data)
    i = data.find(b"\x00\x00\x01")
    if i < 0:
        return [data] if data else []
    start = i + 3
    while True:
        j = data.find(b"\x00\x00\x01", start)
        if j < 0:
            nal = data[start:n]
            if nal:
                out.append(nal.rstrip(b"\x00") if nal.endswith(b"\x00\x00") else nal)
            return [u for u in out if u]
        end = j - 1 if j > start and data[j - 1] == 0 else j
        if end > start:
            out.append(data[start:end])
        start = j + 3


def _is_keyframe(codec: PsCodec, data: bytes) -> bool:
    for nal in split_annexb(data):
        if codec is PsCodec.h264 and nal[0] & 0x1F == 5:
            return True
        if codec is PsCodec.h265 and 16 <= (nal[0] >> 1) & 0x3F <= 21:
            return True
    return False


def _sniff_video(data: bytes) -> PsCodec:
    units = split_annexb(data[:64])
    if units and len(units[0]) >= 2:
        b0, b1 = units[0][0], units[0][1]
        if b0 & 0x81 == 0 and (b0 >> 1) & 0x3F in (32, 33, 34, 35, 39) and b1 & 0x07 == 1:
            return PsCodec.h265
    return PsCodec.h264


def _read_pts(b: bytes, i: int) -> int:
    return (
        ((b[i] >> 1) & 0x07) << 30
        | b[i + 1] << 22
        | (b[i + 2] >> 1) << 15
        | b[i + 3] << 7
        | b[i + 4] >> 1
    )


class PsDemuxer:
    """Incremental PS parser: feed bytes in any chunks, get access units."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.stream_types: dict[int, PsCodec] = {}
        self._pending: dict[int, tuple[PsCodec, int | None, list[bytes]]] = {}
        self.stats = DemuxStats()

    def feed(self, data: bytes) -> list[AccessUnit]:
        self._buf += data
        out: list[AccessUnit] = []
        pos = self._parse(out)
        del self._buf[:pos]
        return out

    def flush(self) -> list[AccessUnit]:
        """End of a frame (or of the stream): drop a partial packet, emit pending units."""
        if self._buf:
            self.stats.truncated += 1
            self._buf.clear()
        out: list[AccessUnit] = []
        for sid in list(self._pending):
            self._emit(sid, out)
        return out

    def reset(self) -> None:
        """Forget partial data (after loss); the stream map is kept."""
        self._buf.clear()
        self._pending.clear()

    def _resync(self, b: bytearray, pos: int) -> int:
        self.stats.resyncs += 1
        j = b.find(b"\x00\x00\x01\xba", pos + 1)
        return len(b) - 3 if j < 0 else j

    def _parse(self, out: list[AccessUnit]) -> int:
        b = self._buf
        n = len(b)
        pos = 0
        while n - pos >= 4:
            if b[pos] != 0 or b[pos + 1] != 0 or b[pos + 2] != 1:
                pos = self._resync(b, pos)
                continue
            sid = b[pos + 3]
            if sid == 0xBA:
                if n - pos < 12:
                    break
                if b[pos + 4] >> 6 == 1:  # MPEG-2: 14 bytes + stuffing
                    if n - pos < 14:
                        break
                    size = 14 + (b[pos + 13] & 0x07)
                elif b[pos + 4] >> 4 == 2:  # MPEG-1
                    size = 12
                else:
                    pos = self._resync(b, pos)
                    continue
                if n - pos < size:
                    break
                self.stats.packs += 1
                pos += size
                continue
            if sid == 0xB9:  # program end code
                pos += 4
                continue
            if sid < 0xBB:
                pos = self._resync(b, pos)
                continue
            if n - pos < 6:
                break
            length = (b[pos + 4] << 8) | b[pos + 5]
            end = pos + 6 + length
            if end > n:
                break
            if sid == 0xBC:
                self._psm(bytes(b[pos + 6 : end]))
            elif 0xC0 <= sid <= 0xEF:
                self._pes(sid, bytes(b[pos + 6 : end]), out)
            pos = end
        return pos

    def _psm(self, body: bytes) -> None:
        if len(body) < 6:
            return
        info_len = (body[2] << 8) | body[3]
        i = 4 + info_len
        if i + 2 > len(body):
            return
        map_len = (body[i] << 8) | body[i + 1]
        i += 2
        end = min(i + map_len, len(body))
        while i + 4 <= end:
            stype, esid = body[i], body[i + 1]
            es_info = (body[i + 2] << 8) | body[i + 3]
            codec = STREAM_TYPES.get(stype)
            if codec is not None:
                self.stream_types[esid] = codec
            else:
                log.debug("ps unknown stream type 0x%02x for stream 0x%02x", stype, esid)
            i += 4 + es_info

    def _pes(self, sid: int, body: bytes, out: list[AccessUnit]) -> None:
        self.stats.pes += 1
        pts: int | None = None
        if len(body) >= 3 and body[0] >> 6 == 2:  # MPEG-2 PES header
            flags = body[1] >> 6
            hlen = body[2]
            start = 3 + hlen
            if flags & 0x2 and len(body) >= 8:
                pts = _read_pts(body, 3)
        else:  # MPEG-1 PES header
            i = 0
            while i < len(body) and body[i] == 0xFF and i < 16:
                i += 1
            if i + 1 < len(body) and body[i] >> 6 == 1:
                i += 2
            if i < len(body) and body[i] >> 4 in (2, 3):
                if i + 5 <= len(body):
                    pts = _read_pts(body, i)
                i += 5 if body[i] >> 4 == 2 else 10
            elif i < len(body) and body[i] == 0x0F:
                i += 1
            start = i
        if start > len(body):
            self.stats.truncated += 1
            return
        payload = body[start:]
        codec = self.stream_types.get(sid)
        if codec is None:
            if 0xE0 <= sid <= 0xEF:
                codec = _sniff_video(payload)
                self.stream_types[sid] = codec
            else:
                self.stats.unknown_streams += 1
                return
        pending = self._pending.get(sid)
        if pending is not None and pts is not None and pts != pending[1]:
            self._emit(sid, out)
            pending = None
        if pending is None:
            self._pending[sid] = (codec, pts, [payload])
        else:
            pending[2].append(payload)

    def _emit(self, sid: int, out: list[AccessUnit]) -> None:
        codec, pts, parts = self._pending.pop(sid)
        data = b"".join(parts)
        if not data:
            return
        key = codec in VIDEO_CODECS and _is_keyframe(codec, data)
        self.stats.access_units += 1
        out.append(AccessUnit(codec, sid, pts, data, key or codec not in VIDEO_CODECS))


# ---------------------------------------------------------------------------- RTP framing


@dataclass(slots=True)
class ReassemblyStats:
    frames: int = 0
    dropped_frames: int = 0
    lost_packets: int = 0
    wrong_ssrc: int = 0
    late_packets: int = 0


class RtpPsReassembler:
    """RTP packets in arrival order → complete PS frames (by timestamp, ended by the marker).

    Reordering is not undone: a packet arriving after a later one counts as lost for its frame.
    With ``ssrc`` set, packets of any other SSRC are ignored (counted in ``wrong_ssrc``).
    """

    def __init__(self, ssrc: int | None = None) -> None:
        self.ssrc = ssrc
        self._ts: int | None = None
        self._parts: list[bytes] = []
        self._damaged = False
        self._next_seq: int | None = None
        self.stats = ReassemblyStats()

    def receive(self, packet: RtpPacket) -> list[bytes]:
        """Frames completed by this packet (0, 1, or 2 when a frame had no marker)."""
        if self.ssrc is not None and packet.ssrc != self.ssrc:
            self.stats.wrong_ssrc += 1
            return []
        out: list[bytes] = []
        gap = 0
        if self._next_seq is not None:
            gap = seq_distance(packet.sequence_number, self._next_seq)
            if gap < 0:
                self.stats.late_packets += 1
                return []
            self.stats.lost_packets += gap
        self._next_seq = (packet.sequence_number + 1) & 0xFFFF
        if self._ts is not None and packet.timestamp != self._ts:
            # A new frame began without the old one's marker: the old one ends here, and if
            # packets are missing they may have been its tail.
            self._damaged = self._damaged or gap > 0
            out.extend(self._finish())
        if self._ts is None:
            # A missing packet before a frame's first one may have been its head; a frame
            # whose first bytes are a pack header is known to be whole at the front.
            self._ts = packet.timestamp
            self._damaged = gap > 0 and not packet.payload.startswith(b"\x00\x00\x01\xba")
        elif gap > 0:
            self._damaged = True
        self._parts.append(packet.payload)
        if packet.marker:
            out.extend(self._finish())
        return out

    def _finish(self) -> list[bytes]:
        parts, damaged = self._parts, self._damaged
        self._parts, self._damaged, self._ts = [], False, None
        if not parts:
            return []
        if damaged:
            self.stats.dropped_frames += 1
            return []
        self.stats.frames += 1
        return [b"".join(parts)]


class RtpPsReceiver:
    """RTP packets of one GB stream → access units: reassembler + demuxer, flushed per frame."""

    def __init__(self, ssrc: int | None = None) -> None:
        self.reassembler = RtpPsReassembler(ssrc)
        self.demuxer = PsDemuxer()

    def receive(self, packet: RtpPacket) -> list[AccessUnit]:
        out: list[AccessUnit] = []
        dropped = self.reassembler.stats.dropped_frames
        frames = self.reassembler.receive(packet)
        if self.reassembler.stats.dropped_frames != dropped:
            self.demuxer.reset()
        for frame in frames:
            out.extend(self.demuxer.feed(frame))
            out.extend(self.demuxer.flush())
        return out


# ------------------------------------------------------------------------------ packetising


@dataclass(slots=True)
class RtpPacketizer:
    """Access units → RTP packets for one outgoing stream (sequence numbers continue)."""

    ssrc: int
    payload_type: int = 96
    mtu: int = 1200  # payload bytes per packet
    sequence_number: int = 0
    _audio_clock: dict[PsCodec, int] = field(default_factory=dict)

    def packetize(self, au: AccessUnit) -> list[RtpPacket]:
        if au.codec in VIDEO_CODECS:
            ts = (au.pts or 0) & 0xFFFFFFFF
            payloads = (
                packetize_h264(au.data, self.mtu)
                if au.codec is PsCodec.h264
                else packetize_h265(au.data, self.mtu)
            )
            pt = self.payload_type
            last = len(payloads) - 1
            return [self._packet(pt, ts, p, i == last) for i, p in enumerate(payloads)]
        pt = 8 if au.codec is PsCodec.pcma else 0
        ts = ((au.pts or 0) * 8000 // 90000) & 0xFFFFFFFF
        return [
            self._packet(pt, (ts + off) & 0xFFFFFFFF, au.data[off : off + self.mtu], False)
            for off in range(0, len(au.data), self.mtu)
        ]

    def _packet(self, pt: int, ts: int, payload: bytes, marker: bool) -> RtpPacket:
        p = RtpPacket(pt, self.sequence_number, ts, self.ssrc, marker, payload=payload)
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        return p


def packetize_h264(annexb: bytes, mtu: int = 1200) -> list[bytes]:
    """RFC 6184 payloads: single NAL unit packets, FU-A for NAL units above ``mtu``."""
    out: list[bytes] = []
    for nal in split_annexb(annexb):
        if len(nal) <= mtu:
            out.append(nal)
            continue
        indicator = (nal[0] & 0xE0) | 28
        ntype = nal[0] & 0x1F
        body = nal[1:]
        step = mtu - 2
        for off in range(0, len(body), step):
            s = 0x80 if off == 0 else 0
            e = 0x40 if off + step >= len(body) else 0
            out.append(bytes([indicator, s | e | ntype]) + body[off : off + step])
    return out


def packetize_h265(annexb: bytes, mtu: int = 1200) -> list[bytes]:
    """RFC 7798 payloads: single NAL unit packets, FU (type 49) for NAL units above ``mtu``."""
    out: list[bytes] = []
    for nal in split_annexb(annexb):
        if len(nal) <= mtu:
            out.append(nal)
            continue
        ntype = (nal[0] >> 1) & 0x3F
        hdr = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]])
        body = nal[2:]
        step = mtu - 3
        for off in range(0, len(body), step):
            s = 0x80 if off == 0 else 0
            e = 0x40 if off + step >= len(body) else 0
            out.append(hdr + bytes([s | e | ntype]) + body[off : off + step])
    return out


# ------------------------------------------------------------------------------------ muxing

_CODEC_TYPES: dict[PsCodec, int] = {v: k for k, v in STREAM_TYPES.items()}


def _crc32_mpeg(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _pts_bytes(prefix: int, pts: int) -> bytes:
    pts &= (1 << 33) - 1
    return bytes(
        [
            (prefix << 4) | ((pts >> 29) & 0x0E) | 1,
            (pts >> 22) & 0xFF,
            ((pts >> 14) & 0xFE) | 1,
            (pts >> 7) & 0xFF,
            ((pts << 1) & 0xFE) | 1,
        ]
    )


class PsMuxer:
    """Access units → MPEG-2 PS bytes the way GB/T 28181 devices write them (one frame each).

    ``declare_audio`` puts the audio stream in the PSM even if no audio is ever sent — a quirk of
    real cameras that players must not wait on.
    """

    VIDEO_ID = 0xE0
    AUDIO_ID = 0xC0
    MAX_PES_PAYLOAD = 0xFFFF - 8

    def __init__(self, video: PsCodec | None = PsCodec.h264, audio: PsCodec | None = None) -> None:
        self.video = video
        self.audio = audio

    def _pack_header(self, scr: int) -> bytes:
        scr &= (1 << 33) - 1
        rate = 0x3FFF
        return b"\x00\x00\x01\xba" + bytes(
            [
                0x44 | ((scr >> 27) & 0x38) | ((scr >> 28) & 0x03),
                (scr >> 20) & 0xFF,
                ((scr >> 12) & 0xF8) | 0x04 | ((scr >> 13) & 0x03),
                (scr >> 5) & 0xFF,
                ((scr << 3) & 0xF8) | 0x04,
                0x01,
                (rate >> 14) & 0xFF,
                (rate >> 6) & 0xFF,
                ((rate << 2) & 0xFC) | 0x03,
                0xF8,
            ]
        )

    def _streams(self) -> list[tuple[int, PsCodec]]:
        out = []
        if self.video is not None:
            out.append((self.VIDEO_ID, self.video))
        if self.audio is not None:
            out.append((self.AUDIO_ID, self.audio))
        return out

    def _system_header(self) -> bytes:
        body = bytearray([0x80, 0x00, 0x01, 0x04, 0xE1, 0xFF])
        for sid, _ in self._streams():
            body += bytes([sid, 0xE0, 0x80]) if sid == self.VIDEO_ID else bytes([sid, 0xC0, 0x20])
        return b"\x00\x00\x01\xbb" + len(body).to_bytes(2, "big") + bytes(body)

    def _psm(self) -> bytes:
        entries = b"".join(
            bytes([_CODEC_TYPES[codec], sid, 0, 0]) for sid, codec in self._streams()
        )
        body = bytes([0xE0, 0xFF, 0, 0]) + len(entries).to_bytes(2, "big") + entries
        head = b"\x00\x00\x01\xbc" + (len(body) + 4).to_bytes(2, "big") + body
        return head + _crc32_mpeg(head).to_bytes(4, "big")

    def mux(self, au: AccessUnit) -> bytes:
        pts = au.pts or 0
        out = bytearray(self._pack_header(pts))
        if au.codec in VIDEO_CODECS and au.is_keyframe:
            out += self._system_header()
            out += self._psm()
        sid = self.VIDEO_ID if au.codec in VIDEO_CODECS else self.AUDIO_ID
        data = au.data
        first = True
        for off in range(0, max(len(data), 1), self.MAX_PES_PAYLOAD):
            chunk = data[off : off + self.MAX_PES_PAYLOAD]
            hdr = bytes([0x80, 0x80, 5]) + _pts_bytes(2, pts) if first else bytes([0x80, 0, 0])
            first = False
            out += bytes([0, 0, 1, sid]) + (len(hdr) + len(chunk)).to_bytes(2, "big")
            out += hdr + chunk
        return bytes(out)


@dataclass(slots=True)
class RtpPsPacketizer:
    """PS frames → RTP (PT 96 by default, 90 kHz timestamp, marker on the last packet)."""

    ssrc: int
    payload_type: int = 96
    mtu: int = 1400
    sequence_number: int = 0

    def packetize(self, frame: bytes, timestamp: int) -> list[RtpPacket]:
        chunks = [frame[i : i + self.mtu] for i in range(0, len(frame), self.mtu)] or [b""]
        out = []
        for i, c in enumerate(chunks):
            out.append(
                RtpPacket(
                    self.payload_type,
                    self.sequence_number,
                    timestamp & 0xFFFFFFFF,
                    self.ssrc,
                    i == len(chunks) - 1,
                    payload=c,
                )
            )
            self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        return out


# ------------------------------------------------------------------------ TCP framing


def frame_rfc4571(packet: bytes) -> bytes:
    """One RTP packet as RFC 4571 sends it over TCP: 2-byte big-endian length, then the packet."""
    if len(packet) > 0xFFFF:
        raise ValueError(f"an RFC 4571 frame holds at most 65535 bytes, not {len(packet)}")
    return len(packet).to_bytes(2, "big") + packet


class Rfc4571Deframer:
    """Byte stream in, RTP packets out (RFC 4571); keeps a partial frame between calls."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        i, buf = 0, self._buf
        while len(buf) - i >= 2:
            n = (buf[i] << 8) | buf[i + 1]
            if len(buf) - i - 2 < n:
                break
            if n:
                out.append(bytes(buf[i + 2 : i + 2 + n]))
            i += 2 + n
        del buf[:i]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)
