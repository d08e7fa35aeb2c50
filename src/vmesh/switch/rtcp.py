"""RTCP compound packets: parse and serialise. Pure, no I/O.

Covers what the switch speaks: sender and receiver reports with report blocks (RFC 3550 §6.4),
SDES with CNAME (§6.5), BYE (§6.6), and the feedback messages of RFC 4585/5104: generic NACK
(PT 205 FMT 1), PLI (PT 206 FMT 1) and FIR (PT 206 FMT 4). Any other packet type or format
(APP, XR, REMB, ...) is kept as :class:`RtcpUnknown` with its bytes, never guessed at.

:func:`parse_compound` refuses malformed bytes with ``MalformedPacket`` naming the sub-packet
(``rtcp[1].length``) and the reason. Reduced-size RTCP (RFC 5506, a feedback packet alone) is
accepted.

Public: ``ReportBlock``, ``RtcpSenderReport``, ``RtcpReceiverReport``, ``SdesChunk``, ``RtcpSdes``,
``RtcpBye``, ``RtcpNack``, ``RtcpPli``, ``RtcpFir``, ``RtcpUnknown``, ``RtcpPacket``,
``parse_compound``, ``serialize_compound``, ``ntp_timestamp``, ``ntp_middle32``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from vmesh.switch.rtp import MalformedPacket

PT_SR = 200
PT_RR = 201
PT_SDES = 202
PT_BYE = 203
PT_RTPFB = 205
PT_PSFB = 206
FMT_NACK = 1
FMT_PLI = 1
FMT_FIR = 4
SDES_CNAME = 1

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)

_COMMON = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IB3sIIII")
_SR_INFO = struct.Struct("!IIIIII")


def ntp_timestamp(unix_seconds: float) -> int:
    """The 64-bit NTP timestamp (32.32 fixed point since 1900) of a Unix time."""
    return round((unix_seconds + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as used in LSR and DLSR (1/65536 s units)."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 §6.4.1). ``cumulative_lost`` is signed 24-bit."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    def serialize(self) -> bytes:
        lost = max(-(1 << 23), min((1 << 23) - 1, self.cumulative_lost)) & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            self.fraction_lost & 0xFF,
            lost.to_bytes(3, "big"),
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )

    @classmethod
    def parse(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, frac, lost3, high, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        lost = int.from_bytes(lost3, "big")
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, frac, lost, high, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class RtcpSenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        body = _SR_INFO.pack(
            self.ssrc,
            (self.ntp_timestamp >> 32) & 0xFFFFFFFF,
            self.ntp_timestamp & 0xFFFFFFFF,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        )
        return _pack(PT_SR, len(self.reports), body + b"".join(r.serialize() for r in self.reports))


@dataclass(frozen=True, slots=True)
class RtcpReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(r.serialize() for r in self.reports)
        return _pack(PT_RR, len(self.reports), body)


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk: an SSRC and its items as (type, value) pairs, in order."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True)
class RtcpSdes:
    chunks: tuple[SdesChunk, ...] = ()

    @classmethod
    def cname(cls, ssrc: int, cname: str) -> RtcpSdes:
        return cls((SdesChunk(ssrc, ((SDES_CNAME, cname.encode()),)),))

    def serialize(self) -> bytes:
        body = bytearray()
        for chunk in self.chunks:
            body += struct.pack("!I", chunk.ssrc)
            for kind, value in chunk.items:
                if not 1 <= kind <= 255 or len(value) > 255:
                    raise MalformedPacket("rtcp.sdes", "item type 1–255 and ≤255 octets", kind)
                body += bytes((kind, len(value))) + value
            body += b"\x00" * (4 - len(body) % 4)  # the null item, padded to a word
        return _pack(PT_SDES, len(self.chunks), bytes(body))


@dataclass(frozen=True, slots=True)
class RtcpBye:
    ssrcs: tuple[int, ...] = ()
    reason: str | None = None

    def serialize(self) -> bytes:
        body = b"".join(struct.pack("!I", s) for s in self.ssrcs)
        if self.reason is not None:
            r = self.reason.encode()[:255]
            body += bytes((len(r),)) + r
            body += b"\x00" * (-len(body) % 4)
        return _pack(PT_BYE, len(self.ssrcs), body)


@dataclass(frozen=True, slots=True)
class RtcpNack:
    """Generic NACK: the sequence numbers ``lost`` of ``media_ssrc`` (RFC 4585 §6.2.1)."""

    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...] = ()

    def serialize(self) -> bytes:
        fci = bytearray()
        pending = sorted(set(s & 0xFFFF for s in self.lost))
        while pending:
            pid = pending.pop(0)
            blp = 0
            rest = []
            for s in pending:
                d = (s - pid) & 0xFFFF
                if 1 <= d <= 16:
                    blp |= 1 << (d - 1)
                else:
                    rest.append(s)
            pending = rest
            fci += struct.pack("!HH", pid, blp)
        return _pack(
            PT_RTPFB, FMT_NACK, struct.pack("!II", self.sender_ssrc, self.media_ssrc) + fci
        )


@dataclass(frozen=True, slots=True)
class RtcpPli:
    """Picture Loss Indication (RFC 4585 §6.3.1): please send a keyframe."""

    sender_ssrc: int
    media_ssrc: int

    def serialize(self) -> bytes:
        return _pack(PT_PSFB, FMT_PLI, struct.pack("!II", self.sender_ssrc, self.media_ssrc))


@dataclass(frozen=True, slots=True)
class RtcpFir:
    """Full Intra Request (RFC 5104 §4.3.1): ``entries`` are (media SSRC, command sequence)."""

    sender_ssrc: int
    entries: tuple[tuple[int, int], ...] = ()

    def serialize(self) -> bytes:
        fci = b"".join(struct.pack("!IB3x", ssrc, seq & 0xFF) for ssrc, seq in self.entries)
        return _pack(PT_PSFB, FMT_FIR, struct.pack("!II", self.sender_ssrc, 0) + fci)


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    """A packet type or feedback format the switch does not interpret, kept as it came."""

    packet_type: int
    count: int
    body: bytes = field(default=b"")

    def serialize(self) -> bytes:
        return _pack(self.packet_type, self.count, self.body)


RtcpPacket = (
    RtcpSenderReport
    | RtcpReceiverReport
    | RtcpSdes
    | RtcpBye
    | RtcpNack
    | RtcpPli
    | RtcpFir
    | RtcpUnknown
)


def _pack(packet_type: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise MalformedPacket("rtcp.length", "body must be a multiple of 4 octets", len(body))
    return _COMMON.pack(0x80 | (count & 0x1F), packet_type, len(body) // 4) + body


def serialize_compound(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """The bytes of a compound RTCP packet made of ``packets`` in order."""
    return b"".join(p.serialize() for p in packets)


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet, or raise ``MalformedPacket`` naming the bad sub-packet."""
    if len(data) < 4:
        raise MalformedPacket("rtcp.length", f"{len(data)} bytes is shorter than one header")
    out: list[RtcpPacket] = []
    pos = 0
    n = len(data)
    while pos < n:
        where = f"rtcp[{len(out)}]"
        if n - pos < 4:
            raise MalformedPacket(f"{where}.length", f"{n - pos} trailing bytes are not a header")
        b0, pt, words = _COMMON.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise MalformedPacket(f"{where}.version", "must be 2", b0 >> 6)
        end = pos + 4 + 4 * words
        if end > n:
            raise MalformedPacket(
                f"{where}.length", f"declares {4 * words} body bytes, only {n - pos - 4} left"
            )
        body = bytes(data[pos + 4 : end])
        if b0 & 0x20:
            if end != n:
                raise MalformedPacket(f"{where}.padding", "only the last packet may be padded")
            pad = body[-1] if body else 0
            if pad == 0 or pad > len(body):
                raise MalformedPacket(f"{where}.padding", "padding count does not fit", pad)
            body = body[:-pad]
        out.append(_parse_one(where, pt, b0 & 0x1F, body))
        pos = end
    return out


def _parse_one(where: str, pt: int, count: int, body: bytes) -> RtcpPacket:
    if pt == PT_SR:
        need = 24 + 24 * count
        _need(where, "sr", body, need)
        ssrc, ntp_hi, ntp_lo, rtp_ts, pkts, octets = _SR_INFO.unpack_from(body)
        blocks = tuple(ReportBlock.parse(body, 24 + 24 * i) for i in range(count))
        return RtcpSenderReport(ssrc, (ntp_hi << 32) | ntp_lo, rtp_ts, pkts, octets, blocks)
    if pt == PT_RR:
        _need(where, "rr", body, 4 + 24 * count)
        (ssrc,) = struct.unpack_from("!I", body)
        return RtcpReceiverReport(
            ssrc, tuple(ReportBlock.parse(body, 4 + 24 * i) for i in range(count))
        )
    if pt == PT_SDES:
        return _parse_sdes(where, count, body)
    if pt == PT_BYE:
        _need(where, "bye", body, 4 * count)
        ssrcs = struct.unpack_from(f"!{count}I", body) if count else ()
        reason = None
        if len(body) > 4 * count:
            rlen = body[4 * count]
            if 4 * count + 1 + rlen > len(body):
                raise MalformedPacket(f"{where}.bye.reason", "length runs past the packet", rlen)
            reason = body[4 * count + 1 : 4 * count + 1 + rlen].decode("utf-8", "replace")
        return RtcpBye(tuple(ssrcs), reason)
    if pt == PT_RTPFB and count == FMT_NACK:
        _need(where, "nack", body, 8)
        sender, media = struct.unpack_from("!II", body)
        if (len(body) - 8) % 4:
            raise MalformedPacket(f"{where}.nack.fci", "must be whole 4-byte entries")
        lost: list[int] = []
        for i in range(8, len(body), 4):
            pid, blp = struct.unpack_from("!HH", body, i)
            lost.append(pid)
            lost.extend((pid + b + 1) & 0xFFFF for b in range(16) if blp & (1 << b))
        return RtcpNack(sender, media, tuple(lost))
    if pt == PT_PSFB and count == FMT_PLI:
        _need(where, "pli", body, 8)
        sender, media = struct.unpack_from("!II", body)
        return RtcpPli(sender, media)
    if pt == PT_PSFB and count == FMT_FIR:
        _need(where, "fir", body, 8)
        if (len(body) - 8) % 8:
            raise MalformedPacket(f"{where}.fir.fci", "must be whole 8-byte entries")
        (sender,) = struct.unpack_from("!I", body)
        entries = tuple(
            (s, q) for s, q in (struct.unpack_from("!IB", body, i) for i in range(8, len(body), 8))
        )
        return RtcpFir(sender, entries)
    return RtcpUnknown(pt, count, body)


def _need(where: str, what: str, body: bytes, need: int) -> None:
    if len(body) < need:
        raise MalformedPacket(
            f"{where}.{what}", f"needs {need} body bytes, has {len(body)}", len(body)
        )


def _parse_sdes(where: str, count: int, body: bytes) -> RtcpSdes:
    chunks: list[SdesChunk] = []
    pos = 0
    for i in range(count):
        if pos + 4 > len(body):
            raise MalformedPacket(f"{where}.sdes[{i}]", "chunk is cut short")
        (ssrc,) = struct.unpack_from("!I", body, pos)
        pos += 4
        items: list[tuple[int, bytes]] = []
        while True:
            if pos >= len(body):
                raise MalformedPacket(f"{where}.sdes[{i}]", "no null item ends the chunk")
            kind = body[pos]
            if kind == 0:
                pos += 1
                pos += -pos % 4  # chunks end on a word boundary
                break
            if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                raise MalformedPacket(f"{where}.sdes[{i}].item", "length runs past the packet")
            length = body[pos + 1]
            items.append((kind, body[pos + 2 : pos + 2 + length]))
            pos += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return RtcpSdes(tuple(chunks))
