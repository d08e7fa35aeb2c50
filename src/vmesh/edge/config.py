"""Janus's configuration: typed settings in, file contents out, written into the node's data folder.

``render(settings)`` is pure: it validates ``JanusSettings`` (``InvalidInput`` naming the field and
the reason) and returns a ``RenderedConfig``: the text of each ``.jcfg`` file plus the module links
of a plugins/transports folder of our own. ``write_config`` puts them on disk;
``load_or_create_secrets`` keeps the per-install secrets. Facts behind the choices (tested with
Debian's Janus 1.1.2, see ``shared/research/janus_spike.md`` and ``netns_testbed.md``):

- Only the modules we use are loaded: Janus loads every ``.so`` of its ``plugins_folder`` and
  ``transports_folder``, so those point at folders of our own holding links to
  ``libjanus_streaming.so``, ``libjanus_videoroom.so`` and ``libjanus_http.so`` only. Event handlers
  and loggers get empty folders. This also keeps out nanomsg (``ipc:///tmp/janus.ipc``, shared by
  every instance on a host), pfunix (filesystem sockets) and SIP/NoSIP (bind on all interfaces).
- The HTTP API and the admin API listen on loopback only: browsers signal through the node.
- Secrets are generated per install (never the shipped ``janusoverlord``): ``admin_secret`` for the
  admin API, ``api_secret`` for the Janus API and an ``admin_key`` that the Streaming and VideoRoom
  plugins require to create mountpoints and rooms; ``lock_rtp_forward`` guards ``rtp_forward``.
  The files that contain them are written with mode 0600 in a 0700 folder.
- ``nat.ice_keepalive_conncheck = true``: without it a viewer never recovers from a cut of more than
  about 16 s.
- Janus never gathers ICE candidates on a loopback interface (1.1.2 ``ice.c`` skips
  ``IFF_LOOPBACK``), and with an enforce list naming only loopback libnice silently falls back to
  every other interface. So ``ice_enforce_list`` must name a real interface or address; a loopback
  one is refused with that reason.
- The sample Streaming mountpoints and VideoRoom rooms are not rendered (they bind fixed ports).

Public: ``JanusSettings``, ``JanusSecrets``, ``RenderedConfig``, ``render``, ``write_config``,
``load_or_create_secrets``, ``find_janus_lib_dir``, ``PLUGINS``, ``TRANSPORTS``, ``JANUS_CONFIG``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vmesh.errors import ErrorList, FieldError, InvalidInput
from vmesh.node.files import write_atomic

log = logging.getLogger(__name__)

JANUS_CONFIG = "janus.jcfg"
PLUGINS = ("libjanus_streaming.so", "libjanus_videoroom.so")
TRANSPORTS = ("libjanus_http.so",)
PLUGIN_NAMES = ("janus.plugin.streaming", "janus.plugin.videoroom")
TRANSPORT_NAMES = ("janus.transport.http",)
# Janus's own defaults, which anyone can read in the shipped samples.
SHIPPED_SECRETS = frozenset({"janusoverlord", "janusrocks", "supersecret", "adminpwd"})
SECRETS_FILE = "secrets.json"


@dataclass(frozen=True)
class JanusSecrets:
    """Per-install secrets; see ``load_or_create_secrets``."""

    admin_secret: str
    api_secret: str
    plugin_admin_key: str

    @classmethod
    def generate(cls) -> JanusSecrets:
        return cls(
            admin_secret=secrets.token_urlsafe(32),
            api_secret=secrets.token_urlsafe(32),
            plugin_admin_key=secrets.token_urlsafe(32),
        )


@dataclass(frozen=True)
class JanusSettings:
    """Everything the rendered configuration depends on.

    ``config_dir`` is where the files will live (rendered paths point into it); ``lib_dir`` is the
    installed Janus module folder holding ``plugins/`` and ``transports/``
    (``find_janus_lib_dir``). ``rtp_port_range`` is for ICE (browsers' media);
    ``streaming_port_range`` for the Streaming plugin's own ports (``port: 0``, RTSP clients).
    ``sdp_address`` is the address Janus writes in its SDP (``general.interface``).
    """

    config_dir: Path
    lib_dir: Path
    secrets: JanusSecrets
    http_host: str = "127.0.0.1"
    http_port: int = 8088
    admin_port: int = 7088
    rtp_port_range: tuple[int, int] = (20000, 20999)
    streaming_port_range: tuple[int, int] = (33000, 33999)
    sdp_address: str | None = None
    ice_enforce_list: tuple[str, ...] = ()
    ice_ignore_list: tuple[str, ...] = ("vmnet",)
    session_timeout: int = 60
    debug_level: int = 4
    server_name: str = "vmesh-edge"

    @property
    def api_url(self) -> str:
        return f"http://{_url_host(self.http_host)}:{self.http_port}/janus"

    @property
    def admin_url(self) -> str:
        return f"http://{_url_host(self.http_host)}:{self.admin_port}/admin"


@dataclass(frozen=True)
class RenderedConfig:
    """The configuration folder's content: text files and module links, by relative path."""

    files: Mapping[str, str]
    links: Mapping[str, Path]
    dirs: tuple[str, ...] = field(default=())

    @property
    def janus_config(self) -> str:
        return JANUS_CONFIG


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# --- validation -----------------------------------------------------------------------------------

_SAFE_TEXT = re.compile(r'^[^"\\\n\r\x00]*$')


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port(errs: ErrorList, name: str, port: int) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        errs.add(FieldError(name, "must be a port number 1-65535", str(port)))


def _check_range(errs: ErrorList, name: str, rng: tuple[int, int]) -> bool:
    lo, hi = rng
    if not (1024 <= lo <= 65535 and 1024 <= hi <= 65535):
        errs.add(FieldError(name, "ports must be within 1024-65535", f"{lo}-{hi}"))
        return False
    if hi - lo < 1:
        errs.add(FieldError(name, "must hold at least two ports (low < high)", f"{lo}-{hi}"))
        return False
    return True


def validate(s: JanusSettings) -> None:
    """Raise ``InvalidInput`` listing every setting that cannot work, with the reason."""
    errs = ErrorList()
    if not _is_loopback_host(s.http_host):
        errs.add(
            FieldError(
                "http_host",
                "the Janus API and admin API must listen on loopback only "
                "(browsers signal through the node)",
                s.http_host,
            )
        )
    _check_port(errs, "http_port", s.http_port)
    _check_port(errs, "admin_port", s.admin_port)
    if s.http_port == s.admin_port:
        errs.add(FieldError("admin_port", "must differ from http_port", str(s.admin_port)))
    ok_rtp = _check_range(errs, "rtp_port_range", s.rtp_port_range)
    ok_str = _check_range(errs, "streaming_port_range", s.streaming_port_range)
    if ok_rtp and ok_str:
        (a, b), (c, d) = s.rtp_port_range, s.streaming_port_range
        if a <= d and c <= b:
            errs.add(
                FieldError(
                    "streaming_port_range",
                    f"overlaps rtp_port_range {a}-{b}",
                    f"{c}-{d}",
                )
            )
    for port_name, port in (("http_port", s.http_port), ("admin_port", s.admin_port)):
        for rng_name, (lo, hi) in (
            ("rtp_port_range", s.rtp_port_range),
            ("streaming_port_range", s.streaming_port_range),
        ):
            if lo <= port <= hi:
                errs.add(FieldError(port_name, f"lies inside {rng_name} {lo}-{hi}", str(port)))
    for name in ("admin_secret", "api_secret", "plugin_admin_key"):
        value = getattr(s.secrets, name)
        if len(value) < 16:
            errs.add(FieldError(f"secrets.{name}", "must be at least 16 characters"))
        elif value in SHIPPED_SECRETS:
            errs.add(FieldError(f"secrets.{name}", "is a default shipped with Janus; never use it"))
        elif not _SAFE_TEXT.match(value):
            errs.add(
                FieldError(f"secrets.{name}", "must not contain quotes, backslashes or newlines")
            )
    if s.sdp_address is not None:
        try:
            ipaddress.ip_address(s.sdp_address)
        except ValueError:
            errs.add(FieldError("sdp_address", "must be an IP address", s.sdp_address))
    for item in s.ice_enforce_list:
        if not item or not _SAFE_TEXT.match(item) or "," in item:
            errs.add(FieldError("ice_enforce_list", "must be interface names or addresses", item))
        elif item == "lo" or item.startswith("127.") or item == "::1":
            errs.add(
                FieldError(
                    "ice_enforce_list",
                    "Janus never gathers ICE candidates on a loopback interface; libnice then "
                    "falls back silently to every other interface. "
                    "Name a real interface or address",
                    item,
                )
            )
    for item in s.ice_ignore_list:
        if not item or not _SAFE_TEXT.match(item) or "," in item:
            errs.add(FieldError("ice_ignore_list", "must be interface names or addresses", item))
    if not 10 <= s.session_timeout <= 3600:
        errs.add(FieldError("session_timeout", "must be 10-3600 seconds", str(s.session_timeout)))
    if not 0 <= s.debug_level <= 7:
        errs.add(FieldError("debug_level", "must be 0-7", str(s.debug_level)))
    if not s.server_name or not _SAFE_TEXT.match(s.server_name):
        errs.add(FieldError("server_name", "must be non-empty text without quotes", s.server_name))
    for name in ("config_dir", "lib_dir"):
        p: Path = getattr(s, name)
        if not p.is_absolute():
            errs.add(FieldError(name, "must be an absolute path", str(p)))
        elif not _SAFE_TEXT.match(str(p)):
            errs.add(FieldError(name, "must not contain quotes or backslashes", str(p)))
    errs.raise_if_any("Janus settings cannot be used")


# --- rendering ------------------------------------------------------------------------------------


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str | Path):
        text = str(v)
        if not _SAFE_TEXT.match(text):  # validate() refuses these earlier
            raise ValueError(f"cannot render {text!r} in a Janus configuration")
        return f'"{text}"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot render {type(v).__name__} in a Janus configuration")


def _jcfg(header: str, sections: Mapping[str, Mapping[str, object]]) -> str:
    """libconfig text, as Janus reads it: ``name: { key = value }``."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    out.append("")
    for name, entries in sections.items():
        out.append(f"{name}: {{")
        for key, val in entries.items():
            out.append(f"\t{key} = {_value(val)}")
        out.append("}")
        out.append("")
    return "\n".join(out)


HEADER = (
    "Rendered by vmesh (vmesh.edge.config) at every start of the node; edits here are lost.\n"
    "Contains secrets: keep this file private (mode 0600)."
)


def render(s: JanusSettings) -> RenderedConfig:
    """Validate ``s`` and return the configuration folder's content. No I/O."""
    validate(s)
    d = s.config_dir
    general: dict[str, object] = {
        "configs_folder": d,
        "plugins_folder": d / "plugins",
        "transports_folder": d / "transports",
        "events_folder": d / "events",
        "loggers_folder": d / "loggers",
        "log_to_stdout": True,
        "debug_level": s.debug_level,
        "debug_timestamps": True,
        "debug_colors": False,
        "server_name": s.server_name,
        "session_timeout": s.session_timeout,
        "api_secret": s.secrets.api_secret,
        "admin_secret": s.secrets.admin_secret,
        "hide_dependencies": True,
        # A module that cannot load is a broken install: better a failed start than a half edge.
        "exit_on_dl_error": True,
        "protected_folders": [
            "/bin",
            "/boot",
            "/dev",
            "/etc",
            "/lib",
            "/lib64",
            "/proc",
            "/sbin",
            "/sys",
            "/usr",
            "/var",
        ],
    }
    if s.sdp_address is not None:
        general["interface"] = s.sdp_address
    nat: dict[str, object] = {
        "nice_debug": False,
        "full_trickle": True,
        "ice_keepalive_conncheck": True,
        "ignore_mdns": True,
    }
    if s.ice_enforce_list:
        nat["ice_enforce_list"] = ",".join(s.ice_enforce_list)
    if s.ice_ignore_list:
        nat["ice_ignore_list"] = ",".join(s.ice_ignore_list)
    janus = _jcfg(
        HEADER,
        {
            "general": general,
            "certificates": {},
            "media": {
                "ipv6": False,
                "rtp_port_range": f"{s.rtp_port_range[0]}-{s.rtp_port_range[1]}",
            },
            "nat": nat,
            "plugins": {},
            "transports": {},
            "loggers": {},
            "events": {"broadcast": False},
        },
    )
    http = _jcfg(
        HEADER,
        {
            "general": {
                "json": "compact",
                "base_path": "/janus",
                "http": True,
                "port": s.http_port,
                "ip": s.http_host,
                "https": False,
            },
            "admin": {
                "admin_base_path": "/admin",
                "admin_http": True,
                "admin_port": s.admin_port,
                "admin_ip": s.http_host,
                "admin_https": False,
            },
            "cors": {},
        },
    )
    streaming = _jcfg(
        HEADER,
        {
            "general": {
                "admin_key": s.secrets.plugin_admin_key,
                "rtp_port_range": f"{s.streaming_port_range[0]}-{s.streaming_port_range[1]}",
                "events": False,
            }
        },
    )
    videoroom = _jcfg(
        HEADER,
        {
            "general": {
                "admin_key": s.secrets.plugin_admin_key,
                "lock_rtp_forward": True,
                "events": False,
            }
        },
    )
    files = {
        JANUS_CONFIG: janus,
        "janus.transport.http.jcfg": http,
        "janus.plugin.streaming.jcfg": streaming,
        "janus.plugin.videoroom.jcfg": videoroom,
    }
    links = {f"plugins/{m}": s.lib_dir / "plugins" / m for m in PLUGINS}
    links |= {f"transports/{m}": s.lib_dir / "transports" / m for m in TRANSPORTS}
    return RenderedConfig(
        files=files,
        links=links,
        dirs=("plugins", "transports", "events", "loggers"),
    )


# --- I/O ------------------------------------------------------------------------------------------


def write_config(rendered: RenderedConfig, config_dir: Path) -> None:
    """Write ``rendered`` into ``config_dir`` (0700): files 0600, module links replaced, and any
    module link or file that is not ours removed from the module folders."""
    for target in rendered.links.values():
        if not target.exists():
            raise InvalidInput.one(
                "lib_dir", f"Janus module {target.name} is not installed at {target}", str(target)
            )
    config_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config_dir, 0o700)
    for sub in rendered.dirs:
        (config_dir / sub).mkdir(exist_ok=True)
        os.chmod(config_dir / sub, 0o700)
    for sub in rendered.dirs:
        for entry in (config_dir / sub).iterdir():
            rel = f"{sub}/{entry.name}"
            if rel not in rendered.links:
                log.info("janus config: removing stray module %s", entry)
                entry.unlink()
    for rel, target in rendered.links.items():
        link = config_dir / rel
        tmp = link.with_name(f".{link.name}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, link)
    for rel, text in rendered.files.items():
        write_atomic(config_dir / rel, text)


def load_or_create_secrets(path: Path) -> JanusSecrets:
    """The install's Janus secrets, generated on first use and kept in ``path`` (JSON, 0600).

    A file readable by others is tightened to 0600 (with a warning). A damaged file is an error
    naming the file; it is never silently replaced (running processes may hold the old secrets).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.stat()
    except FileNotFoundError:
        sec = JanusSecrets.generate()
        body = json.dumps(
            {
                "admin_secret": sec.admin_secret,
                "api_secret": sec.api_secret,
                "plugin_admin_key": sec.plugin_admin_key,
            },
            indent=2,
        )
        write_atomic(path, body + "\n")
        log.info("janus: generated new secrets in %s", path)
        return sec
    if stat.S_IMODE(st.st_mode) & 0o077:
        log.warning(
            "janus secrets file %s was readable by others (mode %o); set to 0600",
            path,
            stat.S_IMODE(st.st_mode),
        )
        os.chmod(path, 0o600)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        sec = JanusSecrets(
            admin_secret=str(data["admin_secret"]),
            api_secret=str(data["api_secret"]),
            plugin_admin_key=str(data["plugin_admin_key"]),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidInput.one(
            str(path), f"damaged Janus secrets file ({e}); fix or remove it"
        ) from None
    return sec


_PLUGINS_FOLDER = re.compile(r'^\s*plugins_folder\s*=\s*"([^"]+)"', re.MULTILINE)


def find_janus_lib_dir(system_config: Path = Path("/etc/janus/janus.jcfg")) -> Path | None:
    """The installed Janus module folder (the one holding ``plugins/`` and ``transports/``).

    Taken from the packaged configuration's ``plugins_folder`` when present, otherwise from the
    usual install locations. ``None`` when no Streaming plugin is found anywhere.
    """
    candidates: list[Path] = []
    with contextlib.suppress(OSError):
        m = _PLUGINS_FOLDER.search(system_config.read_text(encoding="utf-8", errors="replace"))
        if m:
            candidates.append(Path(m.group(1)).parent)
    candidates += sorted(Path("/usr/lib").glob("*/janus"))
    candidates += [
        Path("/usr/lib/janus"),
        Path("/usr/local/lib/janus"),
        Path("/opt/janus/lib/janus"),
    ]
    for c in candidates:
        if (c / "plugins" / PLUGINS[0]).exists():
            return c
    return None
