"""RTCP compound packets: exact bytes of feedback messages, round trips of every type the switch
speaks, unknown types kept verbatim, malformed input refused with the sub-packet and reason."""

from __future__ import annotations

import pytest

from vmesh.switch.rtcp import (
    ReportBlock,
    RtcpBye,
    RtcpFir,
    RtcpNack,
    RtcpPli,
    RtcpReceiverReport,
    RtcpSdes,
    RtcpSenderReport,
    RtcpUnknown,
    SdesChunk,
    ntp_middle32,
    ntp_timestamp,
    parse_compound,
    serialize_compound,
)
from vmesh.switch.rtp import MalformedPacket

pytestmark = pytest.mark.unit


def test_pli_exact_bytes() -> None:
    data = RtcpPli(sender_ssrc=1, media_ssrc=0x846F0A4C).serialize()
    assert data == bytes.fromhex("81ce000200000001846f0a4c")
    assert parse_compound(data) == [RtcpPli(1, 0x846F0A4C)]


def test_fir_exact_bytes() -> None:
    data = RtcpFir(sender_ssrc=1, entries=((0x1234, 7),)).serialize()
    assert data == bytes.fromhex("84ce000400000001000000000000123407000000")
    assert parse_compound(data) == [RtcpFir(1, ((0x1234, 7),))]


def test_nack_bitmask_and_wrap() -> None:
    lost = (65534, 65535, 0, 3, 100)
    data = RtcpNack(9, 10, lost).serialize()
    # PID 0 with bits for 3 and the wrapped 65534/65535 cannot share a PID: three FCI entries.
    (parsed,) = parse_compound(data)
    assert isinstance(parsed, RtcpNack)
    assert sorted(parsed.lost) == sorted(lost)
    assert len(data) == 12 + 4 * 3
    # PID 1, BLP 0b101: 1, 2 and 4 lost.
    raw = bytes.fromhex("81cd0003000000090000000a00010005")
    assert parse_compound(raw) == [RtcpNack(9, 10, (1, 2, 4))]


def test_sender_report_with_blocks_sdes_and_bye_round_trip() -> None:
    block = ReportBlock(
        ssrc=77, fraction_lost=64, cumulative_lost=-3, highest_sequence=0x1FFFF, jitter=900,
        lsr=0xAABBCCDD, dlsr=65536,
    )  # fmt: skip
    packets = [
        RtcpSenderReport(5, ntp_timestamp(1_700_000_000.5), 123456, 10, 12000, (block,)),
        RtcpSdes((SdesChunk(5, ((1, "视频-a@vmesh".encode()), (2, b"name"))),)),
        RtcpBye((5, 6), "channel closed"),
    ]
    data = serialize_compound(packets)
    assert len(data) % 4 == 0
    parsed = parse_compound(data)
    assert parsed == packets
    sdes = parsed[1]
    assert isinstance(sdes, RtcpSdes) and sdes.chunks[0].cname == "视频-a@vmesh"


def test_receiver_report_and_cname_helper() -> None:
    rr = RtcpReceiverReport(1, (ReportBlock(2, 0, 0, 5, 0),))
    cname = RtcpSdes.cname(1, "abc")  # 4+2+3 = 9 bytes → null item + padding to 12
    data = serialize_compound([rr, cname])
    assert parse_compound(data) == [rr, cname]
    assert len(cname.serialize()) == 4 + 12


def test_ntp_conversion() -> None:
    ntp = ntp_timestamp(0.5)
    assert ntp >> 32 == 2208988800
    assert ntp & 0xFFFFFFFF == 1 << 31
    assert ntp_middle32(ntp) == ((2208988800 & 0xFFFF) << 16) | 0x8000


def test_unknown_types_are_kept_verbatim() -> None:
    remb = bytes.fromhex("8fce0005000000010000000052454d420100012300000002")
    app = bytes.fromhex("80cc00020000000141424344")
    parsed = parse_compound(remb + app)
    assert parsed == [RtcpUnknown(206, 15, remb[4:]), RtcpUnknown(204, 0, app[4:])]
    assert serialize_compound(parsed) == remb + app


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x80\xc9", "rtcp.length"),
        (bytes.fromhex("40c9000100000001"), "rtcp[0].version"),
        (bytes.fromhex("80c9000500000001"), "rtcp[0].length"),
        (bytes.fromhex("81c9000100000001"), "rtcp[0].rr"),
        (bytes.fromhex("81ce000100000001"), "rtcp[0].pli"),
        (bytes.fromhex("84ce0003000000010000000000000001"), "rtcp[0].fir.fci"),
        (bytes.fromhex("80c900010000000181ce00"), "rtcp[1].length"),
        (bytes.fromhex("81ca0002000000010105616263"), "rtcp[0].sdes[0].item"),
        (bytes.fromhex("81ca000100000001"), "rtcp[0].sdes[0]"),
        (bytes.fromhex("a0c9000100000000"), "rtcp[0].padding"),
    ],
)
def test_malformed_compound_names_the_sub_packet(data: bytes, field: str) -> None:
    with pytest.raises(MalformedPacket) as e:
        parse_compound(data)
    assert e.value.field == field
