"""SIP messages as GB/T 28181 peers send them: lenient parser, strict serialiser. Pure, no I/O.

Lenient where real devices are sloppy, strict where being wrong would corrupt state:

- accepts CRLF or bare LF line ends, folded header lines (RFC 3261 §7.3.1), compact header names
  (``v``, ``f``, ``t``, ``i``, ``m``, ``l``, ``c`` …), and URIs whose host is all digits
  (``sip:34020000001320000001@3402000000``), which strict SIP parsers refuse;
- decodes each header line as UTF-8, then GB18030 (what Chinese devices put in Subject and display
  names), never failing on the charset;
- keeps the body as bytes, honouring Content-Length (a datagram shorter than its Content-Length is
  refused; longer is cut, as RFC 3261 §18.3 says);
- anything else that is malformed raises :class:`SipParseError`, which names the part that is
  wrong (``start_line``, ``header``, ``Via``, ``CSeq``, ``uri`` …) and why.

:class:`StreamFramer` splits a TCP byte stream into messages by Content-Length, across partial
reads, skipping CRLF keep-alives between messages (RFC 5626 §3.5.1).

Public: ``SipUri``, ``parse_uri``, ``NameAddr``, ``parse_name_addr``, ``Via``, ``parse_via``,
``CSeq``, ``Headers``, ``SipRequest``, ``SipResponse``, ``SipMessage``, ``parse_message``,
``StreamFramer``, ``SipParseError``, ``make_response``, ``REASONS``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from vmesh.errors import FieldError, InvalidInput

COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
}

# Canonical spelling of headers whose usual capitalisation is not plain title case.
_CANONICAL: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "x-gb-ver": "X-GB-Ver",
}

# Headers whose comma-separated values are separate header values (RFC 3261 §7.3.1).
_LIST_HEADERS = frozenset({"Via", "Contact", "Route", "Record-Route"})

REASONS: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}

_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~\-]+$")
_STATUS_LINE = re.compile(r"^SIP/2\.0\s+(\d{3})(?:\s+(.*))?$", re.IGNORECASE)
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9.!%*_+`'~\-]+)\s+(\S+)\s+SIP/2\.0$", re.IGNORECASE)


class SipParseError(InvalidInput):
    """Bytes that are not a SIP message; ``field`` names the part that is wrong, ``reason`` why."""

    def __init__(self, field: str, reason: str, value: object | None = None) -> None:
        v = None if value is None else str(value)[:200]
        super().__init__(f"{field}: {reason}", errors=[FieldError(field, reason, v)])
        self.field = field
        self.reason = reason


@functools.lru_cache(maxsize=1024)
def canonical_name(name: str) -> str:
    """The canonical spelling of a header name (compact forms expanded); cached: the same few
    dozen names come in every message."""
    n = name.strip()
    low = n.lower()
    if len(low) == 1 and low in COMPACT_FORMS:
        return COMPACT_FORMS[low]
    if low in _CANONICAL:
        return _CANONICAL[low]
    return "-".join(p[:1].upper() + p[1:].lower() for p in low.split("-"))


def _split_params(text: str) -> tuple[str, dict[str, str | None]]:
    """Split ``value;a=1;b`` into ``("value", {"a": "1", "b": None})`` (keys lower-cased)."""
    parts = _split_outside_quotes(text, ";")
    params: dict[str, str | None] = {}
    for p in parts[1:]:
        p = p.strip()
        if not p:
            continue
        k, sep, v = p.partition("=")
        val = v.strip() if sep else None
        if val is not None and len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        params[k.strip().lower()] = val
    return parts[0].strip(), params


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes and angle brackets."""
    if '"' not in text and "<" not in text:
        return text.split(sep)  # the common case, without a walk over the characters
    out: list[str] = []
    start = 0
    quoted = False
    angle = 0
    escaped_at = -1
    for m in _SPECIAL[sep].finditer(text):
        i, ch = m.start(), m.group()
        if i == escaped_at:
            continue
        if quoted and ch == "\\":
            escaped_at = i + 1
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            angle += 1
        elif not quoted and ch == ">" and angle:
            angle -= 1
        elif ch == sep and not quoted and not angle:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


_SPECIAL = {sep: re.compile(r'[\\"<>' + re.escape(sep) + "]") for sep in (";", ",")}


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


# ------------------------------------------------------------------------------------------ URIs


@dataclass(frozen=True, slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI. ``host`` may be all digits (a GB/T 28181 domain)."""

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: str | None = None

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name.lower():
                return v
        return None

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        s = f"{self.scheme}:"
        if self.user is not None:
            s += self.user
            if self.password is not None:
                s += f":{self.password}"
            s += "@"
        s += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            s += f":{self.port}"
        s += _format_params(dict(self.params))
        if self.headers:
            s += f"?{self.headers}"
        return s


def parse_uri(text: str, field: str = "uri") -> SipUri:
    """Parse a SIP URI; raise :class:`SipParseError` naming ``field`` if it is not one."""
    t = text.strip()
    scheme, sep, rest = t.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("sip", "sips"):
        raise SipParseError(field, "must be a sip: or sips: URI", text)
    rest, _, headers = rest.partition("?")
    first, params = _split_params(rest)
    userinfo, at, hostport = first.rpartition("@")
    user: str | None = None
    password: str | None = None
    if at:
        user, colon, pw = userinfo.partition(":")
        password = pw if colon else None
    if not hostport:
        raise SipParseError(field, "has no host", text)
    port: int | None = None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipParseError(field, "IPv6 host has no closing ']'", text)
        host = hostport[1:end]
        tail = hostport[end + 1 :]
        if tail:
            if not tail.startswith(":"):
                raise SipParseError(field, "junk after the IPv6 host", text)
            port = _port(tail[1:], field, text)
    else:
        host, colon, p = hostport.partition(":")
        if colon:
            port = _port(p, field, text)
    if not host or not re.fullmatch(r"[A-Za-z0-9.\-_:]+", host):
        raise SipParseError(field, "host is not a domain name or an address", text)
    return SipUri(
        host=host,
        user=user,
        port=port,
        scheme=scheme,
        password=password,
        params=tuple(params.items()),
        headers=headers or None,
    )


def _port(p: str, field: str, text: str) -> int:
    if not p.isdigit() or not 0 < int(p) <= 65535:
        raise SipParseError(field, "port must be a number from 1 to 65535", text)
    return int(p)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact value: optional display name, a URI, and header parameters (``tag``)."""

    uri: SipUri
    display_name: str | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    wildcard: bool = False  # "Contact: *"

    @property
    def tag(self) -> str | None:
        return dict(self.params).get("tag")

    def param(self, name: str) -> str | None:
        return dict(self.params).get(name.lower())

    def with_tag(self, tag: str) -> NameAddr:
        p = dict(self.params)
        p["tag"] = tag
        return NameAddr(self.uri, self.display_name, tuple(p.items()))

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        name = f'"{self.display_name}" ' if self.display_name else ""
        return f"{name}<{self.uri}>{_format_params(dict(self.params))}"


def parse_name_addr(text: str, field: str = "From") -> NameAddr:
    """Parse ``"Name" <sip:…>;tag=x`` or the bare ``sip:…;tag=x`` form."""
    t = text.strip()
    if t == "*":
        return NameAddr(SipUri(host="*"), wildcard=True)
    if "<" in t:
        lt = t.index("<")
        gt = t.find(">", lt)
        if gt < 0:
            raise SipParseError(field, "'<' without a closing '>'", text)
        display = t[:lt].strip()
        if len(display) >= 2 and display[0] == display[-1] == '"':
            display = display[1:-1]
        uri = parse_uri(t[lt + 1 : gt], field)
        _, params = _split_params(t[gt + 1 :])
        return NameAddr(uri, display or None, tuple(params.items()))
    # Bare addr-spec: parameters after the URI belong to the header (RFC 3261 §20.10).
    base, params = _split_params(t)
    return NameAddr(parse_uri(base, field), None, tuple(params.items()))


# ------------------------------------------------------------------------------------------- Via


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42, RFC 3581 ``rport``)."""

    transport: str
    host: str
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()

    @property
    def branch(self) -> str | None:
        return dict(self.params).get("branch")

    @property
    def received(self) -> str | None:
        return dict(self.params).get("received")

    @property
    def has_rport(self) -> bool:
        return "rport" in dict(self.params)

    @property
    def rport(self) -> int | None:
        v = dict(self.params).get("rport")
        return int(v) if v and v.isdigit() else None

    @property
    def sent_by(self) -> tuple[str, int]:
        default = 5061 if self.transport == "TLS" else 5060
        return (self.host.lower(), self.port or default)

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"

    def with_params(self, **updates: str | None) -> Via:
        p = dict(self.params)
        p.update(updates)
        return Via(self.transport, self.host, self.port, tuple(p.items()))

    def __str__(self) -> str:
        hp = f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            hp += f":{self.port}"
        return f"SIP/2.0/{self.transport} {hp}{_format_params(dict(self.params))}"


def parse_via(text: str) -> Via:
    """Parse one Via value (not a comma-separated list)."""
    base, params = _split_params(text)
    m = re.fullmatch(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(\S+)", base.strip(), re.IGNORECASE)
    if not m:
        raise SipParseError("Via", "must look like 'SIP/2.0/UDP host[:port]'", text)
    transport = m.group(1).upper()
    hostport = m.group(2)
    port: int | None = None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipParseError("Via", "IPv6 sent-by has no closing ']'", text)
        host = hostport[1:end]
        if hostport[end + 1 :].startswith(":"):
            port = _port(hostport[end + 2 :], "Via", text)
    else:
        host, colon, p = hostport.partition(":")
        if colon:
            port = _port(p, "Via", text)
    if not host:
        raise SipParseError("Via", "has no sent-by host", text)
    return Via(transport, host, port, tuple(params.items()))


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or not _TOKEN.match(parts[1]):
        raise SipParseError("CSeq", "must be '<number> <METHOD>'", text)
    seq = int(parts[0])
    if seq >= 2**31:
        raise SipParseError("CSeq", "sequence number must be below 2**31", text)
    return CSeq(seq, parts[1].upper())


# --------------------------------------------------------------------------------------- headers


class Headers:
    """Ordered, case-insensitive, multi-valued headers. Names are stored canonically."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items or []:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value`` (in the first one's place)."""
        c = canonical_name(name)
        for i, (n, _) in enumerate(self._items):
            if n == c:
                self._items[i] = (c, value)
                self._items = [it for j, it in enumerate(self._items) if j <= i or it[0] != c]
                return
        self._items.append((c, value))

    def remove(self, name: str) -> None:
        c = canonical_name(name)
        self._items = [it for it in self._items if it[0] != c]

    def get(self, name: str) -> str | None:
        c = canonical_name(name)
        for n, v in self._items:
            if n == c:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list headers (Via, Contact, Route…) split at commas."""
        c = canonical_name(name)
        out: list[str] = []
        for n, v in self._items:
            if n != c:
                continue
            if c in _LIST_HEADERS:
                out.extend(s.strip() for s in _split_outside_quotes(v, ",") if s.strip())
            else:
                out.append(v)
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h


# -------------------------------------------------------------------------------------- messages


@dataclass(slots=True)
class _MessageBase:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def call_id(self) -> str:
        v = self.headers.get("Call-ID")
        if not v or not v.strip():
            raise SipParseError("Call-ID", "is missing")
        return v.strip()

    @property
    def cseq(self) -> CSeq:
        v = self.headers.get("CSeq")
        if v is None:
            raise SipParseError("CSeq", "is missing")
        return parse_cseq(v)

    @property
    def from_(self) -> NameAddr:
        v = self.headers.get("From")
        if v is None:
            raise SipParseError("From", "is missing")
        return parse_name_addr(v, "From")

    @property
    def to(self) -> NameAddr:
        v = self.headers.get("To")
        if v is None:
            raise SipParseError("To", "is missing")
        return parse_name_addr(v, "To")

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise SipParseError("Via", "is missing")
        return parse_via(values[0])

    @property
    def contacts(self) -> list[NameAddr]:
        return [parse_name_addr(v, "Contact") for v in self.headers.get_all("Contact")]

    @property
    def expires(self) -> int | None:
        """The Expires header as seconds, or None when absent."""
        v = self.headers.get("Expires")
        if v is None:
            return None
        v = v.strip()
        if not v.isdigit():
            raise SipParseError("Expires", "must be a number of seconds", v)
        return int(v)

    @property
    def content_type(self) -> str | None:
        v = self.headers.get("Content-Type")
        return v.strip() if v else None

    def set_top_via(self, via: Via) -> None:
        """Replace the first Via value, keeping the others in order."""
        values = self.headers.get_all("Via")
        values[0] = str(via)
        self.headers.remove("Via")
        self._insert_vias(values)

    def _insert_vias(self, values: list[str]) -> None:
        items = list(self.headers)
        self.headers = Headers([("Via", v) for v in values] + items)

    def _head_and_body(self, start_line: str) -> bytes:
        lines = [start_line]
        for n, v in self.headers:
            if n != "Content-Length":
                lines.append(f"{n}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass(slots=True)
class SipRequest(_MessageBase):
    method: str = ""
    uri: SipUri = field(default_factory=lambda: SipUri(host="invalid"))

    def to_bytes(self) -> bytes:
        return self._head_and_body(f"{self.method} {self.uri} SIP/2.0")


@dataclass(slots=True)
class SipResponse(_MessageBase):
    status: int = 200
    reason: str = "OK"

    def to_bytes(self) -> bytes:
        return self._head_and_body(f"SIP/2.0 {self.status} {self.reason}")


SipMessage = SipRequest | SipResponse


def _decode_line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace")


def _split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """Split at the first empty line (CRLF CRLF or LF LF, mixed allowed); None if not there yet."""
    m = re.search(rb"\r?\n\r?\n", data)
    if m is None:
        return None
    return data[: m.start()], data[m.end() :]


def _parse_head(head: bytes) -> tuple[SipRequest | SipResponse, int | None]:
    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in head.split(b"\n")]
    if not lines or not lines[0].strip():
        raise SipParseError("start_line", "is empty")
    start = _decode_line(lines[0]).strip()
    msg: SipRequest | SipResponse
    sm = _STATUS_LINE.match(start)
    if sm:
        status = int(sm.group(1))
        if not 100 <= status <= 699:
            raise SipParseError("start_line", "status code must be between 100 and 699", status)
        msg = SipResponse(status=status, reason=(sm.group(2) or "").strip())
    else:
        rm = _REQUEST_LINE.match(start)
        if not rm:
            raise SipParseError(
                "start_line", "is neither 'METHOD uri SIP/2.0' nor 'SIP/2.0 code reason'", start
            )
        msg = SipRequest(method=rm.group(1).upper(), uri=parse_uri(rm.group(2), "request_uri"))
    unfolded: list[str] = []
    for raw in lines[1:]:
        text = _decode_line(raw)
        if text[:1] in (" ", "\t"):
            if not unfolded:
                raise SipParseError("header", "continuation line before any header", text)
            unfolded[-1] += " " + text.strip()
        elif text.strip():
            unfolded.append(text)
    headers = Headers()
    for line in unfolded:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not _TOKEN.match(name):
            raise SipParseError("header", "line is not 'Name: value'", line)
        headers.add(name, value.strip())
    msg.headers = headers
    cl = headers.get("Content-Length")
    length: int | None = None
    if cl is not None:
        if not cl.strip().isdigit():
            raise SipParseError("Content-Length", "must be a non-negative number", cl)
        length = int(cl.strip())
    for required in ("Call-ID", "CSeq", "From", "To", "Via"):
        if required not in headers:
            raise SipParseError(required, "is missing")
    msg.cseq  # noqa: B018  (validates the CSeq value early)
    return msg, length


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one complete message (a UDP datagram). Raises :class:`SipParseError`."""
    stripped = data.lstrip(b"\r\n")
    parts = _split_head(stripped)
    if parts is None:
        # A message with no body may end right after its last header line.
        parts = (stripped.rstrip(b"\r\n"), b"")
    head, rest = parts
    msg, length = _parse_head(head)
    if length is None:
        msg.body = rest
    elif length > len(rest):
        raise SipParseError(
            "Content-Length", f"says {length} bytes but the body has {len(rest)}", length
        )
    else:
        msg.body = rest[:length]
    return msg


class StreamFramer:
    """Splits a stream transport's bytes into messages (RFC 3261 §18.3), across partial reads.

    A message without Content-Length on a stream is taken to have an empty body. Bytes that cannot
    be a message raise :class:`SipParseError`; the connection should then be closed, since the
    framing is lost.
    """

    def __init__(self, max_message: int = 1 << 20) -> None:
        self._buf = bytearray()
        self._max = max_message

    def feed(self, data: bytes) -> list[SipRequest | SipResponse]:
        self._buf += data
        out: list[SipRequest | SipResponse] = []
        while True:
            # Keep-alive CRLFs between messages are not messages.
            i = 0
            while i < len(self._buf) and self._buf[i] in (0x0D, 0x0A):
                i += 1
            if i:
                del self._buf[:i]
            if not self._buf:
                break
            parts = _split_head(bytes(self._buf))
            if parts is None:
                if len(self._buf) > self._max:
                    raise SipParseError("header", f"no end of headers in {len(self._buf)} bytes")
                break
            head, rest = parts
            msg, length = _parse_head(head)
            length = length or 0
            if length > self._max:
                raise SipParseError("Content-Length", f"exceeds {self._max} bytes", length)
            if len(rest) < length:
                break
            msg.body = rest[:length]
            consumed = len(self._buf) - len(rest) + length
            del self._buf[:consumed]
            out.append(msg)
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


def make_response(
    request: SipRequest, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> SipResponse:
    """A response to ``request`` per RFC 3261 §8.2.6: Via, From, To (+tag), Call-ID, CSeq copied."""
    h = Headers()
    for v in request.headers.get_all("Via"):
        h.add("Via", v)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is not None:
            h.add(name, value)
    if to_tag is not None and status > 100:
        to = request.to
        if to.tag is None:
            h.set("To", str(to.with_tag(to_tag)))
    return SipResponse(headers=h, status=status, reason=reason or REASONS.get(status, ""))
