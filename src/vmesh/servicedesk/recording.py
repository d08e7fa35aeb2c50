"""Recording a service-desk call at the serving node: both sides, from the switch, into one MP4.

``CallRecording`` adds four switch outputs (``servicedesk-<case number>/{kiosk,agent}/{video,
audio}``) towards loopback ports and runs ffmpeg ``-c copy`` into MP4 under a
``SupervisedProcess`` — the SDP, command line, supervision and re-routing of camera recording and
of the conference programme (``vmesh.recording.recorder``: ``segmenter_process``,
``reroute_on_listen``, ``stop_segmenter``). Each file holds the kiosk's video and audio and the
agent's (streams 0-1 and 2-3, the order of ``SIDES``).

Where the two sides come from is the caller's: ``inputs()`` answers, for each of the four
streams, the switch input carrying it now (a browser publication here: ``<code>/video`` and
``<code>/audio``; a kiosk of another node: the fabric's input), or None while it does not exist.
ffmpeg is started once both sides' video inputs carry packets (it needs every stream's parameters
to write MP4); until then, and whenever an input appears anew (a page that published again), the
outputs are routed from what ``inputs()`` answers, every ``WATCH`` s. A new ffmpeg gets the GOPs
replayed (its first frames are keyframes). Stopping closes the file.

Files: ``<folder>/<YYYYmmddTHHMMSS>.mp4`` (segments of ``SEGMENT_SECONDS``; a call normally fits
one); ``files()`` lists the complete ones.

Public: ``CallRecording``, ``SIDES``, ``RECORDING_NAME``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Callable
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

SIDES = ("kiosk", "agent")
KINDS = ((("video", Codec.h264, 96)), ("audio", Codec.opus, 111))
SEGMENT_SECONDS = 1800.0
WATCH = 0.25
RECORDING_NAME = re.compile(r"^\d{8}T\d{6}\.mp4$")

Inputs = Callable[[], dict[str, str | None]]
"""``{"kiosk/video": input id or None, "kiosk/audio": …, "agent/video": …, "agent/audio": …}``"""


class CallRecording:
    """See the module docstring."""

    def __init__(self, number: str, media: MediaService, folder: Path, inputs: Inputs) -> None:
        self.number = number
        self.media = media
        self.folder = folder
        self.inputs = inputs
        self.streams: list[Stream] = []
        self.keys: dict[str, str] = {}  # output id -> "kiosk/video" …
        self.routed: dict[str, str | None] = {}  # output id -> input id routed into it
        self.process: SupervisedProcess | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, hold: Awaitable[None] | None = None) -> None:
        """Add the outputs and wait (in the background) for both sides before running ffmpeg;
        ``hold``: what brings a side here (run in the background, cancelled by ``stop``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        ports = _udp_pairs(len(SIDES) * len(KINDS))
        try:
            for n, (side, (kind, codec, pt)) in enumerate((s, k) for s in SIDES for k in KINDS):
                out_id = f"servicedesk-{self.number}/{side}/{kind}"
                await self.media.transport.add_output(
                    OutputSpec(
                        out_id,
                        codec,
                        ssrc=random.getrandbits(31) + 1,
                        dest=("127.0.0.1", ports[n]),
                        payload_type=pt,
                    )
                )
                self.streams.append(Stream(out_id, "", codec, ports[n]))
                self.keys[out_id] = f"{side}/{kind}"
                self.routed[out_id] = None
        except BaseException:
            await self.stop()
            raise
        if hold is not None:
            self._tasks.append(asyncio.ensure_future(hold))
        self._tasks.append(asyncio.create_task(self._run(), name=f"sd-record-{self.number}"))

    def _sync(self) -> bool:
        """Route each output from its side's current input; whether both videos carry packets."""
        want = self.inputs()
        inputs = self.media.transport.switch.snapshot().inputs
        for st in self.streams:
            src = want.get(self.keys[st.output_id])
            if src is not None and src not in inputs:
                src = None
            if src != self.routed[st.output_id]:
                self.routed[st.output_id] = src
                self._route(st.output_id, src)
        return all(
            (i := want.get(f"{side}/video")) is not None and i in inputs and inputs[i].packets > 0
            for side in SIDES
        )

    def _route(self, output_id: str, src: str | None) -> None:
        t = self.media.transport
        with contextlib.suppress(Exception):
            if src is None:
                t.unroute(output_id)
            else:
                t.route(output_id, src)

    async def _run(self) -> None:
        while True:  # polled: the switch has no event for "an input carries packets"
            if self._sync():
                break
            await asyncio.sleep(WATCH)
        self.process = segmenter_process(
            f"servicedesk-{self.number}",
            self.streams,
            self.folder / "call.sdp",
            self.folder,
            SEGMENT_SECONDS,
            self.media.ffmpeg,
            self.folder / "recorder.log",
        )
        await self.process.start()
        log.info("case=%s call recording to %s", self.number, self.folder)

        def reroute(pid: int) -> None:  # a new ffmpeg: the GOPs replayed to it
            for st in self.streams:
                src = self.routed.get(st.output_id)
                self._route(st.output_id, None)
                self._route(st.output_id, src)

        self._tasks.append(
            asyncio.create_task(
                reroute_on_listen(lambda: self.process, self.streams, reroute, 0.1),
                name=f"sd-record-route-{self.number}",
            )
        )
        while True:
            await asyncio.sleep(WATCH)
            self._sync()

    def files(self) -> list[Path]:
        """The complete recordings of the case, oldest first."""
        try:
            found = sorted(p for p in self.folder.iterdir() if RECORDING_NAME.match(p.name))
        except FileNotFoundError:
            return []
        return found[:-1] if self.process is not None else found

    async def stop(self) -> None:
        """Stop ffmpeg (it closes the file) and release the outputs."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await stop_segmenter(None, self.process, self.media.transport, self.streams)
        self.process = None
        log.info("case=%s call recording stopped", self.number)
