"""RTSP cameras pulled from a real RTSP server (GStreamer's, ``tests/peers/rtsp_server.py``).

Checked as a viewer would notice: H.264 (and audio) RTP arrives and decodes; each fault gives its
own state and reason (wrong credentials, unreachable, not found, unsupported codec); a server
that stops, or freezes, mid-stream makes the source "no signal", and it sends again by itself
once the server is back.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peers.rtp import WAIT, RtpCollector, RtpDecoder, free_tcp_port, wait_until
from peers.rtsp import RtspServer, requires_gst_rtsp
from vmesh.ingest.ffmpeg import RtpTarget
from vmesh.ingest.rtsp import RtspCamera, RtspSettings
from vmesh.ingest.status import FailureKind, IngestState, IngestStatus
from vmesh.node.supervisor import RestartPolicy
from vmesh.switch.codecs import Codec, starts_keyframe

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
    requires_gst_rtsp,
]

LOCAL = "127.0.0.1"
FAST = RestartPolicy(initial_delay=0.3, factor=2.0, max_delay=1.5, window=600)
VSSRC, ASSRC = 0x11112222, 0x33334444


class Rig:
    """A camera pulling ``settings`` into two collectors (video relayed to a decoder)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cam: RtspCamera | None = None
        self.servers: list[RtspServer] = []

    async def server(self, **kw: object) -> RtspServer:
        srv = RtspServer(free_tcp_port(), log_path=self.tmp / "rtsp-server.log", **kw)  # type: ignore[arg-type]
        self.servers.append(srv)
        await srv.start()
        return srv

    async def camera(
        self, settings: RtspSettings, *, decode: bool = False, probe_timeout: float = 10.0
    ) -> RtspCamera:
        self.decoder = RtpDecoder(self.tmp) if decode else None
        if self.decoder is not None:
            await self.decoder.start()
        relay = (LOCAL, self.decoder.port) if self.decoder else None
        self.video, vport = await RtpCollector.bind(relay_to=relay)
        self.audio, aport = await RtpCollector.bind()
        self.cam = RtspCamera(
            "cam-1",
            settings,
            RtpTarget(LOCAL, vport, aport, video_ssrc=VSSRC, audio_ssrc=ASSRC),
            data_dir=self.tmp / "data",
            retry=FAST,
            stall_seconds=3.0,
            probe_timeout=probe_timeout,
        )
        await self.cam.start()
        return self.cam

    async def close(self) -> None:
        if self.cam is not None:
            await self.cam.stop()
            self.cam = None
        for c in (getattr(self, "video", None), getattr(self, "audio", None)):
            if c is not None:
                c.close()
        if getattr(self, "decoder", None) is not None:
            await self.decoder.stop()  # type: ignore[union-attr]
            self.decoder = None
        for s in self.servers:
            await s.stop()
        self.servers.clear()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        await r.close()


async def wait_state(
    cam: RtspCamera, *states: IngestState, after: int = 0, kind: FailureKind | None = None
) -> IngestStatus:
    async with asyncio.timeout(WAIT):
        return await cam.wait_for(*states, after=after, kind=kind)


def settings(url: str, **kw: str) -> RtspSettings:
    return RtspSettings.from_attrs({"rtsp_url": url, **kw})


async def test_pull_over_tcp_delivers_decodable_h264_and_opus(rig: Rig) -> None:
    srv = await rig.server(audio="opus", user="viewer", password="pa:ss/wörd")
    cam = await rig.camera(settings(srv.url, username="viewer", password="pa:ss/wörd"), decode=True)
    st = await wait_state(cam, IngestState.SENDING, IngestState.ERROR)
    assert st.state is IngestState.SENDING, st
    assert (st.video_codec, st.audio_codec) == ("h264", "opus") and st.online
    await wait_until(lambda: rig.video.frames() >= 50, "50 video frames")
    await wait_until(lambda: len(rig.audio.packets) >= 50, "50 audio packets")
    assert rig.decoder is not None
    await wait_until(lambda: rig.decoder.frame_count() >= 25, "25 decoded frames")  # type: ignore[union-attr]
    assert {(p.payload_type, p.ssrc) for p in rig.video.packets} == {(96, VSSRC)}
    assert {(p.payload_type, p.ssrc) for p in rig.audio.packets} == {(111, ASSRC)}
    assert any(starts_keyframe(Codec.h264, p.payload) for p in rig.video.packets)
    assert "error while decoding" not in rig.decoder.log.decode(errors="replace").lower()  # type: ignore[union-attr]
    assert cam.status.last_packet_at is not None


async def test_pull_over_udp_with_pcma_audio(rig: Rig) -> None:
    srv = await rig.server(audio="pcma")
    cam = await rig.camera(settings(srv.url, transport="udp"))
    st = await wait_state(cam, IngestState.SENDING, IngestState.ERROR)
    assert st.state is IngestState.SENDING, st
    assert (st.video_codec, st.audio_codec) == ("h264", "pcma")
    await wait_until(lambda: rig.video.frames() >= 25 and len(rig.audio.packets) >= 25, "media")
    assert {p.payload_type for p in rig.audio.packets} == {8}


async def test_wrong_credentials(rig: Rig) -> None:
    srv = await rig.server(user="viewer", password="right")
    cam = await rig.camera(settings(srv.url, username="viewer", password="wrong-secret"))
    st = await wait_state(cam, IngestState.ERROR, IngestState.SENDING)
    assert st.failure is not None and st.failure.kind is FailureKind.WRONG_CREDENTIALS, st
    assert st.label == "error: wrong credentials" and "401" in st.failure.reason
    assert "wrong-secret" not in str(st.as_dict())
    assert rig.video.packets == []


async def test_unreachable_port(rig: Rig) -> None:
    cam = await rig.camera(settings(f"rtsp://127.0.0.1:{free_tcp_port()}/cam"))
    st = await wait_state(cam, IngestState.ERROR, IngestState.SENDING)
    assert st.failure is not None and st.failure.kind is FailureKind.UNREACHABLE, st
    assert "Connection refused" in st.failure.reason
    # It keeps trying, with growing delays.
    again = await wait_state(cam, IngestState.ERROR, after=cam.history.index(st) + 1)
    assert again.attempts > st.attempts and again.next_retry_in > st.next_retry_in  # type: ignore[operator]


async def test_not_found(rig: Rig) -> None:
    srv = await rig.server()
    cam = await rig.camera(settings(srv.url.replace("/cam", "/nothing-here")))
    st = await wait_state(cam, IngestState.ERROR, IngestState.SENDING)
    assert st.failure is not None and st.failure.kind is FailureKind.NOT_FOUND, st
    assert "404" in st.failure.reason


async def test_unsupported_codec(rig: Rig) -> None:
    srv = await rig.server(video="mjpeg")
    cam = await rig.camera(settings(srv.url))
    st = await wait_state(cam, IngestState.ERROR, IngestState.SENDING)
    assert st.failure is not None and st.failure.kind is FailureKind.UNSUPPORTED_CODEC, st
    assert st.failure.reason == "video codec mjpeg"
    assert st.label == "error: unsupported codec"
    assert rig.video.packets == []


async def test_server_stopped_mid_stream_is_no_signal_then_reconnects(rig: Rig) -> None:
    srv = await rig.server()
    cam = await rig.camera(settings(srv.url))
    await wait_state(cam, IngestState.SENDING)
    await wait_until(lambda: rig.video.frames() >= 25, "a second of video")
    mark = len(cam.history)
    await srv.stop()
    st = await wait_state(cam, IngestState.NO_SIGNAL, IngestState.ERROR, after=mark)
    assert st.state is IngestState.NO_SIGNAL and not st.online, st
    assert st.label == "no signal"

    await srv.start()  # same port, same path
    mark = len(cam.history)
    await wait_state(cam, IngestState.SENDING, after=mark)
    count = rig.video.frames()
    await wait_until(lambda: rig.video.frames() >= count + 25, "video again")


async def test_frozen_server_is_no_signal_then_recovers(rig: Rig) -> None:
    """The TCP connection stays open but nothing flows: the watchdog and ffmpeg's -timeout."""
    srv = await rig.server()
    cam = await rig.camera(settings(srv.url))
    await wait_state(cam, IngestState.SENDING)
    mark = len(cam.history)
    srv.pause()
    try:
        st = await wait_state(cam, IngestState.NO_SIGNAL, IngestState.ERROR, after=mark)
    finally:
        srv.resume()
    assert st.state is IngestState.NO_SIGNAL, st
    await wait_state(cam, IngestState.SENDING, after=cam.history.index(st) + 1)


async def test_a_server_that_never_answers_is_unreachable(rig: Rig) -> None:
    silent = socket.socket()
    silent.bind((LOCAL, 0))
    silent.listen(8)  # connections complete in the kernel; nobody ever answers
    try:
        port = silent.getsockname()[1]
        cam = await rig.camera(settings(f"rtsp://127.0.0.1:{port}/cam"), probe_timeout=2.0)
        st = await wait_state(cam, IngestState.ERROR, IngestState.SENDING)
        assert st.failure is not None and st.failure.kind is FailureKind.UNREACHABLE, st
        assert "no answer" in st.failure.reason
    finally:
        await rig.close()
        silent.close()
