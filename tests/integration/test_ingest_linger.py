"""A viewer who comes back while a camera's source is stopping after its linger gets the camera.

The media service stops an unwatched camera's source (its ffmpeg) after ``source_linger_seconds``.
A viewer who asked for the camera while that ffmpeg was still exiting (a busy machine: it once
took long enough for a CI run's wall tile to show "input '…/video' already exists") must get a
new source once the old one is gone (the camera's lock orders the two), not an error.

A real synthetic camera (ffmpeg) into the media service's real switch transport; only the old
process's exit is made slow, by delaying its ``stop``.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from peers.rtp import wait_until
from vmesh.config import MediaConfig
from vmesh.ingest.synthetic import SyntheticSpec
from vmesh.media.service import MediaService

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]

CODE = "33010600001310000007"


async def test_a_camera_asked_for_while_its_source_stops_starts_anew(tmp_path: Path) -> None:
    media = MediaService(
        MediaConfig(source_linger_seconds=0.2, input_port_range=(38500, 38599)), tmp_path / "m"
    )
    spec = SyntheticSpec(CODE, "停止中 再观看", width=320, height=240, gop=25, mode="clip",
                         clip_seconds=2)  # fmt: skip
    await media.transport.start()
    try:
        video = await media.hold(CODE, spec, holder=1)

        def packets(input_id: str) -> int:
            st = media.transport.switch.snapshot().inputs.get(input_id)
            return 0 if st is None else st.packets

        await wait_until(lambda: packets(video) > 0, "the camera's video in the switch")
        old = media.sources[CODE]
        assert old.camera is not None
        stopping, slow_stop = asyncio.Event(), old.camera.stop

        async def stop_slowly() -> None:
            stopping.set()
            await asyncio.sleep(1.0)
            await slow_stop()

        old.camera.stop = stop_slowly  # type: ignore[method-assign]
        media.unhold(CODE, holder=1)
        await asyncio.wait_for(stopping.wait(), 10)
        # The old ffmpeg is still exiting; the viewer comes back.
        again = await media.hold(CODE, spec, holder=2)
        assert again == video
        # It waited for the old process to be gone, then started a new one.
        assert old.camera.status.state.value == "stopped"
        new = media.sources[CODE]
        assert new is not old and new.camera is not old.camera
        before = packets(again)
        await wait_until(lambda: packets(again) > before, "the new source's video in the switch")
        media.unhold(CODE, holder=2)
        await wait_until(lambda: not media.source_running(CODE), "stopped after its linger")
    finally:
        for src in list(media.sources.values()):
            if src.camera is not None:
                await src.camera.stop()
        await media.transport.close()
