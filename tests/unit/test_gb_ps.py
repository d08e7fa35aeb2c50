"""PS demuxer on hand-made bytes: PSM typing, pack stuffing, split PES, resync, RTP loss."""

from __future__ import annotations

import pytest

from vmesh.gb28181.ps import (
    AccessUnit,
    PsCodec,
    PsDemuxer,
    PsMuxer,
    RtpPsPacketizer,
    RtpPsReceiver,
    packetize_h265,
)

pytestmark = pytest.mark.unit

H265_IDR = b"\x00\x00\x00\x01\x40\x01\x0c\x01" + b"\x00\x00\x01\x26\x01" + bytes(range(256)) * 300
H265_P = b"\x00\x00\x00\x01\x02\x01" + b"\xaa" * 500


def test_psm_types_h265_and_split_pes_joined_with_keyframe_flag() -> None:
    mux = PsMuxer(PsCodec.h265, PsCodec.pcmu)
    ps = mux.mux(AccessUnit(PsCodec.h265, 0xE0, 90000, H265_IDR, True))
    assert ps.count(b"\x00\x00\x01\xe0") == 2  # 76 kB needs two PES
    ps2 = mux.mux(AccessUnit(PsCodec.pcmu, 0xC0, 90000, b"\xff" * 160))
    dm = PsDemuxer()
    aus = dm.feed(ps + ps2) + dm.flush()
    assert dm.stream_types == {0xE0: PsCodec.h265, 0xC0: PsCodec.pcmu}
    assert [(a.codec, a.pts, a.is_keyframe) for a in aus] == [
        (PsCodec.h265, 90000, True),
        (PsCodec.pcmu, 90000, True),
    ]
    assert aus[0].data == H265_IDR


def test_junk_and_stuffing_are_skipped() -> None:
    mux = PsMuxer(PsCodec.h265)
    frame = bytearray(mux.mux(AccessUnit(PsCodec.h265, 0xE0, 3600, H265_P)))
    frame[13] = 0xFA  # 2 stuffing bytes in the pack header
    frame[14:14] = b"\xff\xff"
    first = mux.mux(AccessUnit(PsCodec.h265, 0xE0, 0, H265_IDR, True))
    dm = PsDemuxer()
    aus = dm.feed(b"garbage!" + first + b"\x00\x00\x01\x00junk" + bytes(frame)) + dm.flush()
    assert [a.pts for a in aus] == [0, 3600]
    assert aus[1].data == H265_P and not aus[1].is_keyframe
    assert dm.stats.resyncs == 2


def test_truncated_input_never_raises() -> None:
    ps = PsMuxer(PsCodec.h265).mux(AccessUnit(PsCodec.h265, 0xE0, 0, H265_IDR, True))
    for cut in (3, 10, 20, 40, len(ps) // 2, len(ps) - 1):
        dm = PsDemuxer()
        dm.feed(ps[:cut])
        assert dm.flush() == [] or cut > 40
    assert PsDemuxer().feed(b"\x00\x00\x01\xbc\xff\xff") == []


def test_wrong_ssrc_ignored_and_lost_first_packet_drops_frame() -> None:
    mux = PsMuxer(PsCodec.h265)
    rtp = RtpPsPacketizer(ssrc=1234, mtu=1000)
    pk = [
        p
        for i in range(3)
        for p in rtp.packetize(
            mux.mux(
                AccessUnit(PsCodec.h265, 0xE0, 3600 * i, H265_IDR if i == 0 else H265_P, i == 0)
            ),
            3600 * i,
        )
    ]
    rx = RtpPsReceiver(ssrc=1234)
    stranger = RtpPsPacketizer(ssrc=99).packetize(b"\x00" * 10, 0)[0]
    assert rx.receive(stranger) == []
    assert rx.reassembler.stats.wrong_ssrc == 1
    # Lose the last packet of frame 0 (its marker): frame 0 is dropped, 1 and 2 come through.
    last0 = max(i for i, p in enumerate(pk) if p.timestamp == 0)
    out = [a for i, p in enumerate(pk) if i != last0 for a in rx.receive(p)]
    assert [a.pts for a in out] == [3600, 7200]
    assert rx.reassembler.stats.dropped_frames == 1


def test_h265_fu_fragments_carry_type_and_start_end_bits() -> None:
    payloads = packetize_h265(H265_IDR, mtu=1000)
    assert payloads[0] == b"\x40\x01\x0c\x01"  # the VPS fits in one packet
    fus = payloads[1:]
    assert all((p[0] >> 1) & 0x3F == 49 for p in fus)
    assert fus[0][2] == 0x80 | 19 and fus[-1][2] == 0x40 | 19
    assert all(p[2] & 0x3F == 19 for p in fus) and all(len(p) <= 1000 for p in fus)
    assert (
        b"".join(p[3:] for p in fus) == H265_IDR[13:]
    )  # after the start code and 2-byte NAL header


def test_rfc4571_frames_survive_any_split_and_skip_empty_frames() -> None:
    from vmesh.gb28181.ps import Rfc4571Deframer, frame_rfc4571

    packets = [b"\x80" + bytes(range(n % 256)) * (n // 256 + 1) for n in (1, 300, 1400, 5)]
    stream = b"".join(frame_rfc4571(p) for p in packets[:2]) + b"\x00\x00"
    stream += b"".join(frame_rfc4571(p) for p in packets[2:])
    for cut in (1, 2, 3, 7, 500):
        d = Rfc4571Deframer()
        out = []
        for i in range(0, len(stream), cut):
            out += d.feed(stream[i : i + cut])
        assert out == packets and d.pending == 0
    d = Rfc4571Deframer()
    assert d.feed(b"\x00\x10abc") == [] and d.pending == 5  # a partial frame is held back
    with pytest.raises(ValueError):
        frame_rfc4571(bytes(70000))
