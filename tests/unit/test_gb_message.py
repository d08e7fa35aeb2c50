"""SIP message parsing as GB/T 28181 devices send it: exact fields from hand-written bytes."""

from __future__ import annotations

import pytest

from vmesh.gb28181.message import (
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
    parse_uri,
)

pytestmark = pytest.mark.unit

# A REGISTER as a Hikvision-style IPC sends it, but with bare LF line ends, compact headers,
# a folded header and a GB2312 display name.
LF_REGISTER = (
    b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\n"
    b"v: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK4162288924\n"
    b'f: "' + "杭州西湖摄像机".encode("gb2312") + b'" <sip:34020000001320000001@3402000000>'
    b";tag=382068091\n"
    b"t: <sip:34020000001320000001@3402000000>\n"
    b"i: 143225205\n"
    b"CSeq: 1 REGISTER\n"
    b"m: <sip:34020000001320000001@192.168.1.64:5060>\n"
    b"Max-Forwards: 70\n"
    b"User-Agent: IP Camera\n"
    b"Subject: 34020000001320000001:0,\n"
    b"  34020000002000000001:0\n"
    b"Expires: 3600\n"
    b"l: 0\n"
    b"\n"
)


def test_lf_only_register_with_compact_headers_and_gb2312_name() -> None:
    msg = parse_message(LF_REGISTER)
    assert isinstance(msg, SipRequest)
    assert msg.method == "REGISTER"
    assert msg.uri.user == "34020000002000000001"
    assert msg.uri.host == "3402000000"  # a numeric host, which strict parsers refuse
    assert msg.uri.port is None
    via = msg.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "192.168.1.64", 5060)
    assert via.branch == "z9hG4bK4162288924"
    assert via.has_rport and via.rport is None
    fr = msg.from_
    assert fr.display_name == "杭州西湖摄像机"
    assert fr.uri.user == "34020000001320000001" and fr.tag == "382068091"
    assert msg.to.tag is None
    assert msg.call_id == "143225205"
    assert (msg.cseq.seq, msg.cseq.method) == (1, "REGISTER")
    assert str(msg.contacts[0].uri) == "sip:34020000001320000001@192.168.1.64:5060"
    assert msg.expires == 3600
    assert msg.headers.get("Subject") == "34020000001320000001:0, 34020000002000000001:0"
    assert msg.body == b""


def test_serialise_round_trip_uses_crlf_and_full_names() -> None:
    msg = parse_message(LF_REGISTER)
    wire = msg.to_bytes()
    assert wire.startswith(b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n")
    assert b"\r\nVia: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK4162288924\r\n" in wire
    assert b"\r\nCall-ID: 143225205\r\n" in wire
    assert wire.endswith(b"Content-Length: 0\r\n\r\n")
    again = parse_message(wire)
    assert isinstance(again, SipRequest)
    assert again.from_.display_name == "杭州西湖摄像机"  # UTF-8 now, still the same name
    assert again.expires == 3600


KEEPALIVE_BODY = (
    b'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n'
    b"<SN>2749</SN>\r\n<DeviceID>34020000001320000001</DeviceID>\r\n<Status>OK</Status>\r\n"
    b"</Notify>\r\n"
)


def _message(body: bytes, content_length: int | None = None) -> bytes:
    cl = len(body) if content_length is None else content_length
    return (
        b"MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bKabc\r\n"
        b"From: <sip:34020000001320000001@3402000000>;tag=1\r\n"
        b"To: <sip:34020000002000000001@3402000000>\r\n"
        b"Call-ID: ka-1\r\nCSeq: 20 MESSAGE\r\n"
        b"Content-Type: Application/MANSCDP+xml\r\n"
        b"Content-Length: " + str(cl).encode() + b"\r\n\r\n" + body
    )


def test_body_kept_as_bytes_and_content_length_honoured() -> None:
    msg = parse_message(_message(KEEPALIVE_BODY) + b"trailing junk")
    assert msg.body == KEEPALIVE_BODY
    assert msg.content_type == "Application/MANSCDP+xml"


def test_short_body_is_refused_naming_content_length() -> None:
    with pytest.raises(SipParseError) as e:
        parse_message(_message(KEEPALIVE_BODY, content_length=len(KEEPALIVE_BODY) + 10))
    assert e.value.field == "Content-Length"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"HELLO\r\n\r\n", "start_line"),
        (b"INVITE sip:1@2 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", "Call-ID"),
        (_message(b"").replace(b"CSeq: 20 MESSAGE", b"CSeq: twenty MESSAGE"), "CSeq"),
        (_message(b"").replace(b"Content-Length: 0", b"Content-Length: -1"), "Content-Length"),
        (b"INVITE http://x SIP/2.0\r\n\r\n", "request_uri"),
        (b"SIP/2.0 999 Weird\r\n\r\n", "start_line"),
        (_message(b"").replace(b"Call-ID: ka-1", b"Call-ID ka-1"), "header"),
    ],
)
def test_malformed_input_names_what_is_wrong(data: bytes, field: str) -> None:
    with pytest.raises(SipParseError) as e:
        parse_message(data)
    assert e.value.field == field


def test_uri_forms() -> None:
    u = parse_uri("sip:34020000001320000001@3402000000")
    assert (u.user, u.host, u.port) == ("34020000001320000001", "3402000000", None)
    u = parse_uri("sip:34020000001320000001@10.64.49.44:7100;transport=tcp")
    assert (u.host, u.port, u.param("transport")) == ("10.64.49.44", 7100, "tcp")
    assert str(u) == "sip:34020000001320000001@10.64.49.44:7100;transport=tcp"
    u = parse_uri("sip:[2001:db8::1]:5070")
    assert (u.host, u.port, str(u)) == ("2001:db8::1", 5070, "sip:[2001:db8::1]:5070")
    with pytest.raises(SipParseError):
        parse_uri("sip:user@host:99999")


def test_multiple_vias_in_one_line_and_response() -> None:
    data = (
        b"SIP/2.0 401 Unauthorized\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;received=1.2.3.4;rport=5999, "
        b"SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKb\r\n"
        b"From: <sip:a@3402000000>;tag=x\r\nTo: <sip:a@3402000000>;tag=y\r\n"
        b"Call-ID: c\r\nCSeq: 1 REGISTER\r\n"
        b'WWW-Authenticate: Digest realm="3402000000", nonce="n", qop="auth"\r\n\r\n'
    )
    msg = parse_message(data)
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (401, "Unauthorized")
    vias = msg.vias
    assert len(vias) == 2
    assert (vias[0].received, vias[0].rport) == ("1.2.3.4", 5999)
    assert vias[1].sent_by == ("10.0.0.2", 5060) and vias[1].reliable


def test_make_response_copies_dialog_headers_and_adds_to_tag() -> None:
    req = parse_message(LF_REGISTER)
    assert isinstance(req, SipRequest)
    resp = make_response(req, 200, to_tag="t1")
    assert resp.status == 200 and resp.reason == "OK"
    assert resp.call_id == req.call_id and resp.cseq == req.cseq
    assert resp.to.tag == "t1" and resp.from_.tag == "382068091"
    assert resp.top_via.branch == "z9hG4bK4162288924"


def test_stream_framer_splits_partial_reads_and_skips_keepalive_crlf() -> None:
    a = _message(KEEPALIVE_BODY)
    b = _message(b"<Notify/>")
    stream = b"\r\n\r\n" + a + b"\r\n" + b
    framer = StreamFramer()
    got = []
    for i in range(0, len(stream), 7):  # 7-byte reads cut headers and bodies anywhere
        got.extend(framer.feed(stream[i : i + 7]))
    assert [m.body for m in got] == [KEEPALIVE_BODY, b"<Notify/>"]
    assert framer.buffered == 0


def test_stream_framer_refuses_garbage() -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(b"GARBAGE LINE\r\n\r\n")


# ----------------------------------------------------------------------- lazy header values


def _register(
    extra: bytes = b"", via: bytes = b"SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKr1"
) -> bytes:
    return (
        b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
        b"Via: " + via + b"\r\n"
        b"From: <sip:34020000001320000001@3402000000>;tag=f1\r\n"
        b"To: <sip:34020000001320000001@3402000000>\r\n"
        b"Call-ID: reg-1\r\nCSeq: 2 REGISTER\r\n" + extra + b"Content-Length: 0\r\n\r\n"
    )


def test_header_value_is_parsed_on_first_access_and_kept_until_the_headers_change() -> None:
    msg = parse_message(_register())
    assert "From" not in msg.headers._parsed  # split into name and raw value, not parsed yet
    first = msg.from_
    assert first.tag == "f1"
    assert msg.from_ is first  # the second access reuses the first parse
    msg.headers.set("From", "<sip:34020000001320000002@3402000000>;tag=f2")
    assert (msg.from_.uri.user, msg.from_.tag) == ("34020000001320000002", "f2")
    msg.headers = msg.headers.copy()  # a new Headers object starts with nothing parsed
    assert msg.from_.tag == "f2"


def test_malformed_value_is_found_on_access_with_an_error_naming_the_header() -> None:
    # Contact and Expires are not needed to parse the message: it parses, the values raise when
    # read, every time, with the header's name — and what does parse stays usable.
    msg = parse_message(_register(b"Contact: <zzz:not-a-uri>\r\nExpires: soon\r\n"))
    assert isinstance(msg, SipRequest)
    for _ in range(2):
        with pytest.raises(SipParseError) as e:
            _ = msg.contacts
        assert e.value.field == "Contact" and "sip:" in e.value.reason
    with pytest.raises(SipParseError) as e:
        _ = msg.expires
    assert e.value.field == "Expires"
    assert msg.top_via.branch == "z9hG4bKr1" and msg.cseq.seq == 2
    resp = make_response(msg, 401, to_tag="t9")
    assert parse_message(resp.to_bytes()).to.tag == "t9"


def test_line_that_is_not_a_header_still_refuses_the_message() -> None:
    # Rule kept from the eager parser: the line structure is checked at parse time.
    with pytest.raises(SipParseError) as e:
        parse_message(_register(b"this line has no colon\r\n"))
    assert e.value.field == "header" and "this line has no colon" in str(e.value.errors[0].value)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        # str.isdigit() says yes to "²", int() then raised ValueError out of the parser.
        (_register().replace(b"Content-Length: 0", "Content-Length: ²".encode()), "Content-Length"),
        (_register().replace(b"CSeq: 2 REGISTER", "CSeq: ² REGISTER".encode()), "CSeq"),
    ],
)
def test_non_ascii_digits_are_a_parse_error_not_a_crash(data: bytes, field: str) -> None:
    with pytest.raises(SipParseError) as e:
        parse_message(data)
    assert e.value.field == field


def test_non_ascii_digits_in_a_value_are_found_on_access() -> None:
    msg = parse_message(_register(via="SIP/2.0/UDP 10.0.0.5:50²0;branch=z9hG4bKr1".encode()))
    with pytest.raises(SipParseError) as e:
        _ = msg.top_via
    assert e.value.field == "Via"


@pytest.mark.parametrize("end", [b"\r\n\r\n", b"\n\n", b"\r\n\n", b"\n\r\n"])
def test_end_of_head_in_every_line_end_mix(end: bytes) -> None:
    data = _message(b"<Notify/>").replace(b"\r\n\r\n", end)
    msg = parse_message(data)
    assert msg.body == b"<Notify/>"
    assert msg.content_type == "Application/MANSCDP+xml"


def test_header_lines_with_odd_spacing_parse_as_before() -> None:
    data = _register(b"Expires :  3600 \t\r\nUser-Agent:\r\n")
    msg = parse_message(data)
    assert msg.expires == 3600
    assert msg.headers.get("User-Agent") == ""


def test_set_top_via_keeps_the_other_vias_in_order() -> None:
    msg = parse_message(
        _register(
            via=b"SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKa, "
            b"SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKb"
        )
    )
    top = msg.top_via
    msg.set_top_via(top.with_params(received="1.2.3.4", rport="5999"))
    assert [v.branch for v in msg.vias] == ["z9hG4bKa", "z9hG4bKb"]
    assert (msg.top_via.received, msg.top_via.rport) == ("1.2.3.4", 5999)
    again = parse_message(msg.to_bytes())
    assert [str(v) for v in again.vias] == [str(v) for v in msg.vias]
    resp = make_response(msg, 200)
    assert [v.branch for v in resp.vias] == ["z9hG4bKa", "z9hG4bKb"]
    assert resp.top_via.received == "1.2.3.4"


@pytest.mark.parametrize(
    ("to", "wire"),
    [
        (
            b'"Cam" <sip:34020000001320000001@3402000000>',
            b'To: "Cam" <sip:34020000001320000001@3402000000>;tag=t1\r\n',
        ),
        (
            b"sip:34020000001320000001@3402000000",
            b"To: <sip:34020000001320000001@3402000000>;tag=t1\r\n",
        ),
    ],
)
def test_response_to_gets_the_tag_without_reparsing_a_name_addr(to: bytes, wire: bytes) -> None:
    req = parse_message(
        _register().replace(b"To: <sip:34020000001320000001@3402000000>", b"To: " + to)
    )
    assert isinstance(req, SipRequest)
    resp = make_response(req, 200, to_tag="t1")
    assert wire in resp.to_bytes()
    assert resp.to.tag == "t1" and resp.to.uri == req.to.uri
