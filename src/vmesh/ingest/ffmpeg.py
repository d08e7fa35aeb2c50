"""Pure helpers around ffmpeg's command line and output (no processes, no sockets).

- ``RtpTarget``: where a source's RTP goes (the switch input ports) and with which SSRCs;
  ``rtp_output`` builds one ``-f rtp`` output (payload type, SSRC, RTCP port, packet size).
- ``filter_value``: escapes a value for a filtergraph option (both escaping levels).
- ``ProgressParser``: parses ``-progress`` key=value blocks into ``Progress`` records.
- ``classify``: turns ffmpeg/ffprobe stderr lines into a ``Failure`` (unreachable, wrong
  credentials, not found, unsupported codec, bad stream), or ``None`` if nothing is recognisable.
- ``switch_codec``: ffmpeg codec names to the switch's (``h264``, ``h265``, ``opus``, ``pcma``,
  ``pcmu``); anything else is unsupported.
- ``redact``: hides the password of ``scheme://user:password@host`` URLs.

Public: ``RtpTarget``, ``rtp_output``, ``filter_value``, ``Progress``, ``ProgressParser``,
``classify``, ``switch_codec``, ``SUPPORTED_VIDEO``, ``SUPPORTED_AUDIO``, ``redact``,
``stream_codecs``, ``PAYLOAD_TYPES``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from vmesh.errors import InvalidInput
from vmesh.ingest.status import Failure, FailureKind

# ffmpeg codec name -> switch codec name (vmesh.switch.codecs.Codec values).
SUPPORTED_VIDEO = {"h264": "h264", "hevc": "h265", "h265": "h265"}
SUPPORTED_AUDIO = {"opus": "opus", "pcm_alaw": "pcma", "pcm_mulaw": "pcmu"}
# Payload types the sources use (the switch rewrites them per output anyway).
PAYLOAD_TYPES = {"h264": 96, "h265": 96, "opus": 111, "pcma": 8, "pcmu": 0}
RTP_PACKET_SIZE = 1200  # leaves room for SRTP and tunnel headers below a 1500-byte MTU


def switch_codec(ffmpeg_name: str) -> str | None:
    """The switch's name for an ffmpeg codec, or None if the switch does not carry it."""
    name = ffmpeg_name.lower()
    return SUPPORTED_VIDEO.get(name) or SUPPORTED_AUDIO.get(name)


def _check_port(field: str, port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise InvalidInput.one(field, "must be a UDP port between 1 and 65535", port)


def _check_ssrc(field: str, ssrc: int) -> None:
    # ffmpeg treats 0 as "pick one at random": a source's SSRC must be known to the switch.
    if not 1 <= ssrc <= 0xFFFFFFFF:
        raise InvalidInput.one(field, "must be between 1 and 4294967295", ssrc)


@dataclass(frozen=True)
class RtpTarget:
    """Where one source sends: the switch input's RTP ports (RTCP on port + 1) and SSRCs."""

    host: str
    video_port: int
    audio_port: int | None = None
    video_ssrc: int = 0x1000_0001
    audio_ssrc: int = 0x1000_0002

    def __post_init__(self) -> None:
        if not self.host:
            raise InvalidInput.one("host", "must not be empty")
        _check_port("video_port", self.video_port)
        _check_port("audio_port", self.audio_port)
        if self.video_port == 65535 or self.audio_port == 65535:
            raise InvalidInput.one("video_port", "needs the next port free for RTCP", 65535)
        _check_ssrc("video_ssrc", self.video_ssrc)
        _check_ssrc("audio_ssrc", self.audio_ssrc)


def rtp_output(host: str, port: int, ssrc: int, payload_type: int) -> list[str]:
    """Output options and URL of one RTP stream (RTCP to ``port + 1``)."""
    signed = ssrc - (1 << 32) if ssrc >= 1 << 31 else ssrc  # ffmpeg's option is a signed int
    url = f"rtp://{host}:{port}?rtcpport={port + 1}&pkt_size={RTP_PACKET_SIZE}"
    return ["-f", "rtp", "-payload_type", str(payload_type), "-ssrc", str(signed), url]


_LEVEL1 = re.compile(r"([\\':])")
_LEVEL2 = re.compile(r"([\\'\[\],;])")


def filter_value(value: str) -> str:
    """Escape ``value`` for use as a filter option inside a filtergraph string."""
    return _LEVEL2.sub(r"\\\1", _LEVEL1.sub(r"\\\1", value))


@dataclass(frozen=True)
class Progress:
    """One ``-progress`` block: frames (video packets for ``-c copy``), bytes out, output time."""

    frame: int
    total_size: int
    out_time_us: int
    end: bool


class ProgressParser:
    """Feed it text as it arrives; it returns complete blocks (they end with ``progress=``)."""

    def __init__(self) -> None:
        self._buf = ""
        self._fields: dict[str, str] = {}

    def feed(self, text: str) -> list[Progress]:
        self._buf += text
        out: list[Progress] = []
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            key, sep, value = line.strip().partition("=")
            if not sep:
                continue
            if key != "progress":
                self._fields[key] = value.strip()
                continue
            out.append(
                Progress(
                    frame=_int(self._fields.get("frame")),
                    total_size=_int(self._fields.get("total_size")),
                    out_time_us=_int(self._fields.get("out_time_us")),
                    end=value.strip() == "end",
                )
            )
            self._fields = {}
        return out


def _int(v: str | None) -> int:
    try:
        return int(v) if v is not None else 0
    except ValueError:  # "N/A"
        return 0


_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^/\s:@]*):[^@\s/]*@", re.IGNORECASE)


def redact(text: str) -> str:
    """``rtsp://user:secret@host/x`` → ``rtsp://user:***@host/x`` (anywhere in ``text``)."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


_STREAM = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio): ([A-Za-z0-9_]+)")


def stream_codecs(lines: Iterable[str]) -> list[tuple[str, str]]:
    """``(kind, codec)`` of each input stream ffmpeg listed (``Stream #0:0: Video: h264 ...``).

    Only the ``Input #`` section counts (the output section lists the same streams again)."""
    found: list[tuple[str, str]] = []
    in_input = False
    for line in lines:
        if line.startswith("Input #"):
            in_input = True
        elif line.startswith("Output #") or line.startswith("Stream mapping"):
            in_input = False
        elif in_input and (m := _STREAM.search(line)):
            found.append((m.group(1).lower(), m.group(2).lower()))
    return found


# (pattern, kind) in order: the first matching line decides. Texts are ffmpeg 5.1's.
_RULES: list[tuple[re.Pattern[str], FailureKind]] = [
    (re.compile(r"\b401 Unauthorized|authorization failed", re.I), FailureKind.WRONG_CREDENTIALS),
    (re.compile(r"\b403 Forbidden", re.I), FailureKind.WRONG_CREDENTIALS),
    (re.compile(r"\b404 Not Found|\b454 Session Not Found", re.I), FailureKind.NOT_FOUND),
    (
        re.compile(
            r"Connection refused|Connection timed out|No route to host|Network is unreachable|"
            r"Name or service not known|Temporary failure in name resolution|"
            r"Failed to resolve hostname|Host is unreachable|Cannot assign requested address",
            re.I,
        ),
        FailureKind.UNREACHABLE,
    ),
    (
        re.compile(r"Unsupported codec|codec not currently supported", re.I),
        FailureKind.UNSUPPORTED_CODEC,
    ),
    (
        re.compile(r"Invalid data found when processing input|\b(400|461|500|503) [A-Z]", re.I),
        FailureKind.BAD_STREAM,
    ),
]


def classify(lines: Iterable[str]) -> Failure | None:
    """The failure ffmpeg's (or ffprobe's) stderr describes, or None if none is recognisable.

    Input video in a codec the switch cannot carry is reported as unsupported even if ffmpeg
    itself would have sent it (the RTP muxer accepts MJPEG or MPEG-4, the switch does not).
    Unsupported audio is not a failure: the source is pulled without it."""
    lines = [redact(ln.rstrip()) for ln in lines]
    videos = [codec for kind, codec in stream_codecs(lines) if kind == "video"]
    if videos and not any(codec in SUPPORTED_VIDEO for codec in videos):
        return Failure(FailureKind.UNSUPPORTED_CODEC, f"video codec {videos[0]}")
    for pattern, kind in _RULES:
        for line in reversed(lines):  # ffmpeg's last line is its summary of the error
            if pattern.search(line):
                return Failure(kind, _reason(line))
    return None


def _reason(line: str) -> str:
    """The useful end of an ffmpeg error line, without its ``[rtsp @ 0x...]`` prefix."""
    text = re.sub(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*", "", line.strip())
    if m := re.search(r"Server returned (\d{3} [^(]+)", text):
        return m.group(1).strip()
    if m := re.search(r"failed: (\d{3} .+)$", text):
        return m.group(1).strip()
    if m := re.match(r"\S+://\S+: (.+)$", text):  # "rtsp://host/x: Connection refused"
        return m.group(1).strip()
    return text[:200]
