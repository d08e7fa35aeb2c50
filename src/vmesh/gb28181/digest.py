"""HTTP digest authentication for SIP (RFC 2617, RFC 7616 algorithms, RFC 3261 §22). Pure.

Server side: :class:`DigestServer` issues challenges (``WWW-Authenticate`` values) whose nonce
carries its own issue time and an HMAC, so verification needs no per-nonce memory and survives a
restart with the same secret; :meth:`DigestServer.verify` checks an ``Authorization`` value with
``qop=auth`` (nc/cnonce) or without qop (RFC 2069 style, which many GB devices send), and says
whether the nonce was stale (expired but otherwise good: re-challenge with ``stale=true``).
GB devices format ``nc`` in either case; both are accepted.

Client side: :func:`answer_challenge` builds the ``Authorization`` value for a 401/407.

Algorithms: MD5 (what GB/T 28181 uses), MD5-sess, SHA-256, SHA-256-sess.

Public: ``parse_auth_params``, ``format_auth_params``, ``digest_response``, ``DigestServer``,
``Verdict``, ``Verification``, ``answer_challenge``, ``DigestError``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from vmesh.errors import FieldError, InvalidInput

_HASHES: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}


class DigestError(InvalidInput):
    """A challenge or credentials value that cannot be used; names the parameter."""

    def __init__(self, field: str, reason: str, value: object | None = None) -> None:
        v = None if value is None else str(value)
        super().__init__(f"{field}: {reason}", errors=[FieldError(field, reason, v)])
        self.field = field


# One ``key=value`` or ``key="quoted"`` of a credentials/challenge list, from where the previous
# one ended: separators, the key (up to the first '='), the value. Possessive quantifiers: no
# backtracking, so a quoted value that does not close is not re-read as an unquoted one.
_AUTH_PARAM = re.compile(r'[ \t,]*+([^=]*)=[ \t]*+(?:"((?:[^"\\]|\\.)*+)"|(?!")([^,]*))', re.DOTALL)
_AUTH_TAIL = re.compile(r"[ \t,]*")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Parse ``Digest a="x", b=y`` into ``("Digest", {"a": "x", "b": "y"})`` (keys lower-cased).

    One regular-expression match per parameter; anything it does not take as a whole (an
    unterminated quote, a parameter without '=') goes through :func:`_parse_auth_params_by_char`,
    which raises :class:`DigestError` saying what is wrong."""
    v = value.strip()
    scheme, _, rest = v.partition(" ")
    params: dict[str, str] = {}
    pos, n = 0, len(rest)
    match = _AUTH_PARAM.match
    while pos < n:
        m = match(rest, pos)
        if m is None:
            if _AUTH_TAIL.fullmatch(rest, pos):
                break  # only separators left
            return _parse_auth_params_by_char(value)
        key = m.group(1).strip().lower()
        quoted = m.group(2)
        if quoted is None:
            params[key] = m.group(3).strip()
        else:
            params[key] = _ESCAPED.sub(r"\1", quoted) if "\\" in quoted else quoted
        pos = m.end()
    return scheme, params


def _parse_auth_params_by_char(value: str) -> tuple[str, dict[str, str]]:
    """:func:`parse_auth_params` a character at a time: the reference it must agree with, and
    the path that finds and names what is malformed."""
    v = value.strip()
    scheme, _, rest = v.partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise DigestError("authorization", "parameter without '='", rest[i:])
        key = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            buf: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(rest[i])
                i += 1
            if i >= n:
                raise DigestError("authorization", f"unterminated quoted value of {key}")
            i += 1
            params[key] = "".join(buf)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return scheme, params


_UNQUOTED = frozenset({"algorithm", "qop", "nc", "stale"})


def format_auth_params(scheme: str, params: dict[str, str]) -> str:
    """The inverse of :func:`parse_auth_params` (quotes what RFC 2617 quotes)."""
    parts = []
    for k, v in params.items():
        if k in _UNQUOTED and not (k == "qop" and "," in v):
            parts.append(f"{k}={v}")
        else:
            esc = v.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'{k}="{esc}"')
    return f"{scheme} " + ", ".join(parts)


def _h(algorithm: str, data: str) -> str:
    base = algorithm.upper().removesuffix("-SESS")
    fn = _HASHES.get(base)
    if fn is None:
        raise DigestError("algorithm", "must be MD5, MD5-sess, SHA-256 or SHA-256-sess", algorithm)
    return fn(data.encode("utf-8")).hexdigest()


def digest_response(
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    algorithm: str = "MD5",
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 2617 §3.2.2.1; qop ``auth``, ``auth-int`` or none)."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce or ''}")
    if qop == "auth-int":
        ha2 = _h(algorithm, f"{method}:{uri}:{_h(algorithm, body.decode('latin-1'))}")
    else:
        ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


class Verdict(StrEnum):
    ok = "ok"
    stale = "stale"  # good response to an expired nonce of ours: re-challenge with stale=true
    wrong = "wrong"  # wrong password (or response): 403 in GB practice
    bad_nonce = "bad_nonce"  # a nonce we did not issue: re-challenge
    malformed = "malformed"  # missing parameters: 400
    unknown_user = "unknown_user"


@dataclass(frozen=True, slots=True)
class Verification:
    verdict: Verdict
    username: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.ok


class DigestServer:
    """Challenges and verifies for one realm. ``secret`` keys the nonce HMAC."""

    def __init__(
        self,
        realm: str,
        *,
        secret: bytes | None = None,
        nonce_ttl: float = 300.0,
        qop: bool = True,
        algorithm: str = "MD5",
        opaque: str | None = None,
    ) -> None:
        self.realm = realm
        self._secret = secret or secrets.token_bytes(32)
        self.nonce_ttl = nonce_ttl
        self.qop = qop
        self.algorithm = algorithm
        self.opaque = opaque

    def _sign(self, stamp: str, salt: str) -> str:
        msg = f"{stamp}:{salt}:{self.realm}".encode()
        return hmac.digest(self._secret, msg, "sha256").hex()[:24]  # one-shot, in C

    def make_nonce(self, now: float) -> str:
        stamp = f"{int(now * 1000):x}"
        salt = secrets.token_hex(4)
        return f"{stamp}{salt}{self._sign(stamp, salt)}"

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        """Age in seconds of a nonce we issued, or None if we did not issue it."""
        if len(nonce) < 8 + 24 + 1:
            return None
        stamp, salt, sig = nonce[:-32], nonce[-32:-24], nonce[-24:]
        # Bytes: compare_digest refuses str with non-ASCII characters (a fuzzed nonce did that).
        if not hmac.compare_digest(sig.encode(), self._sign(stamp, salt).encode()):
            return None
        try:
            issued = int(stamp, 16) / 1000
        except ValueError:
            return None
        return now - issued

    def challenge(self, now: float, *, stale: bool = False) -> str:
        """A ``WWW-Authenticate`` value."""
        p = {"realm": self.realm, "nonce": self.make_nonce(now)}
        if self.opaque is not None:
            p["opaque"] = self.opaque
        p["algorithm"] = self.algorithm
        if stale:
            p["stale"] = "true"
        # qop is a quoted list in a challenge (RFC 2617 §3.2.1), unlike in credentials.
        return format_auth_params("Digest", p) + (', qop="auth"' if self.qop else "")

    def verify(
        self,
        authorization: str,
        method: str,
        password_of: Callable[[str], str | None],
        now: float,
    ) -> Verification:
        """Check an ``Authorization`` value. ``password_of(username)`` looks the password up."""
        try:
            scheme, p = parse_auth_params(authorization)
        except DigestError as e:
            return Verification(Verdict.malformed, reason=str(e))
        if scheme.lower() != "digest":
            return Verification(Verdict.malformed, reason="scheme must be Digest")
        missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in p]
        if missing:
            return Verification(Verdict.malformed, p.get("username"), f"missing {missing}")
        user = p["username"]
        qop = p.get("qop") or None
        if qop is not None and qop.lower() != "auth":
            return Verification(Verdict.malformed, user, f"qop {qop!r} is not supported")
        if qop and ("nc" not in p or "cnonce" not in p):
            return Verification(Verdict.malformed, user, "qop=auth needs nc and cnonce")
        algorithm = p.get("algorithm", "MD5")
        if algorithm.upper().removesuffix("-SESS") not in _HASHES:
            return Verification(Verdict.malformed, user, f"algorithm {algorithm!r}")
        age = self._nonce_age(p["nonce"], now)
        if age is None or age < -5:
            return Verification(Verdict.bad_nonce, user, "nonce was not issued here")
        password = password_of(user)
        if password is None:
            return Verification(Verdict.unknown_user, user, "no password for this user")
        nc = p.get("nc")
        candidates = {nc, nc.lower(), nc.upper()} if nc else {None}
        for ncv in candidates:
            expected = digest_response(
                username=user,
                realm=p["realm"],
                password=password,
                method=method,
                uri=p["uri"],
                nonce=p["nonce"],
                qop=qop.lower() if qop else None,
                nc=ncv,
                cnonce=p.get("cnonce"),
                algorithm=algorithm,
            )
            if hmac.compare_digest(expected.encode(), p["response"].lower().encode()):
                if p["realm"] != self.realm:
                    return Verification(Verdict.wrong, user, "realm does not match")
                if age > self.nonce_ttl:
                    return Verification(Verdict.stale, user, "nonce expired")
                return Verification(Verdict.ok, user)
        return Verification(Verdict.wrong, user, "response does not match")


def answer_challenge(
    challenge: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The ``Authorization`` (or ``Proxy-Authorization``) value answering ``challenge``."""
    scheme, c = parse_auth_params(challenge)
    if scheme.lower() != "digest":
        raise DigestError("www-authenticate", "scheme must be Digest", scheme)
    for k in ("realm", "nonce"):
        if k not in c:
            raise DigestError(f"www-authenticate.{k}", "is missing")
    algorithm = c.get("algorithm", "MD5")
    offered = [q.strip().lower() for q in c.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in offered else None
    if offered and qop is None:
        raise DigestError("www-authenticate.qop", "only qop=auth is supported", c["qop"])
    ncs = f"{nc:08x}" if qop else None
    cn = (cnonce or secrets.token_hex(8)) if qop else None
    response = digest_response(
        username=username,
        realm=c["realm"],
        password=password,
        method=method,
        uri=uri,
        nonce=c["nonce"],
        qop=qop,
        nc=ncs,
        cnonce=cn,
        algorithm=algorithm,
    )
    out: dict[str, str] = {
        "username": username,
        "realm": c["realm"],
        "nonce": c["nonce"],
        "uri": uri,
        "response": response,
        "algorithm": algorithm,
    }
    if "opaque" in c:
        out["opaque"] = c["opaque"]
    if qop and ncs and cn:
        out["qop"] = qop
        out["nc"] = ncs
        out["cnonce"] = cn
    return format_auth_params("Digest", out)
