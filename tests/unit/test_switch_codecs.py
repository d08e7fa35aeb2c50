"""Keyframe detection on captured ffmpeg packets (libx264, libx265) and on hand-built payloads."""

from __future__ import annotations

import pytest

from vmesh.switch.codecs import Codec, starts_keyframe
from vmesh.switch.rtp import parse_rtp

pytestmark = pytest.mark.unit

# Captured from `ffmpeg -f lavfi -i testsrc2 ... -f rtp` (payloads cut after 24 bytes where long).
H264_STAP_A_SPS_PPS = (
    "806008cefa1ea4d8846f0a4c1800186742c00bda0a11f97011000003000100000300328f142aa0000468ce0fc8"
)
H264_FU_A_IDR_START = "806008d2fa1ea4d8846f0a4c7c8588843a0c600142011158"
H264_FU_A_IDR_END = "80e008e1fa1ea4d8846f0a4c7c457297f948f5184e02925f"
H264_FU_A_P_START = "806008e2fa1eb2e8846f0a4c5c819a208bc3b26333f075e0"
H264_FU_A_SEI_START = "80600b6664e2421750fc1b281c8605ffff56dc45e9bde6d9"
H265_AP_VPS_SPS_PPS = (
    "80600cdee43215ac054643f56001001840010c01ffff01600000030090000003000003001eba0240002a4201010160"
    "0000030090000003000003001ea01420207cb96e92930bc05a02000003000200000300321000064401c073c189"
)
H265_FU_IDR_START = "80600ce9e43215ac054643f562011462f818b7656f597039"
H265_FU_TRAIL_START = "80600cf2e43223bc054643f5620181d0097883a413f56937"
H265_FU_TRAIL_MIDDLE = "80600cf3e43223bc054643f5620101f16d6a43f77a9e9dcb"


def payload(hexdata: str) -> bytes:
    return parse_rtp(bytes.fromhex(hexdata)).payload


@pytest.mark.parametrize(
    ("codec", "packet", "key"),
    [
        (Codec.h264, H264_STAP_A_SPS_PPS, True),
        (Codec.h264, H264_FU_A_IDR_START, True),
        (Codec.h264, H264_FU_A_IDR_END, False),  # not the start of the NAL unit
        (Codec.h264, H264_FU_A_P_START, False),
        (Codec.h264, H264_FU_A_SEI_START, False),
        (Codec.h265, H265_AP_VPS_SPS_PPS, True),
        (Codec.h265, H265_FU_TRAIL_START, False),
        (Codec.h265, H265_FU_TRAIL_MIDDLE, False),
    ],
)
def test_captured_ffmpeg_packets(codec: Codec, packet: str, key: bool) -> None:
    assert starts_keyframe(codec, payload(packet)) is key


def test_h265_fu_idr_start_bit() -> None:
    p = payload(H265_FU_IDR_START)
    # FU header 0x14: start bit clear (a middle fragment of an IDR); with S set it starts one.
    assert (p[0] >> 1) & 0x3F == 49
    assert starts_keyframe(Codec.h265, p) is False
    assert starts_keyframe(Codec.h265, p[:2] + bytes([0x80 | 20]) + p[3:]) is True


@pytest.mark.parametrize(
    ("p", "key"),
    [
        (b"\x65\x88\x84", True),  # single NAL, IDR
        (b"\x67\x42\xc0", True),  # single NAL, SPS
        (b"\x68\xce", False),  # PPS alone
        (b"\x41\x9a", False),  # P slice
        (b"\x18\x00\x02\x09\x10\x00\x02\x65\x88", True),  # STAP-A: AUD, IDR
        (b"\x18\x00\x02\x09\x10\x00\x02\x41\x9a", False),  # STAP-A: AUD, P
        (b"\x18\x00\x09\x67", False),  # STAP-A whose size runs past the packet
        (b"\x7c\x85\x00", True),  # FU-A start, IDR
        (b"\x7c\x05\x00", False),  # FU-A middle, IDR
        (b"\x7c", False),  # FU-A cut short
        (b"", False),
    ],
)
def test_h264_hand_built(p: bytes, key: bool) -> None:
    assert starts_keyframe(Codec.h264, p) is key


@pytest.mark.parametrize(
    ("p", "key"),
    [
        (bytes([19 << 1, 1]) + b"\xaa", True),  # IDR_W_RADL
        (bytes([21 << 1, 1]) + b"\xaa", True),  # CRA
        (bytes([16 << 1, 1]) + b"\xaa", True),  # BLA_W_LP
        (bytes([1 << 1, 1]) + b"\xaa", False),  # TRAIL_R
        (bytes([34 << 1, 1]), True),  # PPS
        (bytes([39 << 1, 1]), False),  # prefix SEI
        (bytes([48 << 1, 1, 0, 2, 1 << 1, 1, 0, 2, 19 << 1, 1]), True),  # AP: TRAIL, IDR
        (bytes([48 << 1, 1, 0, 2, 1 << 1, 1]), False),  # AP: TRAIL only
        (bytes([49 << 1, 1, 0x80 | 19]), True),  # FU start IDR
        (bytes([49 << 1, 1, 0x40 | 19]), False),  # FU end IDR
        (b"\x26", False),
    ],
)
def test_h265_hand_built(p: bytes, key: bool) -> None:
    assert starts_keyframe(Codec.h265, p) is key


@pytest.mark.parametrize("codec", [Codec.opus, Codec.pcmu, Codec.pcma])
def test_audio_packets_are_always_random_access_points(codec: Codec) -> None:
    assert starts_keyframe(codec, b"\x01\x02")
