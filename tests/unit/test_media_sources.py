"""Camera attrs read as sources (with field errors), their ffmpeg commands, the channel pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmesh.errors import Conflict, InvalidInput
from vmesh.media.channels import ChannelPool
from vmesh.media.sources import (
    PALETTE,
    RtpPorts,
    RtspSpec,
    SyntheticSpec,
    ffmpeg_argv,
    patch_color,
    source_from_attrs,
)

pytestmark = pytest.mark.unit

CAM = "33010601001326000101"


def test_synthetic_defaults_and_own_colour() -> None:
    s = source_from_attrs(CAM, {"source": "synthetic"})
    assert isinstance(s, SyntheticSpec)
    assert (s.width, s.height, s.fps, s.gop, s.mode) == (640, 360, 25, 25, "clip")
    assert s.color == patch_color(CAM) and s.color in PALETTE
    other = "33010601001326000102"
    assert {patch_color(f"3301060100132600{n:04d}") for n in range(40)} == set(PALETTE)
    assert source_from_attrs(other, {"source": "synthetic", "color": "#AABBCC"}).color == "#aabbcc"


def test_bad_synthetic_attributes_are_each_named() -> None:
    with pytest.raises(InvalidInput) as e:
        source_from_attrs(
            CAM,
            {"source": "synthetic", "width": 5000, "fps": "x", "color": "red", "mode": "film"},
        )
    fields = {x.field for x in e.value.errors}
    assert fields == {"attrs.width", "attrs.fps", "attrs.color", "attrs.mode"}


def test_rtsp_source_hides_credentials_in_its_safe_url() -> None:
    s = source_from_attrs(CAM, {"rtsp_url": "rtsp://admin:secret@10.1.2.3:554/main"})
    assert isinstance(s, RtspSpec) and s.transport == "tcp"
    assert s.safe_url == "rtsp://10.1.2.3:554/main"
    with pytest.raises(InvalidInput) as e:
        source_from_attrs(CAM, {"rtsp_url": "http://x/y", "rtsp_transport": "sctp"})
    assert {x.field for x in e.value.errors} == {"attrs.rtsp_url", "attrs.rtsp_transport"}


def test_camera_without_source_is_refused_with_the_way_out() -> None:
    with pytest.raises(InvalidInput) as e:
        source_from_attrs(CAM, {"model": "DS-2CD3T46"})
    assert "set attrs.rtsp_url or attrs.source = synthetic" in e.value.errors[0].reason


def test_ffmpeg_commands_send_rtp_to_the_switch_ports() -> None:
    clip = source_from_attrs(CAM, {"source": "synthetic"})
    argv = ffmpeg_argv(clip, RtpPorts(26000, 26002), clip=Path("/c.ts"))
    assert argv[argv.index("-i") + 1] == "/c.ts" and "-stream_loop" in argv
    assert argv.count("copy") == 2  # no encoding at run time
    outs = [a for a in argv if a.startswith("rtp://")]
    assert outs == [
        "rtp://127.0.0.1:26000?pkt_size=1200&rtcpport=26001&localaddr=127.0.0.1",
        "rtp://127.0.0.1:26002?pkt_size=1200&rtcpport=26003&localaddr=127.0.0.1",
    ]
    live = source_from_attrs(CAM, {"source": "synthetic", "mode": "live", "gop": 50})
    argv = ffmpeg_argv(live, RtpPorts(26000, 26002))
    assert "libx264" in argv and argv[argv.index("-g") + 1] == "50"
    assert any("drawbox=x=0:y=0:w=160:h=90" in a for a in argv)
    rtsp = source_from_attrs(CAM, {"rtsp_url": "rtsp://cam/main", "rtsp_transport": "udp"})
    argv = ffmpeg_argv(rtsp, RtpPorts(26000, None))
    assert argv[argv.index("-rtsp_transport") + 1] == "udp"
    assert [a for a in argv if a.startswith("rtp://")] == [outs[0]]


def test_pool_lends_lowest_free_channel_and_refuses_when_empty() -> None:
    pool = ChannelPool(2, 25000)
    a, b = pool.acquire("p1"), pool.acquire("p2")
    assert (a.index, b.index, pool.busy) == (0, 1, 2)
    assert (a.video_port, a.audio_port, b.video_port) == (25000, 25002, 25004)
    assert a.video_ssrc != b.video_ssrc and a.mountpoint_id != b.mountpoint_id
    with pytest.raises(Conflict, match="all 2 channels"):
        pool.acquire("p3")
    a.source = CAM
    pool.release(a)
    assert a.source is None and pool.acquire("p3").index == 0
