"""GB/T 28181 SDP for INVITE (live, playback, download) and the SSRC allocator. Pure, no I/O.

The GB session description is SDP (RFC 4566) plus two lines of its own: ``y=`` (the 10-digit
decimal SSRC, whose integer value is the RTP SSRC) and ``f=`` (media parameters). Parsing is
tolerant: unknown line types and attributes are kept, not refused (JAIN-SIP's refusal of ``y=``
is why WVP strips it), and both CRLF and LF are accepted. Only one media line is modelled (GB
offers one ``m=video``; an extra ``m=audio`` for talk is kept as unknown lines).

SSRC layout (``y=``): 1 digit (0 live, 1 playback/download), 5 digits of the SIP domain (its 4th to
8th digits), 4 digits of sequence. :class:`SsrcAllocator` hands out each SSRC at most once until it
is released, and keeps a released one out of circulation for ``quarantine`` seconds (a media server
that still sees late packets of the old stream would otherwise mix them in). Leaks were the top
SSRC complaint against WVP; ``in_use`` makes them visible.

Public: ``GbSdp``, ``parse_sdp``, ``SdpError``, ``SsrcAllocator``, ``ssrc_prefix``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field

from vmesh.errors import FieldError, InvalidInput, VmeshError
from vmesh.gb28181.message import ascii_digits


class SdpError(InvalidInput):
    def __init__(self, field: str, reason: str, value: object | None = None) -> None:
        v = None if value is None else str(value)[:200]
        super().__init__(f"{field}: {reason}", errors=[FieldError(field, reason, v)])
        self.field = field


class SsrcExhausted(VmeshError):
    status = 503
    title = "No SSRC free"


SESSION_NAMES = ("Play", "Playback", "Download", "Talk")
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(slots=True)
class GbSdp:
    """One GB session description (offer or answer)."""

    session_name: str = "Play"
    origin_user: str = "-"
    origin_address: str = "0.0.0.0"
    connection_address: str = "0.0.0.0"
    media_type: str = "video"
    port: int = 0
    tcp: bool = False
    payload_types: list[int] = field(default_factory=lambda: [96])
    rtpmap: dict[int, str] = field(default_factory=lambda: {96: "PS/90000"})
    direction: str | None = "recvonly"
    setup: str | None = None  # TCP: "active" (we connect) / "passive" (peer connects)
    connection_new: bool = False
    ssrc: str | None = None  # y=, 10 digits
    media_format: str | None = None  # f=
    uri: str | None = None  # u=, "channelId:0" for playback
    start: int = 0  # t= (unix seconds; 0 0 for live)
    stop: int = 0
    download_speed: int | None = None
    extra_attributes: list[str] = field(default_factory=list)  # other a= lines, verbatim
    unknown_lines: list[str] = field(default_factory=list)

    @property
    def ssrc_value(self) -> int | None:
        """The RTP SSRC the peer uses: the integer value of ``y=``."""
        return int(self.ssrc) if self.ssrc is not None else None

    @property
    def is_playback(self) -> bool:
        return self.session_name in ("Playback", "Download")

    def encode(self) -> str:
        if self.session_name not in SESSION_NAMES:
            raise SdpError("s", f"must be one of {', '.join(SESSION_NAMES)}", self.session_name)
        if self.ssrc is not None and not re.fullmatch(r"\d{10}", self.ssrc):
            raise SdpError("y", "must be 10 decimal digits", self.ssrc)
        if not 0 <= self.port <= 65535:
            raise SdpError("m.port", "must be between 0 and 65535", self.port)
        proto = "TCP/RTP/AVP" if self.tcp else "RTP/AVP"
        lines = [
            "v=0",
            f"o={self.origin_user} 0 0 IN IP4 {self.origin_address}",
            f"s={self.session_name}",
        ]
        if self.uri is not None:
            lines.append(f"u={self.uri}")
        lines += [
            f"c=IN IP4 {self.connection_address}",
            f"t={self.start} {self.stop}",
            f"m={self.media_type} {self.port} {proto} {' '.join(map(str, self.payload_types))}",
        ]
        if self.direction:
            lines.append(f"a={self.direction}")
        for pt in self.payload_types:
            if pt in self.rtpmap:
                lines.append(f"a=rtpmap:{pt} {self.rtpmap[pt]}")
        if self.setup:
            lines.append(f"a=setup:{self.setup}")
        if self.connection_new:
            lines.append("a=connection:new")
        if self.download_speed is not None:
            lines.append(f"a=downloadspeed:{self.download_speed}")
        lines += [f"a={a}" for a in self.extra_attributes]
        lines += self.unknown_lines
        if self.ssrc is not None:
            lines.append(f"y={self.ssrc}")
        if self.media_format is not None:
            lines.append(f"f={self.media_format}")
        return "\r\n".join(lines) + "\r\n"


def parse_sdp(data: bytes | str) -> GbSdp:
    """Parse a GB session description; raises :class:`SdpError` naming the bad line type."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    sdp = GbSdp(payload_types=[], rtpmap={}, direction=None)
    seen_media = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            sdp.unknown_lines.append(line)
            continue
        kind, value = line[0], line[2:].strip()
        if kind == "v":
            if value != "0":
                raise SdpError("v", "must be 0", value)
        elif kind == "o":
            parts = value.split()
            if len(parts) < 6:
                raise SdpError("o", "must have 6 fields", value)
            sdp.origin_user, sdp.origin_address = parts[0], parts[5]
        elif kind == "s":
            sdp.session_name = value
        elif kind == "u":
            sdp.uri = value
        elif kind == "c":
            parts = value.split()
            if len(parts) < 3:
                raise SdpError("c", "must be 'IN IP4 address'", value)
            sdp.connection_address = parts[2].split("/")[0]
        elif kind == "t":
            parts = value.split()
            if len(parts) != 2 or not all(ascii_digits(p) for p in parts):
                raise SdpError("t", "must be two integers", value)
            sdp.start, sdp.stop = int(parts[0]), int(parts[1])
        elif kind == "m":
            if seen_media:
                sdp.unknown_lines.append(line)
                continue
            seen_media = True
            parts = value.split()
            if len(parts) < 3 or not ascii_digits(parts[1].split("/")[0]):
                raise SdpError("m", "must be 'media port proto fmt…'", value)
            sdp.media_type = parts[0]
            sdp.port = int(parts[1].split("/")[0])
            if sdp.port > 65535:
                raise SdpError("m.port", "must be between 0 and 65535", sdp.port)
            sdp.tcp = parts[2].upper().startswith("TCP")
            sdp.payload_types = [int(p) for p in parts[3:] if ascii_digits(p)]
        elif kind == "a":
            _attribute(sdp, value)
        elif kind == "y":
            if not re.fullmatch(r"\d{1,10}", value):
                raise SdpError("y", "must be up to 10 decimal digits", value)
            sdp.ssrc = value.zfill(10)
            if int(sdp.ssrc) > 0xFFFFFFFF:
                raise SdpError("y", "does not fit a 32-bit SSRC", value)
        elif kind == "f":
            sdp.media_format = value
        else:
            sdp.unknown_lines.append(line)
    if not seen_media:
        raise SdpError("m", "is missing")
    return sdp


def _attribute(sdp: GbSdp, value: str) -> None:
    name, _, arg = value.partition(":")
    if name in _DIRECTIONS and not arg:
        sdp.direction = name
    elif name == "rtpmap":
        pt, _, enc = arg.partition(" ")
        if not ascii_digits(pt):
            raise SdpError("a=rtpmap", "payload type must be a number", value)
        sdp.rtpmap[int(pt)] = enc.strip()
    elif name == "setup":
        sdp.setup = arg.strip()
    elif name == "connection":
        sdp.connection_new = arg.strip() == "new"
    elif name == "downloadspeed" and ascii_digits(arg.strip()):
        sdp.download_speed = int(arg)
    else:
        sdp.extra_attributes.append(value)


# ------------------------------------------------------------------------------------ SSRC


def ssrc_prefix(domain: str, *, playback: bool) -> str:
    """The first 6 digits of an SSRC: 0/1 and the domain's 4th–8th digits."""
    if not re.fullmatch(r"\d{8,}", domain):
        raise SdpError("domain", "must be at least 8 digits (the SIP domain / center code)", domain)
    return ("1" if playback else "0") + domain[3:8]


class SsrcAllocator:
    """SSRCs for one media node and SIP domain: 10,000 live and 10,000 playback values."""

    def __init__(self, domain: str, *, quarantine: float = 15.0) -> None:
        self._prefix = {
            False: ssrc_prefix(domain, playback=False),
            True: ssrc_prefix(domain, playback=True),
        }
        self.quarantine = quarantine
        self._used: set[str] = set()
        self._cursor = {False: 0, True: 0}
        self._resting: OrderedDict[str, float] = OrderedDict()  # released → free again at

    @property
    def in_use(self) -> int:
        return len(self._used)

    def is_used(self, ssrc: str) -> bool:
        return ssrc in self._used

    def allocate(self, now: float, *, playback: bool = False) -> str:
        """A fresh SSRC; raises :class:`SsrcExhausted` when every value is taken or resting."""
        self._wake(now)
        prefix = self._prefix[playback]
        start = self._cursor[playback]
        for i in range(10000):
            n = (start + i) % 10000
            ssrc = f"{prefix}{n:04d}"
            if ssrc not in self._used and ssrc not in self._resting:
                self._used.add(ssrc)
                self._cursor[playback] = (n + 1) % 10000
                return ssrc
        kind = "playback" if playback else "live"
        raise SsrcExhausted(
            f"all 10000 {kind} SSRCs are in use or resting",
            errors=[FieldError("ssrc", f"all 10000 {kind} SSRCs are in use or resting")],
        )

    def reserve(self, ssrc: str) -> bool:
        """Mark a peer-chosen SSRC (adopted from a device's ``y=``) as used; False if it was."""
        if not re.fullmatch(r"\d{10}", ssrc):
            raise SdpError("y", "must be 10 decimal digits", ssrc)
        if ssrc in self._used:
            return False
        self._used.add(ssrc)
        return True

    def release(self, ssrc: str, now: float) -> bool:
        """Give an SSRC back; True if it was in use (releasing twice is harmless)."""
        if ssrc not in self._used:
            return False
        self._used.discard(ssrc)
        if self.quarantine > 0:
            self._resting[ssrc] = now + self.quarantine
        return True

    def _wake(self, now: float) -> None:
        while self._resting:
            ssrc, at = next(iter(self._resting.items()))
            if at > now:
                break
            del self._resting[ssrc]
