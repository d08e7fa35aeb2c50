"""Where a camera's media comes from: its directory attributes read as a ``SourceSpec``, and the
ffmpeg command that sends it as RTP into the switch's input ports.

Owns: reading ``attrs`` of a camera entry, the synthetic camera's picture (``testsrc2`` with the
camera's code and a clock burnt in, a solid colour patch in the top-left quarter of the picture
that tells cameras apart, a sine tone), the pre-encoded clip cache (a synthetic camera encoded
once to an MPEG-TS file and looped with ``-c copy``: live x264 costs ~0.1 core per camera) and the
RTSP pull command. It calls nothing but ffmpeg (as a subprocess, for clips).

Camera attributes understood (JSON ``attrs`` of a directory entry)::

    {"source": "synthetic", "width": 640, "height": 360, "fps": 25, "gop": 25,
     "color": "#e02020", "mode": "clip" | "live"}           # every key but "source" optional
    {"rtsp_url": "rtsp://user:pass@host/path", "rtsp_transport": "tcp" | "udp"}

The colour patch covers x, y in [0, width/4) x [0, height/4); its default colour is derived from
the camera code (``patch_color``), so every synthetic camera has its own.

Public: ``SourceSpec``, ``SyntheticSpec``, ``RtspSpec``, ``source_from_attrs``, ``patch_color``,
``ffmpeg_argv``, ``ensure_clip``, ``RtpPorts``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from vmesh.errors import ErrorList, FieldError, InvalidInput

log = logging.getLogger(__name__)

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")
CLIP_SECONDS = 10
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
# Saturated, well separated colours (they survive H.264 and the browser's YUV->RGB).
PALETTE = (
    "#e02020",
    "#20c020",
    "#2040e0",
    "#e0e020",
    "#e020e0",
    "#20e0e0",
    "#f08020",
    "#8020f0",
)


class RtpPorts(NamedTuple):
    """Switch input ports a source sends to (RTCP on the port after each)."""

    video: int
    audio: int | None


@dataclass(frozen=True)
class SyntheticSpec:
    code: str
    width: int = 640
    height: int = 360
    fps: int = 25
    gop: int = 25
    color: str = "#e02020"
    mode: Literal["clip", "live"] = "clip"
    kind: Literal["synthetic"] = "synthetic"

    @property
    def has_audio(self) -> bool:
        return True


@dataclass(frozen=True)
class RtspSpec:
    code: str
    url: str
    transport: Literal["tcp", "udp"] = "tcp"
    kind: Literal["rtsp"] = "rtsp"

    @property
    def has_audio(self) -> bool:
        return False

    @property
    def safe_url(self) -> str:
        """The URL without credentials, for logs and tile states."""
        u = urlsplit(self.url)
        host = u.hostname or ""
        if u.port:
            host += f":{u.port}"
        return f"{u.scheme}://{host}{u.path}"


SourceSpec = SyntheticSpec | RtspSpec


def patch_color(code: str) -> str:
    """The default colour patch of a synthetic camera: one of ``PALETTE``, by its code."""
    return PALETTE[int(hashlib.sha256(code.encode()).hexdigest(), 16) % len(PALETTE)]


def _int(attrs: dict[str, Any], key: str, lo: int, hi: int, default: int, errs: ErrorList) -> int:
    v = attrs.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        errs.add(FieldError(f"attrs.{key}", f"must be an integer {lo}-{hi}", str(v)))
        return default
    return v


def source_from_attrs(code: str, attrs: dict[str, Any]) -> SourceSpec:
    """The camera's source, or ``InvalidInput`` saying why it has none or which attribute is bad."""
    errs = ErrorList()
    if attrs.get("source") == "synthetic":
        width = _int(attrs, "width", 64, 1920, 640, errs)
        height = _int(attrs, "height", 64, 1080, 360, errs)
        if width % 2 or height % 2:
            errs.add(
                FieldError("attrs.width", "width and height must be even", f"{width}x{height}")
            )
        fps = _int(attrs, "fps", 1, 60, 25, errs)
        gop = _int(attrs, "gop", 1, 600, fps, errs)
        color = attrs.get("color", patch_color(code))
        if not isinstance(color, str) or not _COLOR.match(color):
            errs.add(FieldError("attrs.color", "must be #rrggbb", str(color)))
            color = patch_color(code)
        mode = attrs.get("mode", "clip")
        if mode not in ("clip", "live"):
            errs.add(FieldError("attrs.mode", "must be clip or live", str(mode)))
            mode = "clip"
        errs.raise_if_any(f"camera {code} has a bad synthetic source")
        return SyntheticSpec(code, width, height, fps, gop, color.lower(), mode)
    url = attrs.get("rtsp_url")
    if url is not None:
        u = urlsplit(str(url))
        if u.scheme not in ("rtsp", "rtsps") or not u.hostname:
            errs.add(FieldError("attrs.rtsp_url", "must be rtsp://host[:port]/path", str(url)))
        transport = attrs.get("rtsp_transport", "tcp")
        if transport not in ("tcp", "udp"):
            errs.add(FieldError("attrs.rtsp_transport", "must be tcp or udp", str(transport)))
        errs.raise_if_any(f"camera {code} has a bad RTSP source")
        return RtspSpec(code, str(url), transport)
    raise InvalidInput.one(
        "attrs",
        "this camera has no video source: set attrs.rtsp_url or attrs.source = synthetic",
        code,
    )


def _rtp_url(port: int) -> str:
    return f"rtp://127.0.0.1:{port}?pkt_size=1200&rtcpport={port + 1}&localaddr=127.0.0.1"


def _picture(spec: SyntheticSpec, live: bool) -> str:
    w, h = spec.width, spec.height
    clock = "%{localtime}" if live else "%{pts\\:hms}"
    size = max(12, h // 14)
    font = f"fontfile={FONT}:" if FONT.exists() else ""
    return (
        f"testsrc2=size={w}x{h}:rate={spec.fps},"
        f"drawbox=x=0:y=0:w={w // 4}:h={h // 4}:color={spec.color.replace('#', '0x')}@1:t=fill,"
        f"drawtext={font}text='{spec.code}':x={w // 4 + 8}:y=8:fontsize={size}:"
        f"fontcolor=white:box=1:boxcolor=black@0.6,"
        f"drawtext={font}text='{clock}':x={w // 4 + 8}:y={8 + size + 6}:fontsize={size}:"
        f"fontcolor=white:box=1:boxcolor=black@0.6,format=yuv420p"
    )


def _x264(spec: SyntheticSpec) -> list[str]:
    kbps = max(200, spec.width * spec.height * spec.fps // 10_000)
    return [
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        str(spec.gop),
        "-keyint_min",
        str(spec.gop),
        "-sc_threshold",
        "0",
        "-b:v",
        f"{kbps}k",
        "-maxrate",
        f"{kbps}k",
        "-bufsize",
        f"{kbps // 2}k",
    ]


def _tone() -> list[str]:
    return ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]


def clip_path(clip_dir: Path, spec: SyntheticSpec) -> Path:
    key = f"{spec.code}|{spec.width}|{spec.height}|{spec.fps}|{spec.gop}|{spec.color}|v1"
    return clip_dir / f"{spec.code}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.ts"


async def ensure_clip(clip_dir: Path, spec: SyntheticSpec, ffmpeg: str = "ffmpeg") -> Path:
    """Encode the camera's clip once (``CLIP_SECONDS`` long, H.264 + Opus in MPEG-TS); reuse it."""
    path = clip_path(clip_dir, spec)
    if path.exists():
        return path
    clip_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a local folder, once
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.ts")
    argv = [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        _picture(spec, live=False),
        *_tone(),
        "-t",
        str(CLIP_SECONDS),
        *_x264(spec),
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        "-ac",
        "1",
        "-f",
        "mpegts",
        str(tmp),
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise InvalidInput.one(
            "attrs", f"ffmpeg could not encode the synthetic clip: {err.decode()[-300:]}", spec.code
        )
    os.replace(tmp, path)
    log.info("media clip camera=%s path=%s", spec.code, path)
    return path


def ffmpeg_argv(
    spec: SourceSpec, ports: RtpPorts, *, clip: Path | None = None, ffmpeg: str = "ffmpeg"
) -> list[str]:
    """The ffmpeg command that sends ``spec`` as RTP to the switch input ``ports``."""
    head = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning"]
    outs: list[str] = []
    if isinstance(spec, RtspSpec):
        inputs = [
            "-rtsp_transport",
            spec.transport,
            "-timeout",
            "5000000",
            "-i",
            spec.url,
        ]
        outs = ["-map", "0:v:0", "-c:v", "copy", "-f", "rtp", _rtp_url(ports.video)]
        return head + inputs + outs
    if spec.mode == "clip":
        if clip is None:
            raise ValueError("clip mode needs the clip's path (ensure_clip)")
        inputs = ["-re", "-stream_loop", "-1", "-i", str(clip)]
        vcodec = ["-c:v", "copy"]
        acodec = ["-c:a", "copy"]
    else:
        inputs = ["-re", "-f", "lavfi", "-i", _picture(spec, live=True), *_tone()]
        vcodec = _x264(spec)
        acodec = ["-c:a", "libopus", "-b:a", "32k", "-ac", "1"]
    outs = ["-map", "0:v:0", *vcodec, "-f", "rtp", _rtp_url(ports.video)]
    if ports.audio is not None:
        amap = "0:a:0" if spec.mode == "clip" else "1:a:0"
        outs += ["-map", amap, *acodec, "-f", "rtp", _rtp_url(ports.audio)]
    return head + inputs + outs
