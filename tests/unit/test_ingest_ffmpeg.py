"""ffmpeg helpers: failure classification from captured ffmpeg 5.1 stderr, progress, RTP outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmesh.errors import InvalidInput
from vmesh.ingest.ffmpeg import (
    ProgressParser,
    RtpTarget,
    classify,
    filter_value,
    redact,
    rtp_output,
    stream_codecs,
)
from vmesh.ingest.runner import FfmpegSource
from vmesh.ingest.status import Failure, FailureKind, IngestState, IngestStatus

pytestmark = pytest.mark.unit

# Lines captured from ffmpeg/ffprobe 5.1 (Debian 12) against GStreamer's RTSP server.
UNAUTHORIZED = [
    "[rtsp @ 0x5578fbcb4280] method DESCRIBE failed: 401 Unauthorized",
    "rtsp://bob:s3cret@127.0.0.1:18554/cam: Server returned 401 Unauthorized "
    "(authorization failed)",
]
NOT_FOUND = [
    "[rtsp @ 0x557be3b9e280] method DESCRIBE failed: 404 Not Found",
    "rtsp://bob:s3cret@127.0.0.1:18554/nope: Server returned 404 Not Found",
]
REFUSED = [
    "[tcp @ 0x55fd152a4ec0] Connection to tcp://127.0.0.1:18559?timeout=0 failed: "
    "Connection refused",
    "rtsp://127.0.0.1:18559/nope: Connection refused",
]
NO_HOST = [
    "[tcp @ 0x557d1722b480] Failed to resolve hostname no-such-host.invalid: "
    "Name or service not known",
    "rtsp://no-such-host.invalid/x: Input/output error",
]
MJPEG = [
    "Input #0, rtsp, from 'rtsp://127.0.0.1:18600/cam':",
    "  Metadata:",
    "    title           : Session streamed with GStreamer",
    "  Duration: N/A, start: 0.000000, bitrate: N/A",
    "  Stream #0:0: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 320x240 "
    "[SAR 1:1 DAR 4:3], 25 fps, 25 tbr, 90k tbn",
    "  Stream #0:1: Audio: pcm_mulaw, 8000 Hz, mono, s16, 64 kb/s",
    "Output #0, rtp, to 'rtp://127.0.0.1:40000':",
    "  Stream #0:0: Video: mjpeg (Baseline), yuvj420p(pc), 320x240, q=2-31, 25 fps, 90k tbn",
]
H264_AAC = [
    "Input #0, rtsp, from 'rtsp://127.0.0.1:8554/cam':",
    "  Stream #0:0: Video: h264 (Constrained Baseline), yuv420p(progressive), 320x240, 25 fps",
    "  Stream #0:1: Audio: aac (LC), 48000 Hz, stereo, fltp",
]


@pytest.mark.parametrize(
    ("lines", "kind", "reason"),
    [
        (UNAUTHORIZED, FailureKind.WRONG_CREDENTIALS, "401 Unauthorized"),
        (NOT_FOUND, FailureKind.NOT_FOUND, "404 Not Found"),
        (REFUSED, FailureKind.UNREACHABLE, "Connection refused"),
        (NO_HOST, FailureKind.UNREACHABLE, "Name or service not known"),
        (MJPEG, FailureKind.UNSUPPORTED_CODEC, "video codec mjpeg"),
        (
            ["rtsp://10.0.0.9:554/x: Invalid data found when processing input"],
            FailureKind.BAD_STREAM,
            "Invalid data found when processing input",
        ),
        (
            ["[rtsp @ 0x1] method SETUP failed: 461 Unsupported transport"],
            FailureKind.BAD_STREAM,
            "461 Unsupported transport",
        ),
        (
            ["[rtsp @ 0x1] method DESCRIBE failed: 403 Forbidden"],
            FailureKind.WRONG_CREDENTIALS,
            "403 Forbidden",
        ),
    ],
)
def test_classify_captured_stderr(lines: list[str], kind: FailureKind, reason: str) -> None:
    f = classify(lines)
    assert f is not None and f.kind is kind
    assert reason in f.reason
    assert "s3cret" not in f.reason


def test_unrecognisable_output_is_not_guessed() -> None:
    assert classify(["frame=  10 fps=0.0", "video:236kB audio:0kB muxing overhead: 1.2%"]) is None
    assert classify([]) is None


def test_unsupported_audio_alone_is_not_a_failure() -> None:
    assert classify(H264_AAC) is None
    assert stream_codecs(H264_AAC) == [("video", "h264"), ("audio", "aac")]
    assert stream_codecs(MJPEG) == [("video", "mjpeg"), ("audio", "pcm_mulaw")]  # input only


def test_redact_hides_passwords_only() -> None:
    assert redact("rtsp://bob:s3cret@10.0.0.1:554/x: 401") == "rtsp://bob:***@10.0.0.1:554/x: 401"
    assert redact("rtsp://10.0.0.1/x and rtsp://u@h/y") == "rtsp://10.0.0.1/x and rtsp://u@h/y"


def test_progress_blocks_across_datagrams() -> None:
    p = ProgressParser()
    assert p.feed("frame=13\nfps=0.00\ntotal_size=51178\nout_time_us=480011\n") == []
    [got] = p.feed("speed=0.958x\nprogress=continue\nframe=26\n")
    assert (got.frame, got.total_size, got.out_time_us, got.end) == (13, 51178, 480011, False)
    [last] = p.feed("total_size=N/A\nprogress=end\n")
    assert (last.frame, last.total_size, last.end) == (26, 0, True)


def test_rtp_output_sets_pt_ssrc_rtcp_port_and_packet_size() -> None:
    assert rtp_output("127.0.0.1", 40000, 0x1234, 96) == [
        "-f", "rtp", "-payload_type", "96", "-ssrc", str(0x1234),
        "rtp://127.0.0.1:40000?rtcpport=40001&pkt_size=1200",
    ]  # fmt: skip
    # ffmpeg's -ssrc is a signed 32-bit option: the top half of the range goes in negative.
    assert rtp_output("h", 5000, 0xCAFE0001, 96)[5] == str(0xCAFE0001 - (1 << 32))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"host": "", "video_port": 5000}, "host"),
        ({"host": "h", "video_port": 0}, "video_port"),
        ({"host": "h", "video_port": 5000, "audio_port": 70000}, "audio_port"),
        ({"host": "h", "video_port": 5000, "video_ssrc": 0}, "video_ssrc"),
        ({"host": "h", "video_port": 5000, "audio_ssrc": 1 << 32}, "audio_ssrc"),
    ],
)
def test_rtp_target_refuses_bad_values_by_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as e:
        RtpTarget(**kwargs)  # type: ignore[arg-type]
    assert e.value.errors[0].field == field


def test_filter_value_escapes_both_levels() -> None:
    assert filter_value("/fonts/a.ttc") == "/fonts/a.ttc"
    assert filter_value("%{localtime:%X}") == r"%{localtime\\:%X}"
    assert filter_value("it's, [x]") == r"it\\\'s\, \[x\]"


class _Src(FfmpegSource):
    pass


@pytest.mark.parametrize(
    ("lines", "error", "sent", "kind", "reason"),
    [
        ([], "exited with status 0 (output in x.log); gave up", True, FailureKind.NO_SIGNAL,
         "the source ended the stream"),
        ([], "health check failed 1 times in a row: no packets for 5 s; gave up", True,
         FailureKind.NO_SIGNAL, "no packets for 5 s"),
        (REFUSED, "exited with status 1; gave up", True, FailureKind.NO_SIGNAL,
         "the source went away (Connection refused)"),
        (UNAUTHORIZED, "exited with status 1; gave up", False, FailureKind.WRONG_CREDENTIALS,
         "401 Unauthorized"),
        ([], "not healthy within 20 s: no packets sent yet; gave up", False,
         FailureKind.NO_SIGNAL, "no packets within 20 s of starting"),
        (["=== vmesh: start #1 of x: ffmpeg ...", "Unknown encoder 'libx264'"],
         "exited with status 1; gave up", False, FailureKind.FFMPEG, "Unknown encoder 'libx264'"),
    ],
)  # fmt: skip
def test_explain_an_attempt(
    lines: list[str], error: str, sent: bool, kind: FailureKind, reason: str
) -> None:
    src = _Src("cam", log_dir=Path("/nonexistent"), start_timeout=20)
    f = src.explain(lines, error, sent)
    assert f == Failure(kind, reason)


def test_status_labels_and_dict() -> None:
    st = IngestStatus(
        "c", IngestState.ERROR, Failure(FailureKind.UNREACHABLE, "Connection refused")
    )
    assert st.label == "error: unreachable" and not st.online
    assert st.as_dict()["reason"] == "Connection refused" and st.as_dict()["kind"] == "unreachable"
    assert IngestStatus("c", IngestState.NO_SIGNAL).label == "no signal"
    assert IngestStatus("c", IngestState.SENDING).online
