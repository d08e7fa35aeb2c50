"""RTSP camera settings, probe parsing and the pull command line (no processes)."""

from __future__ import annotations

import pytest

from vmesh.errors import InvalidInput
from vmesh.ingest.ffmpeg import RtpTarget
from vmesh.ingest.rtsp import ProbeResult, RtspSettings, parse_probe, probe_argv, pull_argv
from vmesh.ingest.status import Failure, FailureKind

pytestmark = pytest.mark.unit

TARGET = RtpTarget("127.0.0.1", 40000, 40002, video_ssrc=11, audio_ssrc=12)


def test_settings_from_attrs_with_separate_credentials() -> None:
    s = RtspSettings.from_attrs(
        {"rtsp_url": "rtsp://10.1.2.3:554/Streaming/Channels/101?x=1", "username": "admin",
         "password": "p@ss:w/rd", "transport": "udp", "pull": "always"}
    )  # fmt: skip
    assert s.url == "rtsp://10.1.2.3:554/Streaming/Channels/101?x=1"
    assert (s.username, s.password, s.transport, s.pull) == ("admin", "p@ss:w/rd", "udp", "always")
    assert (
        s.url_with_credentials()
        == "rtsp://admin:p%40ss%3Aw%2Frd@10.1.2.3:554/Streaming/Channels/101?x=1"
    )


def test_settings_take_credentials_from_the_url_and_defaults() -> None:
    s = RtspSettings.from_attrs(
        {"rtsp_url": "rtsp://u%40x:se%2Fcret@cam.local/live", "rtsp_transport": "tcp"}
    )
    assert (s.url, s.username, s.password) == ("rtsp://cam.local/live", "u@x", "se/cret")
    assert (s.transport, s.pull) == ("tcp", "on_demand")
    assert s.url_with_credentials() == "rtsp://u%40x:se%2Fcret@cam.local/live"
    assert RtspSettings.from_attrs({"rtsp_url": "rtsp://[::1]:8554/a"}).url == "rtsp://[::1]:8554/a"


@pytest.mark.parametrize(
    ("attrs", "field", "reason"),
    [
        ({}, "attrs.rtsp_url", "is required"),
        ({"rtsp_url": "http://x/y"}, "attrs.rtsp_url", "rtsp://"),
        ({"rtsp_url": "rtsp:///y"}, "attrs.rtsp_url", "no host"),
        ({"rtsp_url": "rtsp://h:99999/y"}, "attrs.rtsp_url", "not a valid URL"),
        ({"rtsp_url": 5}, "attrs.rtsp_url", "must be a string"),
        ({"rtsp_url": "rtsp://h/y", "transport": "sctp"}, "attrs.transport", "tcp or udp"),
        (
            {"rtsp_url": "rtsp://h/y", "rtsp_transport": "http"},
            "attrs.rtsp_transport",
            "tcp or udp",
        ),
        ({"rtsp_url": "rtsp://h/y", "pull": "sometimes"}, "attrs.pull", "on_demand or always"),
        ({"rtsp_url": "rtsp://h/y", "password": "x"}, "attrs.username", "required"),
    ],
)
def test_settings_refuse_bad_attrs_by_field(
    attrs: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as e:
        RtspSettings.from_attrs(attrs)
    assert e.value.errors[0].field == field and reason in e.value.errors[0].reason


def test_bad_url_error_does_not_echo_the_password() -> None:
    with pytest.raises(InvalidInput) as e:
        RtspSettings.from_attrs({"rtsp_url": "http://u:topsecret@h/x"})
    assert "topsecret" not in str(e.value) and "topsecret" not in str(e.value.errors[0].value)


def streams(*pairs: tuple[str, str]) -> dict[str, object]:
    return {
        "streams": [
            {"index": i, "codec_type": t, "codec_name": c} for i, (t, c) in enumerate(pairs)
        ]
    }


def test_parse_probe_chooses_supported_streams() -> None:
    assert parse_probe(streams(("video", "h264"), ("audio", "opus"))) == ProbeResult(
        0, "h264", 1, "opus"
    )
    assert parse_probe(streams(("audio", "pcm_alaw"), ("video", "hevc"))) == ProbeResult(
        1, "hevc", 0, "pcm_alaw"
    )
    got = parse_probe(streams(("video", "h264"), ("audio", "aac")))
    assert (got.audio_index, got.skipped_audio) == (None, "aac")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (streams(("video", "mjpeg"), ("audio", "pcm_mulaw")), "video codec mjpeg"),
        (streams(("video", "mpeg4")), "video codec mpeg4"),
        (streams(("audio", "opus")), "no video stream (streams: opus)"),
        ({"streams": []}, "no video stream (streams: none)"),
    ],
)
def test_parse_probe_refuses_unsupported_video(data: dict[str, object], reason: str) -> None:
    with pytest.raises(Failure) as e:
        parse_probe(data)
    assert e.value.kind is FailureKind.UNSUPPORTED_CODEC and e.value.reason == reason


def test_pull_command_line() -> None:
    s = RtspSettings.from_attrs({"rtsp_url": "rtsp://u:p@h/x", "transport": "udp"})
    argv = pull_argv(s, ProbeResult(0, "hevc", 1, "pcm_alaw"), TARGET, stall_seconds=4)
    j = " ".join(argv)
    assert "-rtsp_transport udp -timeout 4000000 -i rtsp://u:p@h/x" in j
    assert (
        "-map 0:0 -an -c copy -bsf:v dump_extra=freq=keyframe -f rtp -payload_type 96 -ssrc 11" in j
    )
    assert "-map 0:1 -vn -c copy -f rtp -payload_type 8 -ssrc 12" in j
    only_video = pull_argv(s, ProbeResult(0, "h264"), TARGET, stall_seconds=4)
    assert "40002" not in " ".join(only_video)
    no_audio_port = pull_argv(s, ProbeResult(0, "h264", 1, "opus"), RtpTarget("h", 5000), 4)
    assert "-vn" not in no_audio_port


def test_probe_command_line() -> None:
    s = RtspSettings.from_attrs({"rtsp_url": "rtsp://h/x"})
    argv = probe_argv(s, 2.5, "ffprobe")
    assert argv[0] == "ffprobe" and argv[-1] == "rtsp://h/x"
    assert "-timeout" in argv and argv[argv.index("-timeout") + 1] == "2500000"
