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

Lazy where it costs (a REGISTER storm parses thousands of messages a second on one core): the
parser decodes the head once, splits every header line into name and raw value in one
regular-expression pass (lines it cannot split that way — folded, odd whitespace — go through the
line-by-line path), checks the start line, the headers every message needs (Call-ID, CSeq, From,
To, Via) and Content-Length, and stops there. Header *values* (Via, From, To, Contact, CSeq,
Expires …) are parsed on first access and the result is kept until the headers change, so the
transaction layer, the registrar and the response builder share one parse. The rule this gives:
a malformed line (no ``Name:``) or a missing/invalid required header refuses the message at
parse time, as before; a malformed *value* of a header is found when something reads it and
raises :class:`SipParseError` naming that header (the adapter answers 400 or drops with a log);
a malformed header that nothing reads does not stop the message (as before: only the required
headers were ever checked up front).

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
from typing import cast

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
    """Parse a SIP URI; raise :class:`SipParseError` naming ``field`` if it is not one.

    Short URIs are cached by their text alone (a ``SipUri`` is immutable; errors are not cached,
    and one is raised again naming ``field``): the same request-URI and device URIs come in
    message after message, and a device's From and To URIs are one entry."""
    if len(text) <= 256:
        try:
            return _parse_uri_cached(text)
        except SipParseError:
            pass  # parsed again to name the field
    return _parse_uri(text, field)


def _parse_uri(text: str, field: str) -> SipUri:
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
    if not host or not _HOST.fullmatch(host):
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


_HOST = re.compile(r"[A-Za-z0-9.\-_:]+")


def ascii_digits(s: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also says yes to "²", which ``int`` refuses."""
    return s.isascii() and s.isdigit()


@functools.lru_cache(maxsize=4096)
def _parse_uri_cached(text: str) -> SipUri:
    return _parse_uri(text, "uri")


def _port(p: str, field: str, text: str) -> int:
    if not ascii_digits(p) or not 0 < int(p) <= 65535:
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
    """Parse ``"Name" <sip:…>;tag=x`` or the bare ``sip:…;tag=x`` form.

    Not cached across messages (unlike URIs): From values differ by tag, and such a cache churns
    objects the garbage collector then walks; each message keeps its own parse."""
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
        return int(v) if v and ascii_digits(v) else None

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


_VIA_SENT_BY = re.compile(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(\S+)", re.IGNORECASE)


def parse_via(text: str) -> Via:
    """Parse one Via value (not a comma-separated list)."""
    base, params = _split_params(text)
    m = _VIA_SENT_BY.fullmatch(base.strip())
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
    if len(parts) != 2 or not ascii_digits(parts[0]) or not _TOKEN.match(parts[1]):
        raise SipParseError("CSeq", "must be '<number> <METHOD>'", text)
    seq = int(parts[0])
    if seq >= 2**31:
        raise SipParseError("CSeq", "sequence number must be below 2**31", text)
    return CSeq(seq, parts[1].upper())


# --------------------------------------------------------------------------------------- headers


class Headers:
    """Ordered, case-insensitive, multi-valued headers. Names are stored canonically.

    Also holds the parsed form of header values (``Via``, ``From`` …), filled on first access by
    the message properties and dropped whenever a header changes.
    """

    __slots__ = ("_items", "_parsed")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        self._parsed: dict[str, object] = {}
        for name, value in items or []:
            self.add(name, value)

    @classmethod
    def _canonical(cls, items: list[tuple[str, str]]) -> Headers:
        """Headers from items whose names are canonical already (no copy, no re-spelling)."""
        h = cls.__new__(cls)
        h._items = items
        h._parsed = {}
        return h

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))
        self._parsed.clear()

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value`` (in the first one's place)."""
        c = canonical_name(name)
        self._parsed.clear()
        for i, (n, _) in enumerate(self._items):
            if n == c:
                self._items[i] = (c, value)
                self._items = [it for j, it in enumerate(self._items) if j <= i or it[0] != c]
                return
        self._items.append((c, value))

    def remove(self, name: str) -> None:
        c = canonical_name(name)
        self._items = [it for it in self._items if it[0] != c]
        self._parsed.clear()

    def get(self, name: str) -> str | None:
        c = canonical_name(name)
        for n, v in self._items:
            if n == c:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list headers (Via, Contact, Route…) split at commas."""
        c = canonical_name(name)
        if c in _LIST_HEADERS:
            return list(self._values(c))
        return [v for n, v in self._items if n == c]

    def _values(self, c: str) -> tuple[str, ...]:
        """The values of the list header ``c`` (canonical), split at commas once and kept."""
        key = "values:" + c
        got = self._parsed.get(key)
        if got is None:
            out: list[str] = []
            for n, v in self._items:
                if n != c:
                    continue
                if "," not in v:
                    if v.strip():
                        out.append(v.strip())
                    continue
                out.extend(s.strip() for s in _split_outside_quotes(v, ",") if s.strip())
            got = self._parsed[key] = tuple(out)
        return cast(tuple[str, ...], got)

    def _replace_first_value(self, c: str, value: str) -> None:
        """Replace the first value of the list header ``c`` in place (the others stay, in order,
        each on its own line when they shared the first one's)."""
        values = (value, *self._values(c)[1:])
        for i, (n, v) in enumerate(self._items):
            if n != c:
                continue
            vals = [s.strip() for s in _split_outside_quotes(v, ",") if s.strip()]
            if not vals:
                continue  # an empty line holds no value: the first value is further on
            self._items[i : i + 1] = [(c, value)] + [(c, r) for r in vals[1:]]
            break
        else:
            self._items.insert(0, (c, value))
        self._parsed.clear()
        if "," not in value:  # else it is split again when read, as it would have been
            self._parsed["values:" + c] = values

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

    # Each accessor parses its header on first use and keeps the result in ``headers._parsed``
    # (dropped when a header changes); a value that does not parse raises every time.

    @property
    def call_id(self) -> str:
        v = self.headers.get("Call-ID")
        if not v or not v.strip():
            raise SipParseError("Call-ID", "is missing")
        return v.strip()

    @property
    def cseq(self) -> CSeq:
        parsed = self.headers._parsed
        got = parsed.get("CSeq")
        if got is None:
            v = self.headers.get("CSeq")
            if v is None:
                raise SipParseError("CSeq", "is missing")
            got = parsed["CSeq"] = parse_cseq(v)
        return cast(CSeq, got)

    def _name_addr(self, name: str) -> NameAddr:
        parsed = self.headers._parsed
        got = parsed.get(name)
        if got is None:
            v = self.headers.get(name)
            if v is None:
                raise SipParseError(name, "is missing")
            got = parsed[name] = parse_name_addr(v, name)
        return cast(NameAddr, got)

    @property
    def from_(self) -> NameAddr:
        return self._name_addr("From")

    @property
    def to(self) -> NameAddr:
        return self._name_addr("To")

    @property
    def vias(self) -> list[Via]:
        parsed = self.headers._parsed
        got = parsed.get("vias")
        if got is None:
            got = parsed["vias"] = tuple(parse_via(v) for v in self.headers._values("Via"))
        return list(cast(tuple[Via, ...], got))

    @property
    def top_via(self) -> Via:
        parsed = self.headers._parsed
        got = parsed.get("top_via")
        if got is None:
            values = self.headers._values("Via")
            if not values:
                raise SipParseError("Via", "is missing")
            got = parsed["top_via"] = parse_via(values[0])
        return cast(Via, got)

    @property
    def contacts(self) -> list[NameAddr]:
        parsed = self.headers._parsed
        got = parsed.get("contacts")
        if got is None:
            values = self.headers._values("Contact")
            got = parsed["contacts"] = tuple(parse_name_addr(v, "Contact") for v in values)
        return list(cast(tuple[NameAddr, ...], got))

    @property
    def expires(self) -> int | None:
        """The Expires header as seconds, or None when absent."""
        v = self.headers.get("Expires")
        if v is None:
            return None
        v = v.strip()
        if not ascii_digits(v):
            raise SipParseError("Expires", "must be a number of seconds", v)
        return int(v)

    @property
    def content_type(self) -> str | None:
        v = self.headers.get("Content-Type")
        return v.strip() if v else None

    def release_parsed(self) -> None:
        """Drop the parsed header values kept by the accessors (they parse again if read): a
        transaction that holds its request for Timer J's 32 s after answering does not keep
        a Via, From, To and CSeq per message alive for the garbage collector to walk."""
        self.headers._parsed = {}

    def set_top_via(self, via: Via) -> None:
        """Replace the first Via value, keeping the others in order."""
        self.headers._replace_first_value("Via", str(via))
        self.headers._parsed["top_via"] = via

    def _head_and_body(self, start_line: str) -> bytes:
        lines = [start_line]
        for n, v in self.headers._items:
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
    """Split at the first empty line (CRLF CRLF or LF LF, mixed allowed); None if not there yet.

    The first LF followed by an LF or a CRLF ends the head (a CR before it belongs to the end).
    """
    a = data.find(b"\n\n")
    b = data.find(b"\n\r\n")
    if a < 0 and b < 0:
        return None
    i = b if a < 0 or 0 <= b < a else a
    start = i - 1 if i and data[i - 1] == 0x0D else i
    return data[:start], data[i + (2 if i == a else 3) :]


# One header line, "Name: value". ``[^\S\n]`` is whitespace other than the line end, so a match
# never runs into the next line; the value is stripped after.
_HEADER_LINE = re.compile(r"^([A-Za-z0-9.!%*_+`'~\-]+)[^\S\n]*:(.*)$", re.M)
_REQUIRED = ("Call-ID", "CSeq", "From", "To", "Via")


def _header_items(text: str) -> list[tuple[str, str]]:
    """The header lines of ``text`` (the head after the start line, lines joined by LF) as
    (canonical name, value) pairs."""
    pairs = _HEADER_LINE.findall(text)
    if len(pairs) == text.count("\n") + 1:  # every line is a plain "Name: value"
        return [(canonical_name(n), v.strip()) for n, v in pairs]
    return _header_items_by_line(text.split("\n"))


def _header_items_by_line(lines: list[str]) -> list[tuple[str, str]]:
    """Line by line: folded lines (RFC 3261 §7.3.1), blank lines, odd whitespace; the error
    naming the line that is not a header."""
    unfolded: list[str] = []
    for text in lines:
        if text[:1] in (" ", "\t"):
            if not unfolded:
                raise SipParseError("header", "continuation line before any header", text)
            unfolded[-1] += " " + text.strip()
        elif text.strip():
            unfolded.append(text)
    items: list[tuple[str, str]] = []
    for line in unfolded:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not _TOKEN.match(name):
            raise SipParseError("header", "line is not 'Name: value'", line)
        items.append((canonical_name(name), value.strip()))
    return items


def _decode_head(head: bytes) -> str:
    """The head as text with LF line ends: UTF-8, else each line that is not UTF-8 as GB18030
    (what Chinese devices put in Subject and display names)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        lines = head.split(b"\n")
        return "\n".join(_decode_line(ln[:-1] if ln.endswith(b"\r") else ln) for ln in lines)
    return text.replace("\r\n", "\n") if "\r" in text else text


def _parse_head(head: bytes) -> tuple[SipRequest | SipResponse, int | None]:
    text = _decode_head(head)
    first, _, rest = text.partition("\n")
    if first.endswith("\r"):
        first = first[:-1]
    start = first.strip()
    if not start:
        raise SipParseError("start_line", "is empty")
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
    items = _header_items(rest) if rest else []
    headers = msg.headers = Headers._canonical(items)
    names = {n for n, _ in items}
    length: int | None = None
    if "Content-Length" in names:
        cl = headers.get("Content-Length") or ""
        if not ascii_digits(cl):
            raise SipParseError("Content-Length", "must be a non-negative number", cl)
        length = int(cl)
    for required in _REQUIRED:
        if required not in names:
            raise SipParseError(required, "is missing")
    msg.cseq  # noqa: B018  (validates the CSeq value early; kept for the accessors)
    return msg, length


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one complete message (a UDP datagram). Raises :class:`SipParseError`."""
    stripped = data.lstrip(b"\r\n") if data[:1] in (b"\r", b"\n") else data
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
    """A response to ``request`` per RFC 3261 §8.2.6: Via, From, To (+tag), Call-ID, CSeq copied.

    Copies the request's header values as they are (the Via values as already split, the To
    re-written only when a tag is added): nothing is parsed again."""
    rh = request.headers
    items = [("Via", v) for v in rh._values("Via")]
    for name in _DIALOG_HEADERS:
        value = rh.get(name)
        if value is not None:
            items.append((name, value))
    if to_tag is not None and status > 100:
        to = request.to
        if to.tag is None:
            raw = rh.get("To") or ""
            # A name-addr (``<uri>``) takes the tag as it is; a bare URI is written as one.
            tagged = f"{raw};tag={to_tag}" if raw.endswith(">") else str(to.with_tag(to_tag))
            items = [(n, tagged) if n == "To" else (n, v) for n, v in items]
    return SipResponse(
        headers=Headers._canonical(items), status=status, reason=reason or REASONS.get(status, "")
    )


_DIALOG_HEADERS = ("From", "To", "Call-ID", "CSeq")
