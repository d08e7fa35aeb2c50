"""RTP packets (RFC 3550 §5.1): parse and serialise, and nothing else. Pure, no I/O.

A parsed packet is an :class:`RtpPacket`; :func:`parse_rtp` refuses malformed bytes with
:class:`MalformedPacket`, which names the header field that is wrong and why (it is an
``InvalidInput``, so it maps to problem+json like every other bad input). Header extensions are
kept as one opaque block (profile + bytes), which is all a forwarder needs.

Also here: :func:`is_rtcp`, the RFC 5761 test that tells RTCP from RTP on a multiplexed port, and
the sequence-number arithmetic shared by the switch (:func:`seq_distance`).

For forwarders, :func:`payload_bounds` makes the same checks without building a packet object
(a plain 12-byte header, what nearly every source sends, is two comparisons).

Public: ``RtpPacket``, ``parse_rtp``, ``payload_bounds``, ``MalformedPacket``, ``is_rtcp``,
``seq_distance``, ``RTP_HEADER_SIZE``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmesh.errors import FieldError, InvalidInput

RTP_HEADER_SIZE = 12
RTP_VERSION = 2

_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")


class MalformedPacket(InvalidInput):
    """Bytes that are not a valid RTP or RTCP packet; ``field`` says which part, ``reason`` why."""

    def __init__(self, field: str, reason: str, value: object | None = None) -> None:
        v = None if value is None else str(value)
        super().__init__(f"{field}: {reason}", errors=[FieldError(field, reason, v)])
        self.field = field
        self.reason = reason


def is_rtcp(data: bytes) -> bool:
    """True if a datagram on an RTP/RTCP-multiplexed port is RTCP (RFC 5761 §4: PT 192–223)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def seq_distance(a: int, b: int) -> int:
    """Signed distance from sequence number ``b`` to ``a`` in 16-bit serial arithmetic."""
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet. ``padding`` is the number of padding octets (0: the P bit is clear)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""
    payload: bytes = b""
    padding: int = 0

    def serialize(self) -> bytes:
        """The packet's bytes; refuses field values that do not fit the header."""
        _check_range("rtp.payload_type", self.payload_type, 0x7F)
        _check_range("rtp.sequence_number", self.sequence_number, 0xFFFF)
        _check_range("rtp.timestamp", self.timestamp, 0xFFFFFFFF)
        _check_range("rtp.ssrc", self.ssrc, 0xFFFFFFFF)
        if len(self.csrc) > 15:
            raise MalformedPacket("rtp.csrc", "at most 15 CSRCs fit the header", len(self.csrc))
        for c in self.csrc:
            _check_range("rtp.csrc", c, 0xFFFFFFFF)
        if self.extension_profile is not None:
            _check_range("rtp.extension_profile", self.extension_profile, 0xFFFF)
            if len(self.extension) % 4:
                raise MalformedPacket(
                    "rtp.extension", "length must be a multiple of 4 octets", len(self.extension)
                )
        elif self.extension:
            raise MalformedPacket("rtp.extension", "extension bytes need an extension_profile")
        _check_range("rtp.padding", self.padding, 0xFF)
        b0 = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding:
            b0 |= 0x20
        if self.extension_profile is not None:
            b0 |= 0x10
        b1 = self.payload_type | (0x80 if self.marker else 0)
        parts = [_HEADER.pack(b0, b1, self.sequence_number, self.timestamp, self.ssrc)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension_profile is not None:
            parts.append(_EXT_HEADER.pack(self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding:
            parts.append(b"\x00" * (self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def _check_range(field: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise MalformedPacket(field, f"must be between 0 and {maximum}", value)


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet, or raise :class:`MalformedPacket` saying what is wrong."""
    n = len(data)
    if n < RTP_HEADER_SIZE:
        raise MalformedPacket(
            "rtp.length", f"{n} bytes is shorter than the {RTP_HEADER_SIZE}-byte RTP header", n
        )
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    version = b0 >> 6
    if version != RTP_VERSION:
        raise MalformedPacket("rtp.version", "must be 2", version)
    if 72 <= (b1 & 0x7F) <= 76 and b1 & 0x80:
        raise MalformedPacket(
            "rtp.payload_type", "this is an RTCP packet (RFC 5761: PT 200–204)", b1
        )
    cc = b0 & 0x0F
    pos = RTP_HEADER_SIZE + 4 * cc
    if pos > n:
        raise MalformedPacket(
            "rtp.csrc_count", f"{cc} CSRCs need {pos} bytes but the packet has {n}", cc
        )
    csrc = struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE) if cc else ()
    ext_profile: int | None = None
    ext = b""
    if b0 & 0x10:
        if pos + 4 > n:
            raise MalformedPacket("rtp.extension", "the X bit is set but the header is cut short")
        ext_profile, words = _EXT_HEADER.unpack_from(data, pos)
        end = pos + 4 + 4 * words
        if end > n:
            raise MalformedPacket(
                "rtp.extension",
                f"declares {words} words, more than the {n - pos - 4} bytes left",
                words,
            )
        ext = bytes(data[pos + 4 : end])
        pos = end
    padding = 0
    end = n
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or padding > n - pos:
            raise MalformedPacket(
                "rtp.padding",
                f"padding count {padding} does not fit the {n - pos} bytes after the header",
                padding,
            )
        end = n - padding
    return RtpPacket(
        payload_type=b1 & 0x7F,
        sequence_number=seq,
        timestamp=ts,
        ssrc=ssrc,
        marker=bool(b1 & 0x80),
        csrc=tuple(csrc),
        extension_profile=ext_profile,
        extension=ext,
        payload=bytes(data[pos:end]),
        padding=padding,
    )


def payload_bounds(data: bytes | bytearray) -> tuple[int, int]:
    """``(start, end)`` of the payload of a valid RTP packet, with the checks of
    :func:`parse_rtp` (raises the same :class:`MalformedPacket`), without building an object."""
    n = len(data)
    if n >= RTP_HEADER_SIZE and data[0] == 0x80 and not 200 <= data[1] <= 204:
        return RTP_HEADER_SIZE, n  # V=2, no padding, no extension, no CSRC: the common case
    pkt = parse_rtp(bytes(data))
    end = n - pkt.padding
    return end - len(pkt.payload), end
