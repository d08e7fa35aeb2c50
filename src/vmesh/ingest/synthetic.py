"""Synthetic cameras: ffmpeg test pictures with a name, a clock, a colour patch and a tone.

Each camera is ffmpeg's ``testsrc2`` with, burnt in:

- **the colour patch**: a flat box in the **top-left corner**, a quarter of the width and a
  quarter of the height (``patch_rect``: ``[0, W/4) × [0, H/4)``, rounded down to even pixels; the
  same place the media service's interim sources used). Its colour is ``color`` if the spec
  sets one, else ``patch_colour(code)``: hue = the fractional part of (code as an integer × the
  golden ratio conjugate), computed exactly as ``(n × 0x9E3779B97F4A7C15 mod 2**64) / 2**64``
  × 360°, full saturation and value. Consecutive codes land ~137.5° apart on the colour wheel, so
  cameras next to each other in the directory are easy to tell apart (a browser samples the
  patch's centre);
- **the name** (bottom-left, white on a dark box), in Noto Sans CJK found with ``fc-match`` so
  Chinese names render (fallback DejaVu Sans, logged: Chinese then shows as boxes);
- **a clock** (top-right): the wall-clock time in live mode, the clip's own time in clip mode.

plus a sine tone of ``tone_frequency(code)`` Hz (220–1400 Hz, 20 Hz steps, same hashing), encoded as
Opus. Video is H.264 from libx264: constrained baseline, no B-frames, ``-tune zerolatency``,
keyframe every ``gop`` frames exactly (no scene-cut keyframes), SPS/PPS repeated before every
keyframe (a viewer joining late can decode from the switch's GOP cache). Video and audio leave as
two RTP streams (``-f rtp``; PT 96 / 111; the SSRCs of the ``RtpTarget``).

Two modes (DESIGN.md §4; CPU figures in docs/ingest.md):

- ``live``: encodes in real time (≈0.1 core per 720p25 camera).
- ``clip``: encodes a clip of ``clip_seconds`` (rounded up to whole GOPs) once per camera into
  ``<data_dir>/ingest/clips/`` (the file name carries a hash of everything that changes the
  picture, so a changed name or size makes a new clip; written to a temporary file and renamed into
  place), then loops it with ``-stream_loop -1 -re -c copy``: next to no CPU.

Public: ``SyntheticSpec``, ``SyntheticCamera``, ``ClipCache``, ``patch_colour``, ``patch_rect``,
``tone_frequency``, ``find_font``, ``video_filter``, ``live_argv``, ``clip_encode_argv``,
``clip_loop_argv``.
"""

from __future__ import annotations

import asyncio
import colorsys
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from vmesh.errors import InvalidInput
from vmesh.ingest.ffmpeg import PAYLOAD_TYPES, RtpTarget, filter_value, rtp_output
from vmesh.ingest.runner import DEFAULT_RETRY, FfmpegSource
from vmesh.ingest.status import Failure, FailureKind, IngestState, StatusCallback
from vmesh.node.supervisor import RestartPolicy

log = logging.getLogger(__name__)

CJK_FONT_FAMILY = "Noto Sans CJK SC"
FALLBACK_FONT_FAMILY = "DejaVu Sans"
CLIP_FORMAT_VERSION = 1  # bump when the picture or encoding of clips changes
_GOLDEN = 0x9E3779B97F4A7C15
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def _number(code: str) -> int:
    if code.isdigit():
        return int(code)
    return int.from_bytes(hashlib.sha256(code.encode()).digest()[:8], "big")


def _fraction(code: str, salt: int = 0) -> float:
    return (((_number(code) + salt) * _GOLDEN) % (1 << 64)) / (1 << 64)


def patch_colour(code: str) -> tuple[int, int, int]:
    """The RGB colour of camera ``code``'s patch (see the module docstring)."""
    r, g, b = colorsys.hsv_to_rgb(_fraction(code), 1.0, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def patch_hue(code: str) -> float:
    """The patch colour's hue in degrees (0–360)."""
    return _fraction(code) * 360.0


def patch_rect(width: int, height: int) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the colour patch in a ``width``×``height`` picture."""
    return 0, 0, (width // 4) & ~1, (height // 4) & ~1


def tone_frequency(code: str) -> int:
    """The tone of camera ``code`` in Hz: 220–1400 in steps of 20."""
    return 220 + 20 * math.floor(_fraction(code, salt=1) * 60)


@lru_cache(maxsize=1)
def find_font() -> Path | None:
    """A font file with CJK glyphs (``fc-match``), else DejaVu Sans, else None (logged)."""
    for family in (CJK_FONT_FAMILY, FALLBACK_FONT_FAMILY):
        try:
            out = subprocess.run(
                ["fc-match", "-f", "%{file}", family],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        # fc-match always answers with *some* font: accept it only if it is the family asked for.
        if out and Path(out).is_file():
            stem = Path(out).name.lower()
            if family == CJK_FONT_FAMILY and "cjk" not in stem:
                continue
            if family == FALLBACK_FONT_FAMILY:
                log.warning(
                    "no CJK font (%s) found: camera names use %s, Chinese shows as boxes; "
                    "install the Debian package fonts-noto-cjk",
                    CJK_FONT_FAMILY,
                    out,
                )
            return Path(out)
    for p in (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ):
        if Path(p).is_file():
            return Path(p)
    log.warning("no font found for camera names (fc-match failed); pictures carry no text")
    return None


_ATTR_TYPES: dict[str, type | tuple[type, ...]] = {
    "width": int, "height": int, "fps": int, "gop": int, "bitrate_kbps": int, "audio": bool,
    "mode": str, "clip_seconds": (int, float), "color": str, "colors": list,
    "color_seconds": (int, float),
}  # fmt: skip


@dataclass(frozen=True)
class SyntheticSpec:
    """One synthetic camera. ``code`` decides colour and tone; ``name`` is burnt in."""

    code: str
    name: str
    width: int = 1280
    height: int = 720
    fps: int = 25
    gop: int = 50
    bitrate_kbps: int | None = None
    """Video bitrate; None: x264's default quality (CRF 23)."""
    audio: bool = True
    mode: Literal["live", "clip"] = "live"
    clip_seconds: float = 10.0
    color: str | None = None
    """``#rrggbb`` for the patch; None: ``patch_colour(code)``."""
    colors: tuple[str, ...] | None = None
    """A patch that changes: ``colors[i]`` during the i-th ``color_seconds`` of every cycle, the
    cycle anchored to Unix time in live mode (``floor(unix / color_seconds) mod len``) and to the
    clip's time in clip mode (recording tests seek by colour)."""
    color_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not self.code:
            raise InvalidInput.one("code", "must not be empty")
        if not self.name.strip():
            raise InvalidInput.one("name", "must not be empty")
        for field, v, lo, hi in (
            ("width", self.width, 16, 3840),
            ("height", self.height, 16, 2160),
            ("fps", self.fps, 1, 60),
            ("gop", self.gop, 1, 600),
        ):
            if not lo <= v <= hi:
                raise InvalidInput.one(field, f"must be between {lo} and {hi}", v)
        if self.width % 2 or self.height % 2:
            raise InvalidInput.one("width", "width and height must be even (YUV 4:2:0)")
        if self.bitrate_kbps is not None and not 16 <= self.bitrate_kbps <= 50_000:
            raise InvalidInput.one(
                "bitrate_kbps", "must be between 16 and 50000", self.bitrate_kbps
            )
        if self.mode not in ("live", "clip"):
            raise InvalidInput.one("mode", "must be live or clip", self.mode)
        if not 1 <= self.clip_seconds <= 600:
            raise InvalidInput.one("clip_seconds", "must be between 1 and 600", self.clip_seconds)
        if self.color is not None and not _HEX.match(self.color):
            raise InvalidInput.one("color", "must be #rrggbb", self.color)
        if self.colors is not None and (
            not self.colors or not all(isinstance(c, str) and _HEX.match(c) for c in self.colors)
        ):
            raise InvalidInput.one("colors", "must be a non-empty list of #rrggbb", self.colors)
        if not 0.5 <= self.color_seconds <= 86400:
            raise InvalidInput.one(
                "color_seconds", "must be between 0.5 and 86400", self.color_seconds
            )

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The patch colour this camera shows."""
        if self.color is None:
            return patch_colour(self.code)
        v = int(self.color[1:], 16)
        return v >> 16, (v >> 8) & 0xFF, v & 0xFF

    @classmethod
    def from_attrs(cls, code: str, name: str, attrs: Mapping[str, Any]) -> SyntheticSpec:
        """A spec from a directory entry's ``attrs`` (keys ``width``, ``height``, ``fps``,
        ``gop``, ``bitrate_kbps``, ``audio``, ``mode``, ``clip_seconds``, ``color``; all optional).

        Errors name the field as ``attrs.<key>``."""
        known = set(_ATTR_TYPES)
        kwargs: dict[str, Any] = {}
        for key in known & set(attrs):
            value = attrs[key]
            if value is None:
                continue
            want = _ATTR_TYPES[key]
            if (isinstance(value, bool) and want is not bool) or not isinstance(value, want):
                raise InvalidInput.one(f"attrs.{key}", "has the wrong type", value)
            kwargs[key] = tuple(value) if key == "colors" else value
        try:
            return cls(code=code, name=name, **kwargs)
        except InvalidInput as e:
            errs = e.errors or []
            if errs and errs[0].field in known:
                raise InvalidInput.one(
                    f"attrs.{errs[0].field}", errs[0].reason, errs[0].value
                ) from None
            raise

    @property
    def clip_frames(self) -> int:
        """Frames in the clip: ``clip_seconds`` rounded up to whole GOPs (loops start on a key)."""
        return math.ceil(self.clip_seconds * self.fps / self.gop) * self.gop


def video_filter(
    spec: SyntheticSpec, font: Path | None, name_file: Path, clock: str, offset: float = 0.0
) -> str:
    """The lavfi source graph: testsrc2, colour patch, clock and name (``offset``: added to the
    picture's time for a changing patch, ``spec.colors``)."""
    w, h = spec.width, spec.height
    px, py, pw, ph = patch_rect(w, h)
    r, g, b = spec.rgb
    size = max(h // 14, 10)
    parts = [
        f"testsrc2=size={w}x{h}:rate={spec.fps}",
        f"drawbox=x={px}:y={py}:w={pw}:h={ph}:color=0x{r:02X}{g:02X}{b:02X}:t=fill",
    ]
    for i, c in enumerate(spec.colors or ()):
        n, k = spec.color_seconds, len(spec.colors or ())
        when = filter_value(f"eq(mod(floor((t+{offset:.3f})/{n:g}),{k}),{i})")
        parts.append(
            f"drawbox=x={px}:y={py}:w={pw}:h={ph}:color=0x{c[1:].upper()}:t=fill:enable={when}"
        )
    if font is not None:
        common = (
            f"fontfile={filter_value(str(font))}:fontsize={size}:fontcolor=white"
            f":box=1:boxcolor=black@0.6:boxborderw={max(size // 5, 2)}"
        )
        parts.append(
            f"drawtext={common}:x=w-tw-{size // 2}:y={size // 2}:text={filter_value(clock)}"
        )
        parts.append(
            f"drawtext={common}:x={size // 2}:y=h-th-{size // 2}"
            f":expansion=none:textfile={filter_value(str(name_file))}"
        )
    return ",".join(parts)


def _x264(spec: SyntheticSpec) -> list[str]:
    args = [
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-bf", "0",
        "-g", str(spec.gop), "-keyint_min", str(spec.gop), "-sc_threshold", "0",
        "-x264-params", "repeat-headers=1",
    ]  # fmt: skip
    if spec.bitrate_kbps is not None:
        k = spec.bitrate_kbps
        args += ["-b:v", f"{k}k", "-maxrate", f"{k}k", "-bufsize", f"{k}k"]
    return args


_OPUS = ["-c:a", "libopus", "-b:a", "32k", "-ar", "48000", "-ac", "1", "-application", "lowdelay"]
_HEAD = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning"]


def live_argv(
    spec: SyntheticSpec,
    target: RtpTarget,
    font: Path | None,
    name_file: Path,
    ffmpeg: str = "ffmpeg",
) -> list[str]:
    """ffmpeg encoding the camera live into RTP (wall-clock time burnt in)."""
    argv = [ffmpeg, *_HEAD, "-re", "-f", "lavfi", "-i",
            video_filter(spec, font, name_file, "%{localtime:%X}", time.time())]  # fmt: skip
    if spec.audio:
        argv += ["-re", "-f", "lavfi", "-i",
                 f"sine=frequency={tone_frequency(spec.code)}:sample_rate=48000"]  # fmt: skip
    argv += ["-map", "0:v", "-an", *_x264(spec)]
    argv += rtp_output(target.host, target.video_port, target.video_ssrc, PAYLOAD_TYPES["h264"])
    if spec.audio and target.audio_port is not None:
        argv += ["-map", "1:a", "-vn", *_OPUS]
        argv += rtp_output(target.host, target.audio_port, target.audio_ssrc, PAYLOAD_TYPES["opus"])
    return argv


def clip_encode_argv(
    spec: SyntheticSpec, font: Path | None, name_file: Path, out: Path, ffmpeg: str = "ffmpeg"
) -> list[str]:
    """ffmpeg encoding the camera's clip once (clip time burnt in) into a Matroska file."""
    frames = spec.clip_frames
    seconds = frames / spec.fps
    argv = [ffmpeg, *_HEAD, "-y", "-f", "lavfi", "-i",
            video_filter(spec, font, name_file, "%{pts:hms}")]  # fmt: skip
    if spec.audio:
        argv += ["-f", "lavfi", "-i",
                 f"sine=frequency={tone_frequency(spec.code)}:sample_rate=48000"]  # fmt: skip
    argv += ["-map", "0:v", "-frames:v", str(frames), *_x264(spec)]
    if spec.audio:
        argv += ["-map", "1:a", *_OPUS, "-t", f"{seconds:.3f}"]
    argv += ["-f", "matroska", str(out)]
    return argv


def clip_loop_argv(
    spec: SyntheticSpec, clip: Path, target: RtpTarget, ffmpeg: str = "ffmpeg"
) -> list[str]:
    """ffmpeg looping the clip into RTP without re-encoding."""
    argv = [ffmpeg, *_HEAD, "-stream_loop", "-1", "-re", "-i", str(clip)]
    argv += ["-map", "0:v:0", "-an", "-c", "copy"]
    argv += rtp_output(target.host, target.video_port, target.video_ssrc, PAYLOAD_TYPES["h264"])
    if spec.audio and target.audio_port is not None:
        argv += ["-map", "0:a:0", "-vn", "-c", "copy"]
        argv += rtp_output(target.host, target.audio_port, target.audio_ssrc, PAYLOAD_TYPES["opus"])
    return argv


class ClipCache:
    """Pre-encoded clips in one folder, one per camera picture (see the module docstring)."""

    def __init__(self, folder: Path, ffmpeg: str = "ffmpeg") -> None:
        self.folder = folder
        self.ffmpeg = ffmpeg
        self.encoded: list[Path] = []
        """Clips this cache encoded (as opposed to found), in order."""
        self._locks: dict[Path, asyncio.Lock] = {}

    def path_for(self, spec: SyntheticSpec, font: Path | None) -> Path:
        key = {
            "v": CLIP_FORMAT_VERSION,
            "font": str(font),
            **{k: v for k, v in asdict(spec).items() if k not in ("mode",)},
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() else "_" for c in spec.code)[:40]
        return self.folder / f"{safe}-{digest}.mkv"

    async def ensure(self, spec: SyntheticSpec, font: Path | None, name_file: Path) -> Path:
        """The clip's path, encoding it first if it is not cached. Raises ``Failure``."""
        path = self.path_for(spec, font)
        lock = self._locks.setdefault(path, asyncio.Lock())
        async with lock:
            if path.is_file():
                return path
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            argv = clip_encode_argv(spec, font, name_file, tmp, self.ffmpeg)
            log.info("ingest clip encode code=%s path=%s", spec.code, path)
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                _, err = await proc.communicate()
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                tmp.unlink(missing_ok=True)
                raise
            if proc.returncode != 0 or not tmp.is_file():
                tmp.unlink(missing_ok=True)
                last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise Failure(FailureKind.FFMPEG, f"clip encoding failed: {last[0][:200]}")
            os.replace(tmp, path)
            self.encoded.append(path)
            return path


class SyntheticCamera(FfmpegSource):
    """A synthetic camera sending RTP to ``target``; state ``starting`` → ``sending`` (or
    ``error`` with the reason, retried with back-off)."""

    initial_state = IngestState.STARTING

    def __init__(
        self,
        spec: SyntheticSpec,
        target: RtpTarget,
        *,
        data_dir: Path,
        clips: ClipCache | None = None,
        ffmpeg: str | None = None,
        on_status: StatusCallback | None = None,
        stall_seconds: float = 5.0,
        retry: RestartPolicy = DEFAULT_RETRY,
    ) -> None:
        super().__init__(
            spec.code,
            log_dir=data_dir / "logs",
            on_status=on_status,
            retry=retry,
            stall_seconds=stall_seconds,
            start_timeout=30.0,
        )
        self.spec = spec
        self.target = target
        self.ffmpeg = ffmpeg or shutil.which("ffmpeg") or "ffmpeg"
        self.clips = clips or ClipCache(data_dir / "ingest" / "clips", self.ffmpeg)
        self.text_dir = data_dir / "ingest" / "text"

    def stream_codecs(self) -> tuple[str | None, str | None]:
        has_audio = self.spec.audio and self.target.audio_port is not None
        return "h264", "opus" if has_audio else None

    def _name_file(self) -> Path:
        self.text_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(self.spec.name.encode()).hexdigest()[:16]
        path = self.text_dir / f"{digest}.txt"
        if not path.is_file():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(self.spec.name, encoding="utf-8")
            os.replace(tmp, path)
        return path

    async def prepare(self) -> list[str]:
        font = find_font()
        name_file = self._name_file()
        if self.spec.mode == "live":
            return live_argv(self.spec, self.target, font, name_file, self.ffmpeg)
        clip = await self.clips.ensure(self.spec, font, name_file)
        return clip_loop_argv(self.spec, clip, self.target, self.ffmpeg)
