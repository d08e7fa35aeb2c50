"""Synthetic cameras as real ffmpeg children sending RTP to UDP ports, decoded by a real ffmpeg.

What a viewer (or the switch) would notice is checked: packets carry the configured payload types
and SSRCs, a decodable keyframe (SPS + IDR) comes within the first GOP, the decoded picture shows
the camera's own patch colour where ``patch_rect`` says, the clip mode encodes its clip once and
reuses it, and a camera that cannot start says why.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from peers.rtp import WAIT, RtpCollector, RtpDecoder, wait_until
from vmesh.ingest.ffmpeg import RtpTarget
from vmesh.ingest.status import FailureKind, IngestState
from vmesh.ingest.synthetic import ClipCache, SyntheticCamera, SyntheticSpec, patch_colour
from vmesh.switch.codecs import Codec, starts_keyframe
from vmesh.switch.core import InputSpec, Switch
from vmesh.switch.rtp import RtpPacket
from vmesh.switch.transport import SwitchTransport

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]

LOCAL = "127.0.0.1"
W, H = 320, 240
VSSRC, ASSRC = 0xCAFE0001, 0x0A0D1002
CODE_A = "33010600001310000001"
CODE_B = "33010600001310000002"


def nal_types(p: RtpPacket) -> list[int]:
    """NAL unit types that start in this packet (single NAL, STAP-A, FU-A start)."""
    if not p.payload:
        return []
    t = p.payload[0] & 0x1F
    if 1 <= t <= 23:
        return [t]
    if t == 24:
        out, pos = [], 1
        while pos + 2 < len(p.payload):
            size = int.from_bytes(p.payload[pos : pos + 2], "big")
            out.append(p.payload[pos + 2] & 0x1F)
            pos += 2 + size
        return out
    if t == 28 and len(p.payload) > 1 and p.payload[1] & 0x80:
        return [p.payload[1] & 0x1F]
    return []


def frames_before_first_keyframe(packets: list[RtpPacket]) -> int:
    """How many frames (distinct timestamps) came before the first one starting with SPS."""
    seen: list[int] = []
    for p in packets:
        if p.timestamp not in seen:
            seen.append(p.timestamp)
        if 7 in nal_types(p) and starts_keyframe(Codec.h264, p.payload):
            return len(seen) - 1
    raise AssertionError("no keyframe with SPS in the packets")


def gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


def close(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


async def run_camera(
    tmp_path: Path, spec: SyntheticSpec, clips: ClipCache | None = None
) -> tuple[SyntheticCamera, RtpCollector, RtpCollector, RtpDecoder]:
    decoder = RtpDecoder(tmp_path)
    await decoder.start()
    video, vport = await RtpCollector.bind(relay_to=(LOCAL, decoder.port))
    audio, aport = await RtpCollector.bind()
    cam = SyntheticCamera(
        spec,
        RtpTarget(LOCAL, vport, aport, video_ssrc=VSSRC, audio_ssrc=ASSRC),
        data_dir=tmp_path / "data",
        clips=clips,
    )
    await cam.start()
    return cam, video, audio, decoder


async def check_camera(
    cam: SyntheticCamera, video: RtpCollector, audio: RtpCollector, decoder: RtpDecoder
) -> None:
    spec = cam.spec
    async with asyncio.timeout(WAIT):
        st = await cam.wait_for(IngestState.SENDING, IngestState.ERROR)
    assert st.state is IngestState.SENDING, st
    assert st.online and st.video_codec == "h264" and st.audio_codec == "opus"
    await wait_until(lambda: video.frames() >= 2 * spec.gop, "two GOPs of video")
    await wait_until(lambda: len(audio.packets) >= 50, "a second of audio")
    await wait_until(lambda: decoder.frame_count() >= 10, "decoded frames")
    assert cam.status.last_packet_at is not None

    assert {(p.payload_type, p.ssrc) for p in video.packets} == {(96, VSSRC)}
    assert {(p.payload_type, p.ssrc) for p in audio.packets} == {(111, ASSRC)}
    assert frames_before_first_keyframe(video.packets) < spec.gop
    # Every keyframe carries SPS/PPS in band (a viewer joining at any GOP can decode).
    keys = [p for p in video.packets if 5 in nal_types(p)]
    starts = {p.timestamp for p in video.packets if 7 in nal_types(p)}
    assert {p.timestamp for p in keys} <= starts
    # The patch: decoded frames scaled to 16x12, so pixel (1, 1) lies inside [0, W/4) x [0, H/4).
    got = decoder.pixel(-1, 1, 1)
    assert close(got, patch_colour(spec.code)), (got, patch_colour(spec.code))


async def stop_all(
    cam: SyntheticCamera, video: RtpCollector, audio: RtpCollector, decoder: RtpDecoder
) -> None:
    await cam.stop()
    video.close()
    audio.close()
    await decoder.stop()


async def test_live_camera_sends_h264_and_opus_with_its_ssrcs_keyframe_and_colour(
    tmp_path: Path,
) -> None:
    spec = SyntheticSpec(CODE_A, "西湖区 测试摄像机", width=W, height=H, fps=25, gop=25)
    parts = await run_camera(tmp_path, spec)
    cam = parts[0]
    try:
        await check_camera(*parts)
        pid = cam._proc.pid if cam._proc else None
    finally:
        await stop_all(*parts)
    assert cam.status.state is IngestState.STOPPED
    states = [s.state for s in cam.history]
    assert states[0] is IngestState.STARTING and IngestState.SENDING in states
    assert pid is not None and gone(pid)


async def test_clip_mode_encodes_once_then_reuses_the_cached_clip(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "ingest" / "clips"
    spec = SyntheticSpec(CODE_B, "通乡 3号", width=W, height=H, gop=25, mode="clip", clip_seconds=2)
    first = ClipCache(folder)
    parts = await run_camera(tmp_path, spec, clips=first)
    try:
        await check_camera(*parts)
    finally:
        await stop_all(*parts)
    clips = list(folder.glob("*.mkv"))
    assert first.encoded == clips and len(clips) == 1
    stamp = clips[0].stat().st_mtime_ns
    assert not list(folder.glob(".*.tmp"))  # written aside and renamed into place

    second = ClipCache(folder)
    parts = await run_camera(tmp_path, spec, clips=second)
    try:
        await check_camera(*parts)
    finally:
        await stop_all(*parts)
    assert second.encoded == []
    assert list(folder.glob("*.mkv")) == clips and clips[0].stat().st_mtime_ns == stamp


async def test_two_cameras_show_different_patch_colours(tmp_path: Path) -> None:
    assert not close(patch_colour(CODE_A), patch_colour(CODE_B), tol=80)
    for code in (CODE_A, CODE_B):
        spec = SyntheticSpec(
            code, code[-4:], width=W, height=H, gop=25, mode="clip", clip_seconds=1
        )
        parts = await run_camera(tmp_path / code, spec)
        try:
            await check_camera(*parts)
        finally:
            await stop_all(*parts)


async def test_a_camera_that_cannot_start_says_why_and_retries(tmp_path: Path) -> None:
    video, vport = await RtpCollector.bind()
    cam = SyntheticCamera(
        SyntheticSpec(CODE_A, "x", width=W, height=H),
        RtpTarget(LOCAL, vport),
        data_dir=tmp_path,
        ffmpeg=str(tmp_path / "no-such-ffmpeg"),
    )
    await cam.start()
    try:
        async with asyncio.timeout(WAIT):
            st = await cam.wait_for(IngestState.ERROR)
            again = await cam.wait_for(IngestState.ERROR, after=cam.history.index(st) + 1)
    finally:
        await cam.stop()
        video.close()
    assert st.failure is not None and st.failure.kind is FailureKind.FFMPEG
    assert "no-such-ffmpeg" in st.failure.reason and "No such file" in st.failure.reason
    assert st.label == "error: ffmpeg failed" and not st.online
    assert st.next_retry_in is not None and again.attempts > st.attempts
    assert video.packets == []


async def test_camera_into_a_real_switch_input_fills_its_gop_cache(tmp_path: Path) -> None:
    """The switch sees the camera as a proper H.264 source: keyframes, a GOP cache, no loss."""
    switch = Switch()
    transport = SwitchTransport(switch)
    await transport.start()
    cam = None
    try:
        vport = await transport.add_input(InputSpec("cam-v", Codec.h264))
        aport = await transport.add_input(InputSpec("cam-a", Codec.opus))
        spec = SyntheticSpec(CODE_A, "交换机输入", width=W, height=H, gop=25, mode="clip")
        cam = SyntheticCamera(spec, RtpTarget(LOCAL, vport, aport, VSSRC, ASSRC), data_dir=tmp_path)
        await cam.start()
        await wait_until(
            lambda: switch.snapshot().inputs["cam-v"].keyframes >= 2, "two keyframes at the switch"
        )
        snap = switch.snapshot()
    finally:
        if cam is not None:
            await cam.stop()
        await transport.close()
    v, a = snap.inputs["cam-v"], snap.inputs["cam-a"]
    assert v.gop_packets > 0 and v.malformed == 0 and a.packets > 0
