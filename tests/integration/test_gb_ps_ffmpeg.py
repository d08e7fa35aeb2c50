"""PS over RTP with real encoders: ffmpeg-made H.264/H.265/G.711A through our muxer, RTP,
reassembler and demuxer, decoded by PyAV; ffmpeg's own PS muxer output demuxed by ours."""

from __future__ import annotations

import contextlib
import io
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from vmesh.gb28181.ps import (
    AccessUnit,
    PsCodec,
    PsDemuxer,
    PsMuxer,
    RtpPacketizer,
    RtpPsPacketizer,
    RtpPsReceiver,
    split_annexb,
)
from vmesh.switch.rtp import parse_rtp

av = pytest.importorskip("av")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]

FRAMES = 50


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120
    )


def _video_aus(tmp: Path, codec: str) -> list[bytes]:
    """Access units of a 2 s testsrc2 clip, split at the access unit delimiters ffmpeg inserts."""
    if codec == "h264":
        enc = ["-c:v", "libx264", "-bsf:v", "h264_metadata=aud=insert", "-f", "h264"]
        aud = lambda n: n[0] & 0x1F == 9  # noqa: E731
    else:
        enc = ["-c:v", "libx265", "-x265-params", "log-level=error:aud=1", "-f", "hevc"]
        aud = lambda n: (n[0] >> 1) & 0x3F == 35  # noqa: E731
    out = tmp / f"clip.{codec}"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-frames:v",
        str(FRAMES),
        "-g",
        "25",
        "-bf",
        "0",
        "-pix_fmt",
        "yuv420p",
        *enc,
        str(out),
    )
    aus: list[list[bytes]] = []
    for nal in split_annexb(out.read_bytes()):
        if aud(nal) or not aus:
            aus.append([])
        aus[-1].append(nal)
    return [b"".join(b"\x00\x00\x00\x01" + n for n in au) for au in aus]


def _alaw(tmp: Path) -> bytes:
    out = tmp / "a.alaw"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=8000",
        "-t",
        "2",
        "-c:a",
        "pcm_alaw",
        "-f",
        "alaw",
        str(out),
    )
    return out.read_bytes()


def _decode(codec: str, aus: list[bytes]) -> int:
    ctx = av.CodecContext.create(codec, "r")
    frames = 0
    for au in [*aus, None]:
        # A frame that lost its reference is refused by the decoder, nothing more.
        with contextlib.suppress(av.FFmpegError):
            frames += len(ctx.decode(av.Packet(au) if au is not None else None))
    return frames


def _gb_stream(video: list[bytes], codec: PsCodec, audio: bytes | None) -> list[bytes]:
    """RTP datagrams of a GB camera: one PS frame per video frame, audio frames between."""
    mux = PsMuxer(codec, PsCodec.pcma if audio is not None else None)
    rtp = RtpPsPacketizer(ssrc=200003792, mtu=1400, sequence_number=65500)  # wraps
    datagrams: list[bytes] = []
    for i, data in enumerate(video):
        pts = 3600 * i
        key = (codec is PsCodec.h264 and any(n[0] & 0x1F == 5 for n in split_annexb(data))) or (
            codec is PsCodec.h265
            and any(16 <= (n[0] >> 1) & 0x3F <= 21 for n in split_annexb(data))
        )
        frame = mux.mux(AccessUnit(codec, 0xE0, pts, data, key))
        datagrams += [p.serialize() for p in rtp.packetize(frame, pts)]
        if audio is not None:
            chunk = audio[320 * i : 320 * (i + 1)]  # 40 ms of 8 kHz A-law
            if chunk:
                aframe = mux.mux(AccessUnit(PsCodec.pcma, 0xC0, pts, chunk, True))
                datagrams += [p.serialize() for p in rtp.packetize(aframe, pts + 1)]
    return datagrams


def _receive(
    datagrams: list[bytes], ssrc: int = 200003792
) -> tuple[list[AccessUnit], RtpPsReceiver]:
    rx = RtpPsReceiver(ssrc)
    aus: list[AccessUnit] = []
    for d in datagrams:
        aus += rx.receive(parse_rtp(d))
    return aus, rx


@pytest.mark.parametrize(("name", "codec"), [("h264", PsCodec.h264), ("hevc", PsCodec.h265)])
def test_ps_over_rtp_round_trip_is_byte_exact_and_decodes(
    tmp_path: Path, name: str, codec: PsCodec
) -> None:
    video = _video_aus(tmp_path, "h264" if name == "h264" else "hevc")
    assert len(video) == FRAMES
    audio = _alaw(tmp_path)
    aus, rx = _receive(_gb_stream(video, codec, audio))
    v = [a for a in aus if a.codec is codec]
    a = [x for x in aus if x.codec is PsCodec.pcma]
    assert [x.data for x in v] == video
    assert [x.pts for x in v] == [3600 * i for i in range(FRAMES)]
    assert [x.is_keyframe for x in v].count(True) == 2  # GOP 25 over 50 frames
    assert v[0].is_keyframe and v[25].is_keyframe
    assert b"".join(x.data for x in a) == audio[: 320 * FRAMES]
    assert rx.reassembler.stats.dropped_frames == 0
    assert _decode(name, [x.data for x in v]) == FRAMES


def test_one_lost_packet_drops_one_frame_and_decoding_goes_on(tmp_path: Path) -> None:
    video = _video_aus(tmp_path, "h264")
    datagrams = _gb_stream(video, PsCodec.h264, None)
    # Lose one packet in the middle of frame 10 (a P frame).
    ts10 = 3600 * 10
    idx = [i for i, d in enumerate(datagrams) if parse_rtp(d).timestamp == ts10]
    lost = idx[len(idx) // 2]
    aus, rx = _receive(datagrams[:lost] + datagrams[lost + 1 :])
    assert [x.pts for x in aus] == [3600 * i for i in range(FRAMES) if i != 10]
    assert rx.reassembler.stats.dropped_frames == 1 and rx.reassembler.stats.lost_packets == 1
    frames = _decode("h264", [x.data for x in aus])
    assert 25 <= frames <= FRAMES - 1  # the GOP after the loss decodes in full


def test_random_loss_and_garbage_never_crash(tmp_path: Path) -> None:
    video = _video_aus(tmp_path, "h264")
    datagrams = _gb_stream(video, PsCodec.h264, _alaw(tmp_path))
    rng = random.Random(7)
    kept = [d for d in datagrams if rng.random() > 0.05]
    # Flip bytes in the payload of some packets too.
    mangled = []
    for d in kept:
        if rng.random() < 0.05:
            b = bytearray(d)
            for _ in range(8):
                b[rng.randrange(12, len(b))] = rng.randrange(256)
            d = bytes(b)
        mangled.append(d)
    aus, rx = _receive(mangled)
    assert rx.reassembler.stats.dropped_frames > 0
    assert 0 < len([a for a in aus if a.codec is PsCodec.h264]) < FRAMES
    _decode("h264", [a.data for a in aus if a.codec is PsCodec.h264])


def test_pyav_reads_our_ps_as_h264_and_pcm_alaw(tmp_path: Path) -> None:
    """An independent demuxer (FFmpeg's) agrees with our muxer's PSM and PES."""
    video = _video_aus(tmp_path, "h264")
    mux = PsMuxer(PsCodec.h264, PsCodec.pcma)
    audio = _alaw(tmp_path)
    ps = bytearray()
    for i, data in enumerate(video):
        key = any(n[0] & 0x1F == 5 for n in split_annexb(data))
        ps += mux.mux(AccessUnit(PsCodec.h264, 0xE0, 3600 * i, data, key))
        ps += mux.mux(AccessUnit(PsCodec.pcma, 0xC0, 3600 * i, audio[320 * i : 320 * i + 320]))
    with av.open(io.BytesIO(bytes(ps)), format="mpeg") as c:
        kinds = {s.type: s.codec_context.name for s in c.streams}
        assert kinds == {"video": "h264", "audio": "pcm_alaw"}
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == FRAMES


def test_ffmpeg_mpeg_muxer_output_is_demuxed(tmp_path: Path) -> None:
    """ffmpeg's own PS muxer (MPEG-1 system stream, no PSM) as an independent producer."""
    out = tmp_path / "ff.mpg"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-frames:v",
        str(FRAMES),
        "-g",
        "25",
        "-bf",
        "0",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "mpeg",
        str(out),
    )
    dm = PsDemuxer()
    data = out.read_bytes()
    aus: list[AccessUnit] = []
    for i in range(0, len(data), 1316):
        aus += dm.feed(data[i : i + 1316])
    aus += dm.flush()
    assert aus and all(a.codec is PsCodec.h264 for a in aus)
    assert aus[0].is_keyframe
    assert dm.stats.resyncs == 0
    # ffmpeg's PES do not follow frame boundaries (a PTS names the first frame *starting* in
    # the PES), so compare the elementary stream as a whole with what ffmpeg extracts itself.
    es = b"".join(a.data for a in aus)
    ref = tmp_path / "ref.h264"
    _ffmpeg("-i", str(out), "-c", "copy", "-f", "h264", str(ref))
    assert es == ref.read_bytes()
    ctx = av.CodecContext.create("h264", "r")
    packets = [*ctx.parse(es), *ctx.parse(None)]
    frames = sum(len(ctx.decode(p)) for p in packets) + len(ctx.decode(None))
    assert frames == FRAMES


def test_demuxed_h264_repacketised_to_rtp_reassembles(tmp_path: Path) -> None:
    """FU-A packetisation of the demuxed frames: depacketised again they decode in full."""
    video = _video_aus(tmp_path, "h264")
    aus, _ = _receive(_gb_stream(video, PsCodec.h264, None))
    pk = RtpPacketizer(ssrc=1, payload_type=96, mtu=1000)
    rebuilt: list[bytes] = []
    cur: list[bytes] = []
    fu = bytearray()
    for au in aus:
        for p in pk.packetize(au):
            pl = p.payload
            assert len(pl) <= 1000
            if pl[0] & 0x1F == 28:
                if pl[1] & 0x80:
                    fu = bytearray([(pl[0] & 0xE0) | (pl[1] & 0x1F)])
                fu += pl[2:]
                if pl[1] & 0x40:
                    cur.append(bytes(fu))
            else:
                cur.append(pl)
            if p.marker:
                rebuilt.append(b"".join(b"\x00\x00\x00\x01" + n for n in cur))
                cur = []
    assert len(rebuilt) == FRAMES
    assert [split_annexb(r) for r in rebuilt] == [split_annexb(v) for v in video]
    assert _decode("h264", rebuilt) == FRAMES
