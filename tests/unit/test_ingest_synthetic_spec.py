"""Synthetic cameras: colours, tones, layout, command lines and spec checks (no processes)."""

from __future__ import annotations

import colorsys
import itertools
from pathlib import Path

import pytest

from vmesh.errors import InvalidInput
from vmesh.ingest.ffmpeg import RtpTarget
from vmesh.ingest.synthetic import (
    ClipCache,
    SyntheticSpec,
    clip_encode_argv,
    clip_loop_argv,
    live_argv,
    patch_colour,
    patch_hue,
    patch_rect,
    tone_frequency,
)

pytestmark = pytest.mark.unit

CODES = [f"3301060000131{n:07d}" for n in range(1, 17)]
TARGET = RtpTarget("127.0.0.1", 40000, 40002, video_ssrc=0xCAFE0001, audio_ssrc=7)
FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
NAME = Path("/data/ingest/text/abc.txt")


def hue_gap(a: str, b: str) -> float:
    d = abs(patch_hue(a) - patch_hue(b)) % 360
    return min(d, 360 - d)


def test_colour_is_deterministic_saturated_and_distinct_for_neighbours() -> None:
    assert patch_colour(CODES[0]) == patch_colour(CODES[0])
    for code in CODES:
        r, g, b = patch_colour(code)
        _, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        assert s > 0.99 and v > 0.99
    # Consecutive codes are far apart on the colour wheel (golden-angle spacing: ~137.5°).
    for a, b in itertools.pairwise(CODES):
        assert hue_gap(a, b) > 100
    # Any two of a 4-camera polling list differ by a clearly visible hue.
    for a, b in itertools.combinations(CODES[:4], 2):
        assert hue_gap(a, b) > 30


def test_tones_are_in_range_and_differ_for_neighbours() -> None:
    tones = [tone_frequency(c) for c in CODES]
    assert all(220 <= t <= 1400 and t % 20 == 0 for t in tones)
    assert all(a != b for a, b in itertools.pairwise(tones))


def test_patch_is_the_top_left_quarter() -> None:
    assert patch_rect(1280, 720) == (0, 0, 320, 180)
    assert patch_rect(640, 360) == (0, 0, 160, 90)
    assert patch_rect(322, 242) == (0, 0, 80, 60)  # even sizes for YUV 4:2:0


def test_live_command_line() -> None:
    spec = SyntheticSpec(CODES[0], "西湖 1号", width=640, height=360, fps=30, gop=60)
    argv = live_argv(spec, TARGET, FONT, NAME, "ffmpeg")
    s = " ".join(argv)
    assert argv[0] == "ffmpeg"
    assert "testsrc2=size=640x360:rate=30" in s
    r, g, b = patch_colour(CODES[0])
    assert f"drawbox=x=0:y=0:w=160:h=90:color=0x{r:02X}{g:02X}{b:02X}:t=fill" in s
    assert f"fontfile={FONT}" in s and f"textfile={NAME}" in s and "expansion=none" in s
    assert f"sine=frequency={tone_frequency(CODES[0])}" in s
    for opt in (
        "-c:v libx264", "-profile:v baseline", "-bf 0", "-tune zerolatency", "-g 60",
        "-keyint_min 60", "-sc_threshold 0", "repeat-headers=1", "-c:a libopus",
    ):  # fmt: skip
        assert opt in s, opt
    assert s.count("-re ") == 2  # both lavfi inputs at real-time pace
    i = argv.index("rtp://127.0.0.1:40000?rtcpport=40001&pkt_size=1200")
    assert argv[i - 4 : i] == ["-payload_type", "96", "-ssrc", str(0xCAFE0001 - (1 << 32))]
    assert "rtp://127.0.0.1:40002?rtcpport=40003&pkt_size=1200" in argv
    assert argv[argv.index("rtp://127.0.0.1:40002?rtcpport=40003&pkt_size=1200") - 3] == "111"


def test_no_audio_when_disabled_or_no_port() -> None:
    for spec, target in (
        (SyntheticSpec(CODES[0], "a", audio=False), TARGET),
        (SyntheticSpec(CODES[0], "a"), RtpTarget("127.0.0.1", 40000)),
    ):
        s = " ".join(live_argv(spec, target, FONT, NAME))
        assert "libopus" not in s and "40002" not in s


def test_clip_commands_encode_whole_gops_and_loop_with_copy(tmp_path: Path) -> None:
    spec = SyntheticSpec(CODES[1], "b", fps=25, gop=50, mode="clip", clip_seconds=3)
    assert spec.clip_frames == 100  # 3 s rounded up to whole 2 s GOPs
    enc = clip_encode_argv(spec, FONT, NAME, tmp_path / "x.mkv")
    s = " ".join(enc)
    assert "-frames:v 100" in s and "-t 4.000" in s and "%{pts" in s and enc[-1].endswith("x.mkv")
    loop = clip_loop_argv(spec, tmp_path / "x.mkv", TARGET)
    assert loop[loop.index("-stream_loop") + 1] == "-1" and "-re" in loop
    assert loop.count("copy") == 2 and "libx264" not in loop


def test_clip_path_changes_with_the_picture_not_with_the_mode(tmp_path: Path) -> None:
    cache = ClipCache(tmp_path)
    a = SyntheticSpec(CODES[0], "a", mode="clip")
    assert cache.path_for(a, FONT) == cache.path_for(SyntheticSpec(CODES[0], "a"), FONT)
    assert cache.path_for(a, FONT) != cache.path_for(
        SyntheticSpec(CODES[0], "b", mode="clip"), FONT
    )
    assert cache.path_for(a, FONT) != cache.path_for(SyntheticSpec(CODES[0], "a", width=640), FONT)
    assert cache.path_for(a, FONT).parent == tmp_path


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"code": ""}, "code"),
        ({"name": "  "}, "name"),
        ({"width": 8}, "width"),
        ({"width": 641}, "width"),
        ({"fps": 0}, "fps"),
        ({"gop": 0}, "gop"),
        ({"bitrate_kbps": 1}, "bitrate_kbps"),
        ({"mode": "rtsp"}, "mode"),
        ({"color": "red"}, "color"),
    ],
)
def test_spec_refuses_bad_values_by_field(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"code": CODES[0], "name": "a"}
    with pytest.raises(InvalidInput) as e:
        SyntheticSpec(**{**base, **kwargs})  # type: ignore[arg-type]
    assert e.value.errors[0].field == field


def test_from_attrs() -> None:
    spec = SyntheticSpec.from_attrs(
        CODES[2], "c", {"width": 640, "height": 360, "mode": "clip", "color": "#20c020", "x": 1}
    )
    assert (spec.width, spec.height, spec.mode, spec.rgb) == (640, 360, "clip", (0x20, 0xC0, 0x20))
    with pytest.raises(InvalidInput) as e:
        SyntheticSpec.from_attrs(CODES[2], "c", {"fps": "25"})
    assert e.value.errors[0].field == "attrs.fps"
    with pytest.raises(InvalidInput) as e:
        SyntheticSpec.from_attrs(CODES[2], "c", {"gop": 0})
    assert e.value.errors[0].field == "attrs.gop"
    with pytest.raises(InvalidInput) as e:
        SyntheticSpec.from_attrs(CODES[2], "c", {"audio": 1})
    assert e.value.errors[0].field == "attrs.audio"
