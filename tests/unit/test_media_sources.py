"""Camera attrs read as ingest sources (media defaults, field errors, pull mode), the pool."""

from __future__ import annotations

import pytest

from vmesh.errors import Conflict, InvalidInput
from vmesh.ingest.rtsp import RtspSettings
from vmesh.ingest.synthetic import SyntheticSpec, patch_colour
from vmesh.media.channels import ChannelPool
from vmesh.media.sources import pull_of, source_from_attrs

pytestmark = pytest.mark.unit

CAM = "33010601001326000101"


def test_synthetic_camera_gets_the_media_defaults_and_its_own_colour() -> None:
    s = source_from_attrs(CAM, "龙坞 1号", {"source": "synthetic"})
    assert isinstance(s, SyntheticSpec)
    assert (s.width, s.height, s.fps, s.gop, s.mode, s.name) == (
        640,
        360,
        25,
        25,
        "clip",
        "龙坞 1号",
    )
    assert s.rgb == patch_colour(CAM)
    other = "33010601001326000102"
    assert source_from_attrs(other, "x", {"source": "synthetic"}).rgb != s.rgb
    given = source_from_attrs(
        CAM, "x", {"source": "synthetic", "fps": 10, "color": "#AABBCC", "mode": "live"}
    )
    assert isinstance(given, SyntheticSpec)
    assert (given.fps, given.gop, given.rgb, given.mode) == (10, 10, (0xAA, 0xBB, 0xCC), "live")
    assert pull_of(given) == "on_demand"


def test_bad_synthetic_attribute_is_named() -> None:
    with pytest.raises(InvalidInput) as e:
        source_from_attrs(CAM, "x", {"source": "synthetic", "width": 641})
    assert e.value.errors[0].field == "attrs.width"
    with pytest.raises(InvalidInput) as e:
        source_from_attrs(CAM, "x", {"source": "synthetic", "fps": "25"})
    assert e.value.errors[0].field == "attrs.fps"


def test_rtsp_camera_settings_and_pull_mode() -> None:
    s = source_from_attrs(CAM, "x", {"rtsp_url": "rtsp://admin:secret@10.1.2.3:554/main"})
    assert isinstance(s, RtspSettings)
    assert (s.url, s.username, s.password, s.transport) == (
        "rtsp://10.1.2.3:554/main",
        "admin",
        "secret",
        "tcp",
    )
    assert pull_of(s) == "on_demand"
    always = source_from_attrs(
        CAM, "x", {"rtsp_url": "rtsp://cam/main", "rtsp_transport": "udp", "pull": "always"}
    )
    assert isinstance(always, RtspSettings) and always.transport == "udp"
    assert pull_of(always) == "always"
    with pytest.raises(InvalidInput) as e:
        source_from_attrs(CAM, "x", {"rtsp_url": "http://x/y", "pull": "sometimes"})
    assert {x.field for x in e.value.errors} == {"attrs.rtsp_url", "attrs.pull"}


def test_camera_without_source_is_refused_with_the_way_out() -> None:
    with pytest.raises(InvalidInput) as e:
        source_from_attrs(CAM, "x", {"model": "DS-2CD3T46"})
    assert "set attrs.rtsp_url or attrs.source = synthetic" in e.value.errors[0].reason
    with pytest.raises(InvalidInput) as e:
        source_from_attrs(CAM, "x", {"source": "onvif"})
    assert e.value.errors[0].field == "attrs.source"


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
