"""One camera's recorder: a switch output into ffmpeg ``-c copy`` writing short MP4 segments.

The recorder holds the camera's source in the media service as a viewer does
(``MediaService.hold`` under ``RECORDING_HOLDER``; the source lingers out after ``unhold``), adds a
switch output per stream of the camera (video, and its audio when it has some) to a pair of free
loopback UDP ports, writes an SDP file describing them and runs::

    ffmpeg -protocol_whitelist file,udp,rtp -f sdp -i <camera>.sdp -map 0 -c copy
           -f segment -segment_time <s> -segment_format mp4 -reset_timestamps 1 -strftime 1
           <folder>/<camera>/.incoming/%Y%m%dT%H%M%S.mp4

under a ``SupervisedProcess``: restarted with back-off (1 s growing to 30 s, never giving up) when
it exits, or when no segment file has grown for ``stall_seconds`` (no signal: that time is a gap
in the timeline). Each time a new ffmpeg is seen listening the output is re-routed, so the switch
replays the camera's GOP and the first segment starts on a keyframe.

``collect()`` (called by the service every second) indexes every file of ``.incoming`` except the
newest one, which ffmpeg is still writing (``vmesh.recording.index.finalize``).

Public: ``Recorder``, ``RECORDING_HOLDER``, ``sdp_text``, ``ffmpeg_argv``; ``segmenter_process``,
``reroute_on_listen`` and ``stop_segmenter`` (also the conference programme's recorder,
vmesh.conference.programme).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmesh.node.supervisor import ProcessSpec, ProcessState, RestartPolicy, SupervisedProcess
from vmesh.recording.index import INCOMING, finalize
from vmesh.storage.db import Database
from vmesh.switch.codecs import Codec
from vmesh.switch.core import OutputSpec

if TYPE_CHECKING:
    from vmesh.media.service import MediaService
    from vmesh.media.sources import SourceSpec

log = logging.getLogger(__name__)

RECORDING_HOLDER = -2
"""The pseudo channel index under which the recorder holds a camera's source."""

RECORDER_RESTART = RestartPolicy(initial_delay=1.0, max_delay=30.0, max_failures=10**9, window=600)

_RTPMAP = {Codec.h264: ("video", "H264/90000", 96), Codec.h265: ("video", "H265/90000", 96),
           Codec.opus: ("audio", "opus/48000/2", 111)}  # fmt: skip


@dataclass(frozen=True)
class Stream:
    output_id: str
    input_id: str
    codec: Codec
    port: int


def sdp_text(streams: list[Stream]) -> str:
    """An SDP ffmpeg reads to receive ``streams`` on loopback."""
    lines = ["v=0", "o=- 0 0 IN IP4 127.0.0.1", "s=vmesh recording", "c=IN IP4 127.0.0.1",
             "t=0 0"]  # fmt: skip
    for st in streams:
        kind, rtpmap, pt = _RTPMAP[st.codec]
        lines += [f"m={kind} {st.port} RTP/AVP {pt}", f"a=rtpmap:{pt} {rtpmap}"]
        if st.codec is Codec.h264:
            lines.append(f"a=fmtp:{pt} packetization-mode=1")
    return "\r\n".join(lines) + "\r\n"


def ffmpeg_argv(
    sdp: Path, incoming: Path, segment_seconds: float, ffmpeg: str = "ffmpeg"
) -> list[str]:
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
        "-protocol_whitelist", "file,udp,rtp", "-fflags", "+genpts",
        "-f", "sdp", "-i", str(sdp),
        "-map", "0", "-c", "copy", "-strict", "experimental",
        "-f", "segment", "-segment_time", f"{segment_seconds:g}", "-segment_format", "mp4",
        "-reset_timestamps", "1", "-strftime", "1",
        str(incoming / "%Y%m%dT%H%M%S.mp4"),
    ]  # fmt: skip


def _udp_pairs(count: int) -> list[int]:
    """``count`` even UDP ports, each free together with the next one (RTP + RTCP)."""
    out: list[int] = []
    while len(out) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1] & ~1
        if port in out or port < 1024:
            continue
        ok = True
        for p in (port, port + 1):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as t:
                try:
                    t.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            out.append(port)
    return out


def segmenter_process(
    name: str,
    streams: list[Stream],
    sdp: Path,
    out: Path,
    segment_seconds: float,
    ffmpeg: str,
    log_path: Path,
    **spec: Any,
) -> SupervisedProcess:
    """Write the SDP of ``streams`` to ``sdp`` and return (not started) the supervised ffmpeg
    that segments them into ``out`` (``ffmpeg_argv``; restarted with back-off, never giving up).
    ``spec``: further ``ProcessSpec`` fields (a health check, a start timeout)."""
    sdp.write_text(sdp_text(streams), encoding="utf-8")
    return SupervisedProcess(
        ProcessSpec(
            name=name,
            argv=ffmpeg_argv(sdp, out, segment_seconds, ffmpeg),
            log_path=log_path,
            max_log_bytes=2 * 1024 * 1024,
            restart=RECORDER_RESTART,
            stop_timeout=5.0,
            **spec,
        )
    )


def _bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


async def reroute_on_listen(
    process: Callable[[], SupervisedProcess | None],
    streams: list[Stream],
    reroute: Callable[[int], None],
    interval: float,
) -> None:
    """Call ``reroute(pid)`` each time a new ffmpeg (a new pid of ``process()``) listens on every
    stream's port, so that the switch replays the GOP to it; return once ``process()`` is None."""
    seen: int | None = None
    while True:
        await asyncio.sleep(interval)
        proc = process()
        if proc is None:
            return
        pid = proc.pid
        if pid is None or pid == seen or not streams:
            continue
        if not all(_bound(st.port) for st in streams):
            continue
        seen = pid
        reroute(pid)


async def stop_segmenter(
    watch: asyncio.Task[None] | None,
    process: SupervisedProcess | None,
    transport: Any,
    streams: list[Stream],
) -> None:
    """End a segmenter: its re-routing ``watch``, its ffmpeg (which closes its segment), and the
    switch outputs of its ``streams`` (the list is emptied)."""
    if watch is not None:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    if process is not None:
        await process.stop()
    for st in streams:
        with contextlib.suppress(Exception):
            transport.remove_output(st.output_id)
    streams.clear()


class Recorder:
    """See the module docstring."""

    def __init__(
        self,
        code: str,
        spec: SourceSpec,
        media: MediaService,
        db: Database,
        folder: Path,
        *,
        segment_seconds: float,
        stall_seconds: float,
        ffmpeg: str = "ffmpeg",
        ffprobe: str = "ffprobe",
    ) -> None:
        self.code = code
        self.spec = spec
        self.media = media
        self.db = db
        self.folder = folder
        self.segment_seconds = segment_seconds
        self.stall_seconds = stall_seconds
        self.ffmpeg = ffmpeg
        self.ffprobe = ffprobe
        self.incoming = folder / code / INCOMING
        self.streams: list[Stream] = []
        self.process: SupervisedProcess | None = None
        self._watch: asyncio.Task[None] | None = None
        self._collecting = asyncio.Lock()
        self.started_at = 0.0
        self._held = False
        self.segments = 0

    async def start(self) -> None:
        self.incoming.mkdir(parents=True, exist_ok=True)
        video_input = await self.media.hold(self.code, self.spec, RECORDING_HOLDER)
        self._held = True
        try:
            inputs = self.media.transport.switch.snapshot().inputs
            wanted = [video_input]
            src = self.media.sources.get(self.code)
            audio = getattr(src, "audio_input", None) if src is not None else None
            if audio is not None and audio in inputs:
                wanted.append(audio)
            ports = _udp_pairs(len(wanted))
            for input_id, port in zip(wanted, ports, strict=True):
                codec = inputs[input_id].codec
                out_id = f"record/{self.code}/{_RTPMAP[codec][0]}"
                await self.media.transport.add_output(
                    OutputSpec(
                        out_id, codec, ssrc=random.getrandbits(32), dest=("127.0.0.1", port),
                        payload_type=_RTPMAP[codec][2],
                    )
                )  # fmt: skip
                self.streams.append(Stream(out_id, input_id, codec, port))
            self.process = segmenter_process(
                f"record-{self.code}",
                self.streams,
                self.folder / self.code / "recorder.sdp",
                self.incoming,
                self.segment_seconds,
                self.ffmpeg,
                self.folder / self.code / "recorder.log",
                health=self._health,
                health_interval=1.0,
                health_failures=1,
                start_timeout=self.stall_seconds + self.segment_seconds + 5,
            )
            await self.process.start()
        except BaseException:
            await self.stop()
            raise
        self.started_at = time.time()
        self._watch = asyncio.create_task(self._route_on_start(), name=f"record-route-{self.code}")
        log.info("recording camera=%s started streams=%d", self.code, len(self.streams))

    async def _health(self) -> str | None:
        """Healthy while a segment file grew within ``stall_seconds`` (else: no signal)."""
        files = self._files()
        if files:
            age = time.time() - files[-1].stat().st_mtime
            if age <= self.stall_seconds:
                return None
            raise RuntimeError(f"no video written for {age:.0f} s (no signal)")
        raise RuntimeError("no segment written yet (no signal)")

    async def _route_on_start(self) -> None:
        """Re-route the outputs whenever a new ffmpeg listens: the GOP is replayed to it."""

        def reroute(pid: int) -> None:
            for st in self.streams:
                with contextlib.suppress(Exception):
                    self.media.transport.unroute(st.output_id)
                    self.media.transport.route(st.output_id, st.input_id)
            log.info("recording camera=%s ffmpeg pid=%d routed", self.code, pid)

        await reroute_on_listen(lambda: self.process, self.streams, reroute, 0.1)

    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self.incoming.iterdir() if p.suffix == ".mp4")
        except FileNotFoundError:
            return []

    async def collect(self, *, all_files: bool = False) -> int:
        """Index the complete segments (all but the newest unless ``all_files``)."""
        async with self._collecting:
            files = self._files()
            done = files if all_files else files[:-1]
            n = 0
            for f in done:
                if await finalize(self.db, self.folder, self.code, f, self.ffprobe) is not None:
                    n += 1
            self.segments += n
            return n

    @property
    def state(self) -> str:
        if self.process is None:
            return "stopped"
        st = self.process.status.state
        return "recording" if st is ProcessState.RUNNING else str(st)

    async def stop(self) -> None:
        """Stop ffmpeg (it closes its segment), index what it wrote, release outputs and source."""
        await stop_segmenter(self._watch, self.process, self.media.transport, self.streams)
        self._watch = None
        if self._held:
            self._held = False
            self.media.unhold(self.code, RECORDING_HOLDER)
        self.process = None
        with contextlib.suppress(Exception):
            await self.collect(all_files=True)
        log.info("recording camera=%s stopped", self.code)
