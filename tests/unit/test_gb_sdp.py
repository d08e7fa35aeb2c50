"""GB SDP offers/answers and the SSRC allocator."""

from __future__ import annotations

import pytest

from vmesh.gb28181.sdp import GbSdp, SdpError, SsrcAllocator, SsrcExhausted, parse_sdp

pytestmark = pytest.mark.unit

DEVICE_ANSWER = (
    "v=0\n"
    "o=34020000001320000001 0 0 IN IP4 192.168.1.64\n"
    "s=Play\n"
    "c=IN IP4 192.168.1.64\n"
    "t=0 0\n"
    "m=video 15060 TCP/RTP/AVP 96\n"
    "a=sendonly\n"
    "a=rtpmap:96 PS/90000\n"
    "a=setup:active\n"
    "a=connection:new\n"
    "a=filesize:0\n"
    "x=vendor-extension\n"
    "y=0100000001\n"
    "f=v/2/5/25/1/4096a/1/8/1\n"
)


def test_parse_device_answer_tolerates_unknown_lines() -> None:
    s = parse_sdp(DEVICE_ANSWER.encode())
    assert s.session_name == "Play"
    assert (s.origin_user, s.connection_address, s.port) == (
        "34020000001320000001",
        "192.168.1.64",
        15060,
    )
    assert s.tcp and s.setup == "active" and s.connection_new
    assert s.direction == "sendonly"
    assert s.rtpmap == {96: "PS/90000"} and s.payload_types == [96]
    assert s.ssrc == "0100000001" and s.ssrc_value == 100000001
    assert s.media_format == "v/2/5/25/1/4096a/1/8/1"
    assert s.extra_attributes == ["filesize:0"]
    assert s.unknown_lines == ["x=vendor-extension"]


def test_live_offer_encodes_gb_shape() -> None:
    offer = GbSdp(
        session_name="Play",
        origin_user="34020000002000000001",
        origin_address="10.0.0.1",
        connection_address="10.0.0.1",
        port=30000,
        payload_types=[96, 97, 98],
        rtpmap={96: "PS/90000", 97: "MPEG4/90000", 98: "H264/90000"},
        direction="recvonly",
        ssrc="0020000001",
    )
    text = offer.encode()
    assert text.split("\r\n")[:9] == [
        "v=0",
        "o=34020000002000000001 0 0 IN IP4 10.0.0.1",
        "s=Play",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=video 30000 RTP/AVP 96 97 98",
        "a=recvonly",
        "a=rtpmap:96 PS/90000",
        "a=rtpmap:97 MPEG4/90000",
    ]
    assert text.endswith("y=0020000001\r\n")
    assert parse_sdp(text) == offer


def test_playback_offer_with_tcp_passive() -> None:
    offer = GbSdp(
        session_name="Playback",
        uri="34020000001320000001:0",
        start=1704067200,
        stop=1704070800,
        tcp=True,
        setup="passive",
        connection_new=True,
        port=30002,
        ssrc="1020000001",
    )
    text = offer.encode()
    assert "u=34020000001320000001:0\r\n" in text and "t=1704067200 1704070800\r\n" in text
    assert "m=video 30002 TCP/RTP/AVP 96\r\n" in text and "a=setup:passive\r\n" in text
    back = parse_sdp(text)
    assert back.is_playback and back.start == 1704067200 and back == offer


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("v=0\ns=Play\n", "m"),
        ("v=0\nm=video x RTP/AVP 96\n", "m"),
        ("v=0\nm=video 1 RTP/AVP 96\ny=12ab\n", "y"),
        ("v=0\nm=video 1 RTP/AVP 96\ny=9999999999\n", "y"),
        ("v=0\nt=now\nm=video 1 RTP/AVP 96\n", "t"),
        ("v=1\nm=video 1 RTP/AVP 96\n", "v"),
        # "²" is a digit to str.isdigit but not to int(): refused by name, not a ValueError
        ("v=0\nt=\u00b2 0\nm=video 1 RTP/AVP 96\n", "t"),
        ("v=0\nm=video \u00b2 RTP/AVP 96\n", "m"),
        ("v=0\nm=video 1 RTP/AVP 96\na=rtpmap:\u00b2 PS/90000\n", "a=rtpmap"),
    ],
)
def test_bad_sdp_names_the_line(text: str, field: str) -> None:
    with pytest.raises(SdpError) as e:
        parse_sdp(text)
    assert e.value.field == field


def test_ssrc_allocator_never_reuses_a_used_ssrc_and_frees_on_release() -> None:
    alloc = SsrcAllocator("3402000000", quarantine=15.0)
    a = alloc.allocate(0.0)
    b = alloc.allocate(0.0)
    p = alloc.allocate(0.0, playback=True)
    assert (a, b, p) == ("0200000000", "0200000001", "1200000000")
    assert alloc.in_use == 3
    assert alloc.release(a, 1.0) and not alloc.release(a, 1.0)
    assert alloc.in_use == 2
    # Fill every live slot: the resting one and the used one are never handed out.
    got = {alloc.allocate(2.0) for _ in range(9998)}
    assert a not in got and b not in got and len(got) == 9998
    with pytest.raises(SsrcExhausted):
        alloc.allocate(2.0)
    assert alloc.allocate(16.0) == a  # quarantine over
    for s in [*got, a, b, p]:
        alloc.release(s, 20.0)
    assert alloc.in_use == 0


def test_ssrc_reserve_adopts_a_device_chosen_value() -> None:
    alloc = SsrcAllocator("3402000000", quarantine=0)
    assert alloc.reserve("0123456789") and not alloc.reserve("0123456789")
    assert alloc.is_used("0123456789")
    assert alloc.release("0123456789", 0.0) and alloc.in_use == 0
    with pytest.raises(SdpError):
        SsrcAllocator("34020")


def test_superscript_digits_in_ignored_places_are_ignored() -> None:
    sdp = parse_sdp("v=0\nm=video 1 RTP/AVP 96 \u00b2\na=downloadspeed:\u00b2\n")
    assert sdp.payload_types == [96] and sdp.download_speed is None
