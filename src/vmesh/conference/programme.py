"""Recording a conference's programme: what the venues see and hear, from the switch into MP4.

``ProgrammeRecorder`` adds two switch outputs (``conference-<id>/programme/video``, H.264, and
``…/audio``, Opus) towards a pair of loopback ports, and runs ffmpeg ``-c copy`` into segmented MP4
(``vmesh.recording.recorder``'s SDP and command line, shared with camera recording) under a
``SupervisedProcess`` (restarted with back-off). The conference routes the programme: the
featured venue's picture and the audio of the speaker (else the main venue) — one audio stream,
there is no mixer. Whenever a new ffmpeg listens, the outputs are routed again so that the switch
replays the GOP and a segment starts on a keyframe. Files: ``<folder>/<YYYYmmddTHHMMSS>.mp4``;
the newest is still being written while the recorder runs.

Public: ``ProgrammeRecorder``, ``SEGMENT_NAME``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING

from vmesh.node.supervisor import SupervisedProcess
from vmesh.recording.recorder import (
    Stream,
    _udp_pairs,
    reroute_on_listen,
    segmenter_process,
    stop_segmenter,
)
from vmesh.switch.codecs import Codec
from vmesh.switch.core import OutputSpec

if TYPE_CHECKING:
    from vmesh.media.service import MediaService

log = logging.getLogger(__name__)

SEGMENT_SECONDS = 10.0
SEGMENT_NAME = re.compile(r"^\d{8}T\d{6}\.mp4$")


class ProgrammeRecorder:
    def __init__(self, conf_id: int, media: MediaService, folder: Path) -> None:
        self.conf_id = conf_id
        self.media = media
        self.folder = folder
        self.streams: list[Stream] = []
        self.sources: dict[str, str | None] = {}  # output id -> input id routed into it
        self.process: SupervisedProcess | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        video, audio = _udp_pairs(2)
        base = f"conference-{self.conf_id}/programme"
        try:
            for out_id, codec, port, pt in (
                (f"{base}/video", Codec.h264, video, 96),
                (f"{base}/audio", Codec.opus, audio, 111),
            ):
                await self.media.transport.add_output(
                    OutputSpec(
                        out_id,
                        codec,
                        ssrc=random.getrandbits(31) + 1,
                        dest=("127.0.0.1", port),
                        payload_type=pt,
                    )
                )
                self.streams.append(Stream(out_id, "", codec, port))
                self.sources[out_id] = None
            self.process = segmenter_process(
                f"programme-{self.conf_id}",
                self.streams,
                self.folder / "programme.sdp",
                self.folder,
                SEGMENT_SECONDS,
                self.media.ffmpeg,
                self.folder / "recorder.log",
            )
            await self.process.start()
        except BaseException:
            await self.stop()
            raise
        self._watch = asyncio.create_task(self._route_on_start(), name=f"programme-{self.conf_id}")
        log.info("conference=%d programme recording to %s", self.conf_id, self.folder)

    def route(self, video_input: str | None, audio_input: str | None) -> None:
        """Feed the programme from these switch inputs (None: nothing)."""
        for st, src in zip(self.streams, (video_input, audio_input), strict=True):
            if self.sources.get(st.output_id) == src:
                continue
            self.sources[st.output_id] = src
            self._route(st.output_id, src)

    def _route(self, output_id: str, src: str | None) -> None:
        t = self.media.transport
        with contextlib.suppress(Exception):
            if src is None:
                t.unroute(output_id)
            else:
                t.route(output_id, src)

    async def _route_on_start(self) -> None:
        def reroute(pid: int) -> None:
            for st in self.streams:
                src = self.sources.get(st.output_id)
                self._route(st.output_id, None)
                self._route(st.output_id, src)

        await reroute_on_listen(lambda: self.process, self.streams, reroute, 0.2)

    def segments(self) -> list[tuple[Path, bool]]:
        """Every segment file, oldest first, and whether it is complete."""
        try:
            files = sorted(p for p in self.folder.iterdir() if SEGMENT_NAME.match(p.name))
        except FileNotFoundError:
            return []
        running = self.process is not None
        return [(f, not (running and i == len(files) - 1)) for i, f in enumerate(files)]

    async def stop(self) -> None:
        await stop_segmenter(self._watch, self.process, self.media.transport, self.streams)
        self._watch = None
        self.process = None
        log.info("conference=%d programme recording stopped", self.conf_id)
