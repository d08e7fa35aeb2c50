"""Digest authentication: RFC 2617's worked example, GB-style REGISTER challenges, stale nonces."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from vmesh.gb28181.digest import (
    DigestError,
    DigestServer,
    Verdict,
    _parse_auth_params_by_char,
    answer_challenge,
    digest_response,
    format_auth_params,
    parse_auth_params,
)

pytestmark = pytest.mark.unit


def test_rfc2617_worked_example() -> None:
    # RFC 2617 §3.5.
    assert (
        digest_response(
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def test_client_answer_matches_rfc2617_example() -> None:
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    auth = answer_challenge(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )
    scheme, p = parse_auth_params(auth)
    assert scheme == "Digest"
    assert p["response"] == "6629fae49393a05397450978507c4ef1"
    assert (p["qop"], p["nc"], p["opaque"]) == (
        "auth",
        "00000001",
        "5ccc069c403ebaf9f0171e9517f40e41",
    )


def test_server_challenge_then_verify_with_qop() -> None:
    server = DigestServer("3402000000", secret=b"k" * 32)
    challenge = server.challenge(now=1000.0)
    scheme, c = parse_auth_params(challenge)
    assert scheme == "Digest" and c["realm"] == "3402000000" and c["qop"] == "auth"
    auth = answer_challenge(
        challenge,
        method="REGISTER",
        uri="sip:34020000002000000001@3402000000",
        username="34020000001320000001",
        password="12345678",
    )
    pw = {"34020000001320000001": "12345678"}.get
    v = server.verify(auth, "REGISTER", pw, now=1010.0)
    assert v.verdict is Verdict.ok and v.username == "34020000001320000001"
    # Wrong password, wrong method, unknown user.
    assert (
        server.verify(auth, "REGISTER", {"34020000001320000001": "x"}.get, 1010.0).verdict
        is Verdict.wrong
    )
    assert server.verify(auth, "INVITE", pw, 1010.0).verdict is Verdict.wrong
    assert server.verify(auth, "REGISTER", {}.get, 1010.0).verdict is Verdict.unknown_user
    # After the nonce lifetime the same answer is stale (re-challenge, stale=true).
    assert server.verify(auth, "REGISTER", pw, 1000.0 + 301).verdict is Verdict.stale
    assert "stale=true" in server.challenge(now=1301.0, stale=True)


def test_server_accepts_no_qop_and_uppercase_nc() -> None:
    server = DigestServer("3402000000", secret=b"s" * 32, qop=False, opaque="abc")
    challenge = server.challenge(now=0.0)
    assert "qop" not in parse_auth_params(challenge)[1]
    auth = answer_challenge(
        challenge, method="REGISTER", uri="sip:x@3402000000", username="admin", password="pw"
    )
    assert "qop" not in parse_auth_params(auth)[1]
    assert server.verify(auth, "REGISTER", {"admin": "pw"}.get, 1.0).ok
    # WVP-style: nc formatted in upper case (matters from 0x0A on).
    qserver = DigestServer("3402000000", secret=b"s" * 32)
    _, c = parse_auth_params(qserver.challenge(now=0.0))
    resp = digest_response(
        username="u",
        realm=c["realm"],
        password="p",
        method="REGISTER",
        uri="sip:x@y",
        nonce=c["nonce"],
        qop="auth",
        nc="0000000A",
        cnonce="cn",
    )
    auth = format_auth_params(
        "Digest",
        {
            "username": "u",
            "realm": c["realm"],
            "nonce": c["nonce"],
            "uri": "sip:x@y",
            "response": resp,
            "qop": "auth",
            "nc": "0000000A",
            "cnonce": "cn",
        },
    )
    assert qserver.verify(auth, "REGISTER", {"u": "p"}.get, 1.0).ok


def test_server_refuses_forged_nonce_and_malformed_credentials() -> None:
    server = DigestServer("3402000000", secret=b"a" * 32)
    other = DigestServer("3402000000", secret=b"b" * 32)
    auth = answer_challenge(
        other.challenge(now=0.0), method="REGISTER", uri="sip:x@y", username="u", password="p"
    )
    assert server.verify(auth, "REGISTER", {"u": "p"}.get, 1.0).verdict is Verdict.bad_nonce
    assert (
        server.verify('Digest username="u"', "REGISTER", {"u": "p"}.get, 1.0).verdict
        is Verdict.malformed
    )
    assert server.verify("Basic dTpw", "REGISTER", {"u": "p"}.get, 1.0).verdict is Verdict.malformed


def test_non_ascii_nonce_and_response_are_refused_not_raised() -> None:
    """Found by fuzz/fuzz_sip.py: hmac.compare_digest raised TypeError on a nonce (or response)
    with non-ASCII characters, killing the REGISTER handler instead of refusing the request."""
    from vmesh.gb28181.digest import DigestServer, Verdict

    server = DigestServer("3402000000", secret=b"k" * 32)
    nonce = "abcde" + ">" * 90 + "\u8c61" * 25 + ">>>f"
    auth = (
        f'Digest username="34020000001320000001", realm="3402000000", nonce="{nonce}", '
        'uri="sip:x@3402000000", response="0123456789abcdef0123456789abcdef", qop=auth, '
        'nc=00000001, cnonce="xyz"'
    )
    v = server.verify(auth, "REGISTER", lambda user: "pw", 0.0)
    assert v.verdict is Verdict.bad_nonce and not v.ok
    good = server.make_nonce(0.0)
    auth2 = auth.replace(nonce, good).replace("0123456789abcdef0123456789abcdef", "象" * 32)
    v2 = server.verify(auth2, "REGISTER", lambda user: "pw", 0.0)
    assert not v2.ok


def test_auth_params_quoted_escaped_and_unquoted_values() -> None:
    scheme, p = parse_auth_params(
        'Digest username="3402\\"0", realm = "r,1" ,nonce="n\\\\x", nc=00000001, qop=auth,'
        ' uri="sip:a@b", empty=, opaque=""'
    )
    assert scheme == "Digest"
    assert p == {
        "username": '3402"0',
        "realm": "r,1",
        "nonce": "n\\x",
        "nc": "00000001",
        "qop": "auth",
        "uri": "sip:a@b",
        "empty": "",
        "opaque": "",
    }


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('Digest username="34020000001320000001, realm=3402000000', "unterminated quoted value"),
        ('Digest username="u\\', "unterminated quoted value"),
        ('Digest username="u", realm', "parameter without '='"),
    ],
)
def test_malformed_auth_params_name_what_is_wrong(value: str, reason: str) -> None:
    with pytest.raises(DigestError) as e:
        parse_auth_params(value)
    assert e.value.field == "authorization" and reason in str(e.value)


def test_auth_params_agree_with_the_character_loop_on_generated_input() -> None:
    """The regex parser must give what the character loop gives (or the same error) on any
    input: random strings over the characters that matter, seeded so a failure repeats."""
    rng = random.Random(28181)
    alphabet = ' \t,="\\ab\nk='
    for _ in range(20_000):
        value = "Digest " + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert _outcome(parse_auth_params, value) == _outcome(_parse_auth_params_by_char, value), (
            value
        )


def _outcome(parse: Callable[[str], object], value: str) -> object:
    try:
        return parse(value)
    except DigestError as e:
        return ("error", str(e))
