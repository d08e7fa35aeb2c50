"""RFC 3261 §17 transactions: retransmission timers, absorption, matching. Times are given."""

from __future__ import annotations

import pytest

from vmesh.gb28181.digest import DigestServer, answer_challenge, parse_auth_params
from vmesh.gb28181.message import (
    SipParseError,
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
)
from vmesh.gb28181.transaction import (
    RequestReceived,
    ResponseReceived,
    Send,
    State,
    Terminated,
    TimedOut,
    TransactionLayer,
)

pytestmark = pytest.mark.unit

DEVICE = ("192.168.1.64", 5060)


def _request(method: str, branch: str = "z9hG4bKcat1", cseq: int = 1) -> SipRequest:
    data = (
        f"{method} sip:34020000001320000001@192.168.1.64:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch={branch}\r\n"
        "From: <sip:34020000002000000001@3402000000>;tag=p1\r\n"
        "To: <sip:34020000001320000001@3402000000>\r\n"
        f"Call-ID: call-{method}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    return msg


def _sends(actions: list) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def _run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, object]]:
    """Fire every timer up to ``until``; return (time, action) in order."""
    log = []
    while (t := layer.next_timer()) is not None and t <= until:
        log.extend((t, a) for a in layer.timeout(t))
    return log


def test_non_invite_client_over_udp_retransmits_at_t1_doubling_to_t2_then_times_out() -> None:
    layer = TransactionLayer()
    req = _request("MESSAGE")
    txn, first = layer.send_request(req, DEVICE, now=0.0)
    assert [s.destination for s in _sends(first)] == [DEVICE]
    log = _run_timers(layer, until=100.0)
    resend_times = [t for t, a in log if isinstance(a, Send)]
    # Timer E: 0.5, 1, 2, 4, then capped at T2=4 s; Timer F at 64*T1 = 32 s.
    assert resend_times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(a.message is req for t, a in log if isinstance(a, Send))
    timeouts = [(t, a.timer) for t, a in log if isinstance(a, TimedOut)]
    assert timeouts == [(32.0, "F")]
    assert txn is not None and txn.state is State.terminated
    assert layer.clients == {}


def test_non_invite_client_proceeding_retransmits_every_t2_and_completes_with_k() -> None:
    layer = TransactionLayer()
    req = _request("MESSAGE")
    txn, _ = layer.send_request(req, DEVICE, now=0.0)
    layer.timeout(0.5)
    acts = layer.receive(make_response(req, 100), DEVICE, 0.7, reliable=False)
    assert [type(a) for a in acts] == [ResponseReceived]
    assert txn is not None and txn.state is State.proceeding
    # The next E (due at 1.5) fires as before, after which it is T2 in Proceeding.
    assert _sends(layer.timeout(1.5))
    assert layer.next_timer() == 5.5
    ok = make_response(req, 200, to_tag="d1")
    acts = layer.receive(ok, DEVICE, 2.0, reliable=False)
    assert [type(a) for a in acts] == [ResponseReceived] and acts[0].response is ok
    assert txn.state is State.completed
    # A retransmitted 200 is absorbed, not passed up again.
    assert layer.receive(ok, DEVICE, 2.1, reliable=False) == []
    assert layer.next_timer() == 2.0 + 5.0  # Timer K = T4
    assert [type(a) for a in layer.timeout(7.0)] == [Terminated]


def test_reliable_transport_never_retransmits() -> None:
    layer = TransactionLayer()
    req = _request("MESSAGE")
    layer.send_request(req, DEVICE, now=0.0, reliable=True)
    log = _run_timers(layer, until=100.0)
    assert [type(a).__name__ for _, a in log] == ["TimedOut", "Terminated"]
    assert log[0][0] == 32.0


def test_invite_client_acks_error_response_and_answers_its_retransmission() -> None:
    layer = TransactionLayer()
    req = _request("INVITE", branch="z9hG4bKinv1")
    txn, _ = layer.send_request(req, DEVICE, now=0.0)
    assert layer.next_timer() == 0.5  # Timer A
    layer.timeout(0.5)
    assert layer.next_timer() == 1.5  # A doubled
    busy = make_response(req, 486, to_tag="dev")
    acts = layer.receive(busy, DEVICE, 1.0, reliable=False)
    ack = _sends(acts)[0].message
    assert isinstance(ack, SipRequest) and ack.method == "ACK"
    assert ack.cseq.seq == 1 and ack.cseq.method == "ACK"
    assert ack.to.tag == "dev" and ack.top_via.branch == "z9hG4bKinv1"
    assert ack.uri == req.uri
    assert any(isinstance(a, ResponseReceived) for a in acts)
    assert txn is not None and txn.state is State.completed
    again = layer.receive(busy, DEVICE, 2.0, reliable=False)
    assert [s.message for s in _sends(again)] == [ack]
    assert not any(isinstance(a, ResponseReceived) for a in again)
    assert layer.next_timer() == 33.0  # Timer D = 32 s
    layer.timeout(33.0)
    assert txn.state is State.terminated


def test_invite_client_times_out_with_timer_b() -> None:
    layer = TransactionLayer()
    layer.send_request(_request("INVITE", branch="z9hG4bKinv2"), DEVICE, now=0.0)
    log = _run_timers(layer, until=100.0)
    assert [t for t, a in log if isinstance(a, Send)] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [(t, a.timer) for t, a in log if isinstance(a, TimedOut)] == [(32.0, "B")]


def test_invite_server_absorbs_retransmitted_invites_and_resends_last_response() -> None:
    layer = TransactionLayer()
    invite = _request("INVITE", branch="z9hG4bKsrv1")
    acts = layer.receive(invite, DEVICE, 0.0, reliable=False)
    trying = _sends(acts)[0].message
    assert isinstance(trying, SipResponse) and trying.status == 100
    received = [a for a in acts if isinstance(a, RequestReceived)]
    assert len(received) == 1
    txn = received[0].transaction
    assert txn is not None
    # Two retransmissions of the INVITE: no new RequestReceived, the 100 is resent each time.
    for t in (0.5, 1.5):
        again = layer.receive(_request("INVITE", branch="z9hG4bKsrv1"), DEVICE, t, reliable=False)
        assert [type(a) for a in again] == [Send] and again[0].message is trying
    ringing = make_response(invite, 180, to_tag="x")
    layer.respond(txn, ringing, 2.0)
    again = layer.receive(_request("INVITE", branch="z9hG4bKsrv1"), DEVICE, 2.5, reliable=False)
    assert [a.message for a in again] == [ringing]
    # A 4xx is retransmitted on Timer G until the ACK arrives, then Timer I ends it.
    nf = make_response(invite, 404, to_tag="x")
    layer.respond(txn, nf, 3.0)
    assert layer.next_timer() == 3.5
    assert [a.message for a in _sends(layer.timeout(3.5))] == [nf]
    assert layer.next_timer() == 4.5
    ack = _request("ACK", branch="z9hG4bKsrv1")
    assert layer.receive(ack, DEVICE, 4.0, reliable=False) == []
    assert txn.state is State.confirmed
    assert layer.next_timer() == 9.0  # Timer I = T4
    assert [type(a) for a in layer.timeout(9.0)] == [Terminated]
    assert layer.servers == {}


def test_invite_server_timer_h_when_no_ack() -> None:
    layer = TransactionLayer()
    invite = _request("INVITE", branch="z9hG4bKsrv2")
    txn = next(
        a.transaction
        for a in layer.receive(invite, DEVICE, 0.0, reliable=False)
        if isinstance(a, RequestReceived)
    )
    assert txn is not None
    layer.respond(txn, make_response(invite, 486, to_tag="x"), 0.0)
    log = _run_timers(layer, until=100.0)
    assert [t for t, a in log if isinstance(a, Send)] == [
        0.5,
        1.5,
        3.5,
        7.5,
        11.5,
        15.5,
        19.5,
        23.5,
        27.5,
        31.5,
    ]
    assert [(t, a.timer) for t, a in log if isinstance(a, TimedOut)] == [(32.0, "H")]


def test_ack_for_2xx_goes_to_the_tu_without_a_transaction() -> None:
    layer = TransactionLayer()
    invite = _request("INVITE", branch="z9hG4bKsrv3")
    txn = next(
        a.transaction
        for a in layer.receive(invite, DEVICE, 0.0, reliable=False)
        if isinstance(a, RequestReceived)
    )
    assert txn is not None
    acts = layer.respond(txn, make_response(invite, 200, to_tag="x"), 0.1)
    assert any(isinstance(a, Terminated) for a in acts)
    ack = _request("ACK", branch="z9hG4bKnewbranch")
    acts = layer.receive(ack, DEVICE, 0.2, reliable=False)
    assert len(acts) == 1 and isinstance(acts[0], RequestReceived)
    assert acts[0].transaction is None


def test_non_invite_server_resends_final_response_to_retransmissions_and_stamps_rport() -> None:
    layer = TransactionLayer()
    msg = _request("MESSAGE", branch="z9hG4bKmsg")
    nat_source = ("203.0.113.7", 40000)
    acts = layer.receive(msg, nat_source, 0.0, reliable=False)
    rr = next(a for a in acts if isinstance(a, RequestReceived))
    via = rr.request.top_via
    assert (via.received, via.rport) == ("203.0.113.7", 40000)
    assert (
        layer.receive(_request("MESSAGE", branch="z9hG4bKmsg"), nat_source, 0.3, reliable=False)
        == []
    )
    assert rr.transaction is not None
    ok = make_response(rr.request, 200)
    sent = _sends(layer.respond(rr.transaction, ok, 0.4))
    assert sent[0].destination == nat_source  # replies go to the source, not the Via host
    assert "received=203.0.113.7" in (ok.headers.get("Via") or "")
    again = layer.receive(_request("MESSAGE", branch="z9hG4bKmsg"), nat_source, 1.0, reliable=False)
    assert [a.message for a in again] == [ok]
    assert layer.next_timer() == pytest.approx(0.4 + 32.0)  # Timer J


def test_stray_response_is_handed_up() -> None:
    layer = TransactionLayer()
    resp = make_response(_request("MESSAGE", branch="z9hG4bKnone"), 200)
    acts = layer.receive(resp, DEVICE, 0.0, reliable=False)
    assert len(acts) == 1 and isinstance(acts[0], ResponseReceived)
    assert acts[0].transaction is None


def test_request_with_a_malformed_header_nothing_reads_is_handled_as_before() -> None:
    """Header values are parsed when read: a second Via value or a Contact that does not parse
    does not stop the transaction layer (it reads the top Via only); the response copies the Via
    values as they came, and the malformed ones raise, naming the header, if something reads
    them."""
    data = (
        b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKreg1, not a via\r\n"
        b"From: <sip:34020000001320000001@3402000000>;tag=d1\r\n"
        b"To: <sip:34020000001320000001@3402000000>\r\n"
        b"Call-ID: reg-1\r\nCSeq: 1 REGISTER\r\nContact: <zzz:nothing>\r\n\r\n"
    )
    layer = TransactionLayer()
    acts = layer.receive(parse_message(data), DEVICE, 0.0, reliable=False)
    rr = next(a for a in acts if isinstance(a, RequestReceived))
    assert rr.transaction is not None
    sent = _sends(layer.respond(rr.transaction, make_response(rr.request, 401, to_tag="x"), 0.1))
    wire = sent[0].message.to_bytes()
    assert b"Via: SIP/2.0/UDP 10.0.0.1:5060;rport=5060;branch=z9hG4bKreg1;received=" in wire
    assert b"\r\nVia: not a via\r\n" in wire
    with pytest.raises(SipParseError) as e:
        _ = rr.request.vias
    assert e.value.field == "Via"
    with pytest.raises(SipParseError) as e:
        _ = rr.request.contacts
    assert e.value.field == "Contact"


def test_answered_request_lets_go_of_its_parsed_values_and_can_parse_them_again() -> None:
    layer = TransactionLayer()
    acts = layer.receive(_request("MESSAGE", branch="z9hG4bKrel"), DEVICE, 0.0, reliable=False)
    rr = next(a for a in acts if isinstance(a, RequestReceived))
    assert rr.transaction is not None
    assert rr.request.from_.tag == "p1" and rr.request.headers._parsed  # parsed while handled
    layer.respond(rr.transaction, make_response(rr.request, 200), 0.1)
    assert rr.request.headers._parsed == {}  # held 32 s for Timer J: nothing parsed kept
    assert rr.request.from_.tag == "p1" and rr.request.top_via.received == "192.168.1.64"
    # a retransmission still gets the 200 again
    again = layer.receive(_request("MESSAGE", branch="z9hG4bKrel"), DEVICE, 1.0, reliable=False)
    assert [a.message.status for a in again if isinstance(a, Send)] == [200]


def _register(branch: str, auth: str | None = None) -> SipRequest:
    data = (
        "REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch={branch}\r\n"
        "From: <sip:34020000001320000001@3402000000>;tag=d1\r\n"
        "To: <sip:34020000001320000001@3402000000>\r\n"
        f"Call-ID: reg-1\r\nCSeq: {2 if auth else 1} REGISTER\r\nMax-Forwards: 70\r\n"
        + (f"Authorization: {auth}\r\n" if auth else "")
        + "Expires: 3600\r\n\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    return msg


def _challenge(
    layer: TransactionLayer, data: bytes, server: DigestServer, now: float
) -> SipResponse:
    """What the registrar does with a REGISTER without credentials: 401, stateless."""
    (received,) = [
        a for a in layer.receive(parse_message(data), DEVICE, now, reliable=False)
        if isinstance(a, RequestReceived)
    ]  # fmt: skip
    assert received.transaction is not None
    resp = make_response(received.request, 401, to_tag="n1")
    resp.headers.add("WWW-Authenticate", server.challenge(now))
    (send,) = layer.respond_stateless(received.transaction, resp, now)[:1]
    assert isinstance(send, Send) and send.destination == DEVICE
    assert received.transaction.terminated
    return parse_message(send.message.to_bytes())  # type: ignore[return-value]


def test_challenge_answered_statelessly_keeps_no_transaction_and_the_answer_succeeds() -> None:
    layer = TransactionLayer()
    server = DigestServer("3402000000")
    first = _register("z9hG4bKreg1").to_bytes()
    c1 = _challenge(layer, first, server, now=0.0)
    assert c1.status == 401
    assert layer.servers == {} and layer.next_timer() is None  # nothing kept for Timer J
    # Its retransmission (the same bytes): a new transaction, a new 401 with a new nonce.
    c2 = _challenge(layer, first, server, now=0.5)
    assert c2.status == 401 and layer.servers == {}
    nonces = [
        parse_auth_params(c.headers.get("WWW-Authenticate") or "")[1]["nonce"] for c in (c1, c2)
    ]
    assert nonces[0] != nonces[1]
    # The device answers the first challenge (the one it saw first): still good.
    auth = answer_challenge(
        c1.headers.get("WWW-Authenticate") or "", method="REGISTER",
        uri="sip:34020000002000000001@3402000000", username="34020000001320000001",
        password="pw",
    )  # fmt: skip
    answer = _register("z9hG4bKreg2", auth)
    (received,) = [
        a for a in layer.receive(answer, DEVICE, 1.0, reliable=False)
        if isinstance(a, RequestReceived)
    ]  # fmt: skip
    verdict = server.verify(
        received.request.headers.get("Authorization") or "", "REGISTER", lambda u: "pw", 1.0
    )
    assert verdict.ok
    assert received.transaction is not None
    ok = make_response(received.request, 200, to_tag="n2")
    assert [s.message.status for s in _sends(layer.respond(received.transaction, ok, 1.0))] == [200]
    # The 200 is kept (Timer J): a retransmission of the authenticated REGISTER gets it again.
    assert list(layer.servers.values()) == [received.transaction]
    again = _sends(layer.receive(_register("z9hG4bKreg2", auth), DEVICE, 1.5, reliable=False))
    assert [s.message for s in again] == [ok]


def test_only_an_unanswered_non_invite_request_is_answered_statelessly() -> None:
    layer = TransactionLayer()
    acts = layer.receive(_request("INVITE", branch="z9hG4bKinv9"), DEVICE, 0.0, reliable=False)
    (inv,) = [a for a in acts if isinstance(a, RequestReceived)]
    assert inv.transaction is not None
    with pytest.raises(SipParseError) as e:
        layer.respond_stateless(inv.transaction, make_response(inv.request, 486), 0.0)
    assert e.value.field == "status"
    assert inv.transaction in layer.servers.values()  # untouched: still answers the INVITE
    acts = layer.receive(_request("MESSAGE", branch="z9hG4bKmsg9"), DEVICE, 0.0, reliable=False)
    (msg,) = [a for a in acts if isinstance(a, RequestReceived)]
    assert msg.transaction is not None
    layer.respond(msg.transaction, make_response(msg.request, 200), 0.0)
    with pytest.raises(SipParseError):  # already answered: its retransmissions get that answer
        layer.respond_stateless(msg.transaction, make_response(msg.request, 401), 0.0)
    assert msg.transaction in layer.servers.values()
