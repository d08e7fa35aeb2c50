"""Streaming RTP mountpoint requests: the body Janus 1.1.2 gets, and refused specs."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from vmesh.edge.janus import ServerInfo
from vmesh.edge.streaming import RtpMountpoint, RtpStream
from vmesh.errors import InvalidInput

pytestmark = pytest.mark.unit


def test_video_audio_create_body() -> None:
    mp = RtpMountpoint.video_audio(101, "ch-101", video_port=40000, audio_port=40002)
    body = mp.create_body("k" * 32)
    assert body["request"] == "create" and body["type"] == "rtp"
    assert body["admin_key"] == "k" * 32
    assert body["permanent"] is False and body["is_private"] is True
    assert body["media"] == [
        {
            "type": "video",
            "mid": "v",
            "port": 40000,
            "rtcpport": 40001,
            "pt": 96,
            "codec": "h264",
            "fmtp": "profile-level-id=42e01f;packetization-mode=1",
            "iface": "127.0.0.1",
            "bufferkf": True,
        },
        {
            "type": "audio",
            "mid": "a",
            "port": 40002,
            "pt": 111,
            "codec": "opus",
            "iface": "127.0.0.1",
        },
    ]


def test_bad_mountpoint_names_each_field() -> None:
    mp = RtpMountpoint(
        id=0,
        name=" ",
        iface="eth0",
        streams=(
            RtpStream("video", "v", 40000, 96, "mpeg2"),
            RtpStream("audio", "v", 40000, 200, "opus"),
        ),
    )
    with pytest.raises(InvalidInput) as ei:
        mp.create_body("k" * 32)
    fields = {e.field: e.reason for e in ei.value.errors}
    assert set(fields) == {
        "id",
        "name",
        "iface",
        "streams[0].codec",
        "streams[1].port",
        "streams[1].mid",
        "streams[1].pt",
    }
    assert "h264" in fields["streams[0].codec"]
    assert fields["streams[1].port"] == "port used twice"


def test_audio_port_clashing_with_video_rtcp_is_refused() -> None:
    mp = RtpMountpoint.video_audio(1, "x", video_port=40000, audio_port=40001)
    with pytest.raises(InvalidInput) as ei:
        mp.validate()
    assert [e.field for e in ei.value.errors] == ["streams[1].port"]


def test_server_info_version() -> None:
    info = ServerInfo.from_json(
        {
            "janus": "server_info",
            "version": 1102,
            "version_string": "1.1.2",
            "plugins": {"janus.plugin.videoroom": {}, "janus.plugin.streaming": {}},
            "transports": {"janus.transport.http": {}},
        }
    )
    assert info.version_tuple == (1, 1, 2)
    assert info.plugins == ("janus.plugin.streaming", "janus.plugin.videoroom")
    assert replace(info, version_string="1.3.2").version_tuple >= (1, 1)


def test_api_secret_is_masked_in_httpx_request_logs(caplog: pytest.LogCaptureFixture) -> None:
    import vmesh.edge.janus  # noqa: F401  (installs the filter)

    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info(
            'HTTP Request: %s %s "%s"',
            "GET",
            "http://127.0.0.1:8088/janus/1?maxev=10&apisecret=TOPSECRET&rid=1",
            "HTTP/1.1 200 OK",
        )
    assert "TOPSECRET" not in caplog.text
    assert "apisecret=***&rid=1" in caplog.text
