"""RTP wire format: exact fields of captured ffmpeg packets, round trips, and malformed packets
refused with the field and the reason."""

from __future__ import annotations

import pytest

from vmesh.errors import InvalidInput
from vmesh.switch.rtp import MalformedPacket, RtpPacket, is_rtcp, parse_rtp, seq_distance

pytestmark = pytest.mark.unit

# First packet of `ffmpeg -f lavfi -i testsrc2 -c:v libx264 -f rtp`: a STAP-A with SPS and PPS.
FFMPEG_H264_STAP_A = bytes.fromhex(
    "806008cefa1ea4d8846f0a4c1800186742c00bda0a11f97011000003000100000300328f142aa0000468ce0fc8"
)
# The last packet of that IDR frame (FU-A end), cut after 24 bytes: marker set.
FFMPEG_H264_FU_END = bytes.fromhex("80e008e1fa1ea4d8846f0a4c7c457297f948f5184e02925f")


def test_captured_ffmpeg_packet_fields() -> None:
    p = parse_rtp(FFMPEG_H264_STAP_A)
    assert (p.payload_type, p.sequence_number, p.timestamp, p.ssrc) == (
        96,
        0x08CE,
        0xFA1EA4D8,
        0x846F0A4C,
    )
    assert p.marker is False
    assert p.payload[0] == 0x18  # STAP-A
    assert p.csrc == () and p.extension_profile is None and p.padding == 0
    end = parse_rtp(FFMPEG_H264_FU_END)
    assert end.marker is True and end.sequence_number == 0x08E1
    assert end.serialize() == FFMPEG_H264_FU_END
    assert p.serialize() == FFMPEG_H264_STAP_A


def test_round_trip_with_csrc_extension_and_padding() -> None:
    p = RtpPacket(
        payload_type=111,
        sequence_number=65535,
        timestamp=0xFFFFFFFF,
        ssrc=7,
        marker=True,
        csrc=(1, 2, 3),
        extension_profile=0xBEDE,
        extension=b"\x10\xff\x00\x00",
        payload=b"opus-frame",
        padding=4,
    )
    data = p.serialize()
    assert len(data) == 12 + 12 + 4 + 4 + 10 + 4
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert parse_rtp(data) == p


@pytest.mark.parametrize(
    ("data", "field", "reason_part"),
    [
        (b"\x80\x60\x00", "rtp.length", "shorter than the 12-byte"),
        (bytes([0x40]) + bytes(11), "rtp.version", "must be 2"),
        (bytes([0x82, 0x60]) + bytes(10) + b"\x00\x00\x00\x01", "rtp.csrc_count", "2 CSRCs"),
        (bytes([0x90, 0x60]) + bytes(10) + b"\xbe\xde", "rtp.extension", "cut short"),
        (bytes([0x90, 0x60]) + bytes(10) + b"\xbe\xde\x00\x05", "rtp.extension", "5 words"),
        (bytes([0xA0, 0x60]) + bytes(10) + b"ab\x09", "rtp.padding", "padding count 9"),
        (bytes([0xA0, 0x60]) + bytes(10) + b"ab\x00", "rtp.padding", "padding count 0"),
        (bytes([0x80, 0xC8]) + bytes(10), "rtp.payload_type", "RTCP"),
    ],
)
def test_malformed_packets_name_the_field(data: bytes, field: str, reason_part: str) -> None:
    with pytest.raises(MalformedPacket) as e:
        parse_rtp(data)
    assert e.value.field == field
    assert reason_part in e.value.reason
    assert isinstance(e.value, InvalidInput)
    assert e.value.errors[0].field == field


def test_serialize_refuses_values_that_do_not_fit() -> None:
    with pytest.raises(MalformedPacket) as e:
        RtpPacket(payload_type=128, sequence_number=0, timestamp=0, ssrc=0).serialize()
    assert e.value.field == "rtp.payload_type"
    with pytest.raises(MalformedPacket) as e:
        RtpPacket(96, 70000, 0, 0).serialize()
    assert e.value.field == "rtp.sequence_number"
    with pytest.raises(MalformedPacket) as e:
        RtpPacket(96, 0, 0, 0, extension_profile=1, extension=b"abc").serialize()
    assert e.value.field == "rtp.extension"


def test_rtcp_demux_and_sequence_arithmetic() -> None:
    assert is_rtcp(bytes([0x80, 200, 0, 6]))
    assert is_rtcp(bytes([0x81, 206, 0, 2]))
    assert not is_rtcp(FFMPEG_H264_STAP_A)
    assert not is_rtcp(FFMPEG_H264_FU_END)  # PT 96 with marker = 224, outside 192–223
    assert seq_distance(0, 65535) == 1
    assert seq_distance(65535, 0) == -1
    assert seq_distance(10, 5) == 5
