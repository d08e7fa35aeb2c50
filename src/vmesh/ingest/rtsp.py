"""RTSP cameras: probed with ffprobe, pulled by ffmpeg with ``-c copy`` into the switch's ports.

Settings come from the camera's directory ``attrs`` (``RtspSettings.from_attrs``)::

    {"rtsp_url": "rtsp://10.1.2.3:554/Streaming/Channels/101",
     "username": "admin", "password": "...",          # optional; or in the URL
     "transport": "tcp" | "udp",                      # default tcp ("rtsp_transport" also read)
     "pull": "on_demand" | "always"}                  # default on_demand

``pull`` is the media service's to act on: ``on_demand`` sources are started when the first viewer
watches and stopped after the last one leaves, ``always`` ones when the node starts (and the
directory's online/offline then always reflects the camera).

Each attempt of an ``RtspCamera`` (see ``vmesh.ingest.runner`` for the loop, the watchdog and the
back-off):

1. ``ffprobe`` lists the camera's streams (bounded by ``probe_timeout``). Its stderr is classified:
   connection refused / timed out / no route / unknown host → ``unreachable``; 401/403 → ``wrong
   credentials``; 404 → ``not found``. The first video stream must be H.264 or H.265, else
   ``unsupported codec`` naming it (e.g. ``video codec mjpeg``). The first audio stream in Opus,
   PCMA or PCMU is taken; audio in any other codec (AAC is common) is left out and logged, the
   video still plays.
2. ``ffmpeg -rtsp_transport tcp|udp -timeout <stall> -i URL`` copies the video (and audio) to two
   RTP outputs (video PT 96, audio 111/8/0), with ``dump_extra`` putting SPS/PPS (and VPS) before
   every keyframe so a viewer can start from the switch's GOP cache even when the camera sends
   them only in its SDP.
3. "No signal" is detected twice over: ffmpeg's own ``-timeout`` ends a TCP pull whose socket goes
   silent, and the runner's watchdog stops ffmpeg when its ``-progress`` frame/byte counts stop
   growing for ``stall_seconds`` (this one also covers UDP transport and a connection that stays
   open while the media stops). A stream that ends (the camera closed it) is no signal too.

Credentials go to ffmpeg inside the URL (ffmpeg's RTSP client has no other way): reasons and our
log lines are redacted, but ffmpeg's own log file ``<data_dir>/logs/ingest-<code>.log`` contains
the URL as ffmpeg prints it; it is created 0640 in the node's data folder.

Public: ``RtspSettings``, ``RtspCamera``, ``ProbeResult``, ``probe``, ``parse_probe``,
``pull_argv``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from vmesh.errors import FieldError, InvalidInput
from vmesh.ingest.ffmpeg import (
    PAYLOAD_TYPES,
    SUPPORTED_AUDIO,
    SUPPORTED_VIDEO,
    RtpTarget,
    classify,
    redact,
    rtp_output,
)
from vmesh.ingest.runner import DEFAULT_RETRY, FfmpegSource
from vmesh.ingest.status import Failure, FailureKind, IngestState, StatusCallback
from vmesh.node.supervisor import RestartPolicy

log = logging.getLogger(__name__)

Transport = Literal["tcp", "udp"]
Pull = Literal["on_demand", "always"]


@dataclass(frozen=True)
class RtspSettings:
    """Where and how to pull one camera. ``url`` carries no credentials (they are separate)."""

    url: str
    username: str | None = None
    password: str | None = None
    transport: Transport = "tcp"
    pull: Pull = "on_demand"

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> RtspSettings:
        """Read and check a camera entry's attrs; errors name ``attrs.<key>`` and the reason."""
        errors: list[FieldError] = []

        def text(key: str, required: bool = False) -> str | None:
            v = attrs.get(key)
            if v is None or v == "":
                if required:
                    errors.append(FieldError(f"attrs.{key}", "is required for an RTSP camera"))
                return None
            if not isinstance(v, str):
                errors.append(FieldError(f"attrs.{key}", "must be a string", str(v)))
                return None
            return v

        raw = text("rtsp_url", required=True)
        username = text("username")
        password = text("password")
        transport_key = "transport" if "transport" in attrs else "rtsp_transport"
        transport = text(transport_key) or "tcp"
        pull = text("pull") or "on_demand"
        url = ""
        if raw is not None:
            try:
                parts = urlsplit(raw.strip())
                host, port = parts.hostname, parts.port
            except ValueError as e:
                errors.append(
                    FieldError("attrs.rtsp_url", f"is not a valid URL ({e})", redact(raw))
                )
            else:
                if parts.scheme not in ("rtsp", "rtsps"):
                    errors.append(
                        FieldError(
                            "attrs.rtsp_url", "must start with rtsp:// or rtsps://", redact(raw)
                        )
                    )
                elif not host:
                    errors.append(FieldError("attrs.rtsp_url", "has no host", redact(raw)))
                else:
                    if parts.username is not None and username is None:
                        username = unquote(parts.username)
                    if parts.password is not None and password is None:
                        password = unquote(parts.password)
                    netloc = f"[{host}]" if ":" in host else host
                    if port is not None:
                        netloc += f":{port}"
                    url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        if transport not in ("tcp", "udp"):
            errors.append(FieldError(f"attrs.{transport_key}", "must be tcp or udp", transport))
        if pull not in ("on_demand", "always"):
            errors.append(FieldError("attrs.pull", "must be on_demand or always", pull))
        if password is not None and username is None:
            errors.append(FieldError("attrs.username", "is required when a password is set"))
        if errors:
            raise InvalidInput("; ".join(str(e) for e in errors), errors=errors)
        return cls(url, username, password, transport, pull)  # type: ignore[arg-type]

    def url_with_credentials(self) -> str:
        """The URL ffmpeg opens (credentials percent-encoded into it)."""
        if self.username is None:
            return self.url
        parts = urlsplit(self.url)
        userinfo = quote(self.username, safe="")
        if self.password is not None:
            userinfo += ":" + quote(self.password, safe="")
        return urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, ""))


@dataclass(frozen=True)
class ProbeResult:
    """What ``ffprobe`` found: absolute stream indexes and ffmpeg codec names."""

    video_index: int
    video_codec: str
    audio_index: int | None = None
    audio_codec: str | None = None
    skipped_audio: str | None = None
    """Codec of an audio stream left out because the switch does not carry it."""


def parse_probe(data: Mapping[str, Any]) -> ProbeResult:
    """Choose the streams to pull from ``ffprobe -show_streams -of json``; raises ``Failure``."""
    streams = [s for s in data.get("streams", []) if isinstance(s, Mapping)]
    videos = [s for s in streams if s.get("codec_type") == "video"]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos:
        return_kinds = ", ".join(str(s.get("codec_name")) for s in streams) or "none"
        raise Failure(FailureKind.UNSUPPORTED_CODEC, f"no video stream (streams: {return_kinds})")
    video = next((s for s in videos if str(s.get("codec_name")) in SUPPORTED_VIDEO), None)
    if video is None:
        raise Failure(
            FailureKind.UNSUPPORTED_CODEC, f"video codec {videos[0].get('codec_name', 'unknown')}"
        )
    audio = next((s for s in audios if str(s.get("codec_name")) in SUPPORTED_AUDIO), None)
    skipped = None
    if audio is None and audios:
        skipped = str(audios[0].get("codec_name", "unknown"))
    return ProbeResult(
        int(video["index"]),
        str(video["codec_name"]),
        int(audio["index"]) if audio is not None else None,
        str(audio["codec_name"]) if audio is not None else None,
        skipped,
    )


def probe_argv(settings: RtspSettings, timeout: float, ffprobe: str = "ffprobe") -> list[str]:
    return [
        ffprobe, "-hide_banner", "-v", "error",
        "-rtsp_transport", settings.transport, "-timeout", str(int(timeout * 1_000_000)),
        "-show_entries", "stream=index,codec_type,codec_name", "-of", "json",
        settings.url_with_credentials(),
    ]  # fmt: skip


async def probe(
    settings: RtspSettings, seconds: float = 15.0, ffprobe: str = "ffprobe"
) -> ProbeResult:
    """Ask the camera what it sends. Raises ``Failure`` naming why it could not be used."""
    argv = probe_argv(settings, seconds, ffprobe)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        raise Failure(FailureKind.FFMPEG, f"cannot start {ffprobe}: {e.strerror or e}") from None
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(seconds + 5):
            out, err = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise Failure(
            FailureKind.UNREACHABLE, f"no answer from {settings.url} within {seconds:g} s"
        ) from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    lines = err.decode(errors="replace").splitlines()
    if proc.returncode != 0:
        found = classify(lines)
        # A server that accepts the connection and never answers makes ffmpeg 5.1 give up after
        # its -timeout with "Invalid data found when processing input", not "timed out".
        silent = loop.time() - started >= seconds * 0.9
        if silent and (found is None or found.kind is FailureKind.BAD_STREAM):
            raise Failure(
                FailureKind.UNREACHABLE, f"no answer from {settings.url} within {seconds:g} s"
            )
        if found is not None:
            raise found
        last = redact(lines[-1]) if lines else f"ffprobe exited with status {proc.returncode}"
        raise Failure(FailureKind.BAD_STREAM, last[:200])
    try:
        data = json.loads(out.decode(errors="replace") or "{}")
    except ValueError:
        raise Failure(FailureKind.BAD_STREAM, "ffprobe's answer is not JSON") from None
    return parse_probe(data)


def pull_argv(
    settings: RtspSettings,
    found: ProbeResult,
    target: RtpTarget,
    stall_seconds: float,
    ffmpeg: str = "ffmpeg",
) -> list[str]:
    """ffmpeg pulling the camera and copying video (and audio) to RTP."""
    vcodec = SUPPORTED_VIDEO[found.video_codec]
    argv = [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
        "-rtsp_transport", settings.transport,
        "-timeout", str(int(stall_seconds * 1_000_000)),
        "-i", settings.url_with_credentials(),
        "-map", f"0:{found.video_index}", "-an", "-c", "copy",
        "-bsf:v", "dump_extra=freq=keyframe",
        *rtp_output(target.host, target.video_port, target.video_ssrc, PAYLOAD_TYPES[vcodec]),
    ]  # fmt: skip
    if found.audio_index is not None and found.audio_codec and target.audio_port is not None:
        acodec = SUPPORTED_AUDIO[found.audio_codec]
        argv += ["-map", f"0:{found.audio_index}", "-vn", "-c", "copy"]
        argv += rtp_output(target.host, target.audio_port, target.audio_ssrc, PAYLOAD_TYPES[acodec])
    return argv


class RtspCamera(FfmpegSource):
    """An RTSP camera pulled into ``target``; state ``connecting`` → ``sending``, or
    ``error``/``no_signal`` with the reason, retried with back-off for as long as it runs."""

    initial_state = IngestState.CONNECTING

    def __init__(
        self,
        source_id: str,
        settings: RtspSettings,
        target: RtpTarget,
        *,
        data_dir: Path,
        ffmpeg: str | None = None,
        ffprobe: str | None = None,
        on_status: StatusCallback | None = None,
        stall_seconds: float = 5.0,
        probe_timeout: float = 10.0,
        start_timeout: float = 20.0,
        retry: RestartPolicy = DEFAULT_RETRY,
    ) -> None:
        super().__init__(
            source_id,
            log_dir=data_dir / "logs",
            on_status=on_status,
            retry=retry,
            stall_seconds=stall_seconds,
            start_timeout=start_timeout,
        )
        self.settings = settings
        self.target = target
        self.ffmpeg = ffmpeg or shutil.which("ffmpeg") or "ffmpeg"
        self.ffprobe = ffprobe or shutil.which("ffprobe") or "ffprobe"
        self.probe_timeout = probe_timeout
        self.found: ProbeResult | None = None

    def stream_codecs(self) -> tuple[str | None, str | None]:
        if self.found is None:
            return None, None
        audio = None
        if self.found.audio_codec is not None and self.target.audio_port is not None:
            audio = SUPPORTED_AUDIO[self.found.audio_codec]
        return SUPPORTED_VIDEO[self.found.video_codec], audio

    async def prepare(self) -> list[str]:
        found = await probe(self.settings, self.probe_timeout, self.ffprobe)
        if found.skipped_audio is not None and (
            self.found is None or self.found.skipped_audio != found.skipped_audio
        ):
            log.warning(
                "ingest source=%s audio codec %s is not carried (only Opus, PCMA, PCMU): "
                "video only",
                self.source_id,
                found.skipped_audio,
            )
        self.found = found
        return pull_argv(self.settings, found, self.target, self.stall_seconds, self.ffmpeg)
