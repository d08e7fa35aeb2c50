"""nats-server's configuration of one node, rendered from ``NatsSettings`` (pure but the writer).

What every node's server gets (the choices tested on nats-server 2.9.10 in research/vms_nats.md):

- ``server_name`` = the node's 20-digit code; JetStream with ``domain`` = the code (unique per
  node, never shared with the parent: the same domain on hub and leaf is the classic
  misconfiguration) and its store in ``<data_dir>/federation/jetstream``.
- Clients (the node's own processes) on loopback only; the monitoring port (``/varz``, ``/leafz``)
  on loopback by default.
- ``ping_interval`` (default 10 s) and ``ping_max`` 2 server-wide: in 2.9 they also govern leaf
  links, and with the defaults (2 min) a silently dead uplink is noticed only after ~6 minutes.
- A hub (a node with children) listens for leaf connections with TLS ``verify: true``: a child must
  present a certificate from the network CA, otherwise the handshake fails and the hub logs why.
  ``advertise`` is required on a hub: 2.9 gossips its leaf URL to children, who would otherwise
  redial the listen address (pitfall P1).
- The uplink: one leaf remote to the parent over TLS with the node's certificate (client auth) and
  the CA to check the parent's. A second parent is a second URL of the *same* remote, tried in
  order (``dont_randomize``): two remotes to two hubs of one tree would make a loop, which
  nats-server refuses (pitfall P6). ``reconnect`` 1 s.
- No accounts: the leaf binds to the global account, where JetStream is enabled; the domain
  mapping (``$JS.<code>.API``) reaches each node's JetStream from anywhere in the tree.

Public: ``NatsSettings``, ``validate``, ``render``, ``write_config``, ``parse_parent_url``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vmesh.errors import ErrorList, FieldError, InvalidInput
from vmesh.identity.codes import parse_code
from vmesh.node.files import write_atomic

CONFIG_FILE = "nats-server.conf"
PARENT_SCHEMES = ("nats-leaf", "tls", "nats")

_SAFE_TEXT = re.compile(r'^[^"\\\n\r\x00$]*$')


@dataclass(frozen=True)
class NatsSettings:
    """Everything the rendered configuration depends on. Paths must be absolute."""

    node_code: str
    store_dir: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    client_host: str = "127.0.0.1"
    client_port: int = 4222
    monitor_host: str = "127.0.0.1"
    monitor_port: int = 8222
    # Leaf listener for children; ``0`` = none (a node without children).
    leaf_host: str = "0.0.0.0"
    leaf_port: int = 7422
    # host:port children dial this node at (required when ``leaf_port`` is set).
    advertise: str = ""
    # The parent's leaf URL, then optionally a second parent's.
    parents: tuple[str, ...] = ()
    ping_interval: int = 10
    ping_max: int = 2
    reconnect_seconds: int = 1
    tls_timeout: float = 3.0
    max_memory_mb: int = 256
    max_file_mb: int = 2048


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _port_ok(port: object) -> bool:
    return isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535


def parse_parent_url(url: str, field: str = "parents") -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a parent's leaf URL, or ``InvalidInput`` saying why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidInput.one(field, f"is not a URL: {e}", url) from None
    if parts.scheme not in PARENT_SCHEMES:
        raise InvalidInput.one(
            field, f"must start with {', '.join(s + '://' for s in PARENT_SCHEMES)}", url
        )
    if parts.username or parts.password:
        raise InvalidInput.one(
            field,
            "must not carry a user or password: nodes authenticate with their certificates",
            url,
        )
    host = parts.hostname or ""
    if not host or not _SAFE_TEXT.match(host):
        raise InvalidInput.one(field, "has no host", url)
    if port is None:
        raise InvalidInput.one(field, "must name the parent's leaf port (host:port)", url)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidInput.one(field, "must be scheme://host:port with nothing after", url)
    return parts.scheme, host, port


def validate(s: NatsSettings) -> None:
    """Raise ``InvalidInput`` listing every setting that cannot work, with the reason."""
    errs = ErrorList()
    try:
        code = parse_code(s.node_code, "node_code")
        if code.type != "200":
            errs.add(FieldError("node_code", "a node's code must have type 200", s.node_code))
    except InvalidInput as e:
        errs.errors.extend(e.errors)
    if not _is_loopback(s.client_host):
        errs.add(
            FieldError(
                "client_host",
                "the node's own processes are the only clients: listen on loopback",
                s.client_host,
            )
        )
    if not _is_ip(s.monitor_host) and s.monitor_host != "localhost":
        errs.add(FieldError("monitor_host", "must be an IP address", s.monitor_host))
    ports: dict[str, int] = {"client_port": s.client_port, "monitor_port": s.monitor_port}
    if s.leaf_port != 0:
        ports["leaf_port"] = s.leaf_port
        if not _is_ip(s.leaf_host):
            errs.add(FieldError("leaf_host", "must be an IP address", s.leaf_host))
        adv_host, _, adv_port = s.advertise.rpartition(":")
        if not s.advertise:
            errs.add(
                FieldError(
                    "advertise",
                    "is required on a node that accepts children (leaf_port set): the "
                    "host:port children dial; nats-server 2.9 tells children its listen "
                    "address otherwise",
                )
            )
        elif (
            not adv_host
            or not _SAFE_TEXT.match(adv_host)
            or not adv_port.isdigit()
            or not 1 <= int(adv_port) <= 65535
        ):
            errs.add(FieldError("advertise", "must be host:port", s.advertise))
    for name, port in ports.items():
        if not _port_ok(port):
            errs.add(FieldError(name, "must be a port number 1-65535", str(port)))
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            errs.add(FieldError(name, f"is the same port as {seen[port]}", str(port)))
        seen.setdefault(port, name)
    if len(s.parents) > 2:
        errs.add(
            FieldError("parents", "a node has one parent and at most a second one", str(s.parents))
        )
    for i, url in enumerate(s.parents):
        try:
            parse_parent_url(url, f"parents[{i}]")
        except InvalidInput as e:
            errs.errors.extend(e.errors)
    if len(set(s.parents)) != len(s.parents):
        errs.add(FieldError("parents", "the same parent is listed twice", str(s.parents)))
    for name in ("store_dir", "ca_file", "cert_file", "key_file"):
        p: Path = getattr(s, name)
        if not p.is_absolute():
            errs.add(FieldError(name, "must be an absolute path", str(p)))
        elif not _SAFE_TEXT.match(str(p)):
            errs.add(FieldError(name, "must not contain quotes, backslashes or $", str(p)))
    if not 1 <= s.ping_interval <= 600:
        errs.add(FieldError("ping_interval", "must be 1-600 seconds", str(s.ping_interval)))
    if not 1 <= s.ping_max <= 10:
        errs.add(FieldError("ping_max", "must be 1-10", str(s.ping_max)))
    if not 1 <= s.reconnect_seconds <= 300:
        errs.add(FieldError("reconnect_seconds", "must be 1-300 seconds", str(s.reconnect_seconds)))
    if not 0.5 <= s.tls_timeout <= 60:
        errs.add(FieldError("tls_timeout", "must be 0.5-60 seconds", str(s.tls_timeout)))
    if s.max_memory_mb < 1:
        errs.add(FieldError("max_memory_mb", "must be at least 1", str(s.max_memory_mb)))
    if s.max_file_mb < 1:
        errs.add(FieldError("max_file_mb", "must be at least 1", str(s.max_file_mb)))
    errs.raise_if_any("nats-server settings cannot be used")


def _q(v: str | Path) -> str:
    text = str(v)
    if not _SAFE_TEXT.match(text):  # validate() refuses these earlier
        raise ValueError(f"cannot render {text!r} in a nats-server configuration")
    return f'"{text}"'


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


HEADER = (
    "# Rendered by vmesh (vmesh.federation.natsconf) at every start of the node; edits here are\n"
    "# lost. Change the node's [federation] configuration instead.\n"
)


def render(s: NatsSettings) -> str:
    """Validate ``s`` and return the text of nats-server's configuration file. No I/O."""
    validate(s)
    tls_lines = [
        f"    cert_file: {_q(s.cert_file)}",
        f"    key_file: {_q(s.key_file)}",
        f"    ca_file: {_q(s.ca_file)}",
        f"    timeout: {_num(s.tls_timeout)}",
    ]
    out = [
        HEADER,
        f"server_name: {_q(s.node_code)}",
        f"listen: {_q(f'{s.client_host}:{s.client_port}')}",
        f"http: {_q(f'{s.monitor_host}:{s.monitor_port}')}",
        # Server-wide, and in 2.9 the only liveness setting of leaf links too.
        f'ping_interval: "{s.ping_interval}s"',
        f"ping_max: {s.ping_max}",
        "logtime: true",
        "",
        "jetstream {",
        f"  store_dir: {_q(s.store_dir)}",
        f"  domain: {_q(s.node_code)}",
        f"  max_memory_store: {s.max_memory_mb}MB",
        f"  max_file_store: {s.max_file_mb}MB",
        "}",
        "",
        "leafnodes {",
        f"  reconnect: {s.reconnect_seconds}",
    ]
    if s.leaf_port:
        out += [
            f"  listen: {_q(f'{s.leaf_host}:{s.leaf_port}')}",
            f"  advertise: {_q(s.advertise)}",
            "  tls {",
            *tls_lines,
            "    # Mutual TLS: a child must present a certificate from the network CA.",
            "    verify: true",
            "  }",
        ]
    if s.parents:
        urls = ", ".join(
            _q("{}://{}:{}".format(*_leaf_url(u))) for u in s.parents
        )  # scheme normalised below
        out += [
            "  remotes: [",
            "    {",
            f"      urls: [{urls}]",
            # Primary parent first; the second is used only when the first cannot be reached.
            "      dont_randomize: true",
            "      tls {",
            *("    " + line for line in tls_lines),
            "      }",
            "    }",
            "  ]",
        ]
    out += ["}", ""]
    return "\n".join(out)


def _leaf_url(url: str) -> tuple[str, str, int]:
    scheme, host, port = parse_parent_url(url)
    # ``nats-leaf`` is the leaf scheme; TLS is forced by the remote's tls block either way.
    return "nats-leaf" if scheme == "nats" else scheme, host, port


def write_config(text: str, path: Path) -> None:
    """Write the rendered file (0600, temp file renamed into place); make its folder (0700)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    write_atomic(path, text, 0o600)
