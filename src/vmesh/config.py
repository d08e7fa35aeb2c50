"""Node configuration: TOML, strictly validated at start.

A wrong key or value stops the node with ``ConfigError``, whose message names the key (dotted path)
and what is allowed. Unknown keys are errors too: a typo must not be silently ignored.

Public: ``NodeConfig``, ``load_config``, ``ConfigError``.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vmesh.errors import InvalidInput
from vmesh.identity.codes import Tier, parse_code


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    # Cookies get the Secure flag when the console is served over TLS by a proxy in front.
    secure_cookies: bool = False


class DatabaseConfig(_Strict):
    # Empty: an SQLite file ``vmesh.db`` in the data folder.
    url: str = ""
    # SQLite: MiB of the file each connection reads through mmap (0: none). Every connection
    # maps on its own and its mapped pages count in the node's resident memory; SQLite itself
    # stops at 2047 MiB.
    sqlite_mmap_mib: Annotated[int, Field(ge=0, le=2047, strict=True)] = 0

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        if v and not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v

    @field_validator("sqlite_mmap_mib")
    @classmethod
    def _sqlite_only(cls, v: int, info: ValidationInfo) -> int:
        # ``url`` is checked first (field order); its value stays out of the message.
        if v and str(info.data.get("url", "")).startswith("postgresql"):
            raise ValueError("applies to SQLite only; remove it when url is PostgreSQL")
        return v


class AuthConfig(_Strict):
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12
    lockout_failures: Annotated[int, Field(ge=1, le=100)] = 5
    lockout_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 15


class NodeSection(_Strict):
    code: str
    name: str
    tier: Tier
    data_dir: Path = Path("data")

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        try:
            c = parse_code(v)
        except InvalidInput as e:
            raise ValueError(e.errors[0].reason) from None
        if c.type != "200":
            raise ValueError(f"a node's code must have type 200 (platform), has {c.type}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class LogConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


PortRange = tuple[
    Annotated[int, Field(ge=1024, le=65535)], Annotated[int, Field(ge=1024, le=65535)]
]


class MediaConfig(_Strict):
    """Live video on this node: switch, Janus WebRTC edge, channel pool (docs/live.md)."""

    enabled: bool = False
    janus_http_port: Annotated[int, Field(ge=1, le=65535)] = 8088
    janus_admin_port: Annotated[int, Field(ge=1, le=65535)] = 7088
    # Browsers' ICE/RTP ports on Janus (the only media ports facing browsers).
    ice_port_range: PortRange = (20000, 20999)
    # Janus Streaming plugin's own ports (RTSP client sockets); unused by RTP channels.
    streaming_port_range: PortRange = (33000, 33999)
    # Loopback UDP ports of the channels' mountpoints (4 per channel) and of switch inputs.
    channel_port_range: PortRange = (34000, 34999)
    input_port_range: PortRange = (35000, 36999)
    channels: Annotated[int, Field(ge=1, le=250)] = 16
    # Address written in Janus's SDP and the only one it gathers ICE candidates on; empty: every
    # non-loopback interface.
    public_address: str = ""
    source_linger_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0
    no_signal_seconds: Annotated[float, Field(gt=0, le=60)] = 3.0
    # The switch keeps each camera's current GOP and replays it to a new viewer (instant first
    # frame); false only to measure what it saves (bench/ttff.py).
    gop_cache: bool = True
    # The switch's data plane thread (docs/switch.md, "Scheduling"): the CPUs it may run on
    # (empty: any) and its SCHED_FIFO priority (0: the normal scheduler); refused, a warning.
    dataplane_cpus: list[Annotated[int, Field(ge=0, le=4095)]] = []
    dataplane_priority: Annotated[int, Field(ge=0, le=99)] = 0

    @field_validator(
        "ice_port_range", "streaming_port_range", "channel_port_range", "input_port_range"
    )
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[1] <= v[0]:
            raise ValueError(f"must be [low, high] with low < high, got {list(v)}")
        return v

    @field_validator("public_address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v:
            try:
                a = ipaddress.ip_address(v)
            except ValueError:
                raise ValueError("must be an IP address or empty") from None
            if a.is_loopback:
                raise ValueError(
                    "Janus never gathers ICE candidates on loopback; use a real interface's address"
                )
        return v

    @model_validator(mode="after")
    def _ranges_apart(self) -> MediaConfig:
        names = ("ice_port_range", "streaming_port_range", "channel_port_range", "input_port_range")
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                (lo1, hi1), (lo2, hi2) = getattr(self, a), getattr(self, b)
                if lo1 <= hi2 and lo2 <= hi1:
                    raise ValueError(f"{b} {lo2}-{hi2} overlaps {a} {lo1}-{hi1}")
        lo, hi = self.channel_port_range
        if (hi - lo + 1) // 4 < self.channels:
            raise ValueError(
                f"channel_port_range {lo}-{hi} holds {(hi - lo + 1) // 4} channels "
                f"(4 ports each), fewer than channels = {self.channels}"
            )
        for port in (self.janus_http_port, self.janus_admin_port):
            for n in names:
                lo, hi = getattr(self, n)
                if lo <= port <= hi:
                    raise ValueError(f"Janus port {port} lies inside {n} {lo}-{hi}")
        return self


class FederationConfig(_Strict):
    """The node's nats-server and its leaf links to parent and children (docs/federation.md)."""

    enabled: bool = False
    client_port: Annotated[int, Field(ge=1, le=65535)] = 4222
    monitor_port: Annotated[int, Field(ge=1, le=65535)] = 8222
    leaf_host: str = "0.0.0.0"
    # 0: accept no children.
    leaf_port: Annotated[int, Field(ge=0, le=65535)] = 7422
    advertise: str = ""
    parents: Annotated[list[str], Field(max_length=2)] = []
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    ping_interval_seconds: Annotated[int, Field(ge=1, le=600)] = 10
    # Nodes and links, catalogue (issue 4): how often a child announces itself to its parent, a
    # parent pings its children, and the node publishes its directory changes.
    announce_seconds: Annotated[float, Field(ge=0.2, le=3600)] = 5.0
    link_check_seconds: Annotated[float, Field(ge=0.2, le=3600)] = 5.0
    catalogue_scan_seconds: Annotated[float, Field(ge=0.05, le=3600)] = 1.0
    # Announced to the parent and shown on the network map.
    addresses: list[str] = []
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None

    @field_validator("leaf_host")
    @classmethod
    def _leaf_host(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError("must be an IP address") from None
        return v

    @field_validator("parents")
    @classmethod
    def _parents(cls, v: list[str]) -> list[str]:
        from vmesh.federation.natsconf import parse_parent_url

        for i, url in enumerate(v):
            try:
                parse_parent_url(url, f"parents[{i}]")
            except InvalidInput as e:
                raise ValueError(f"{url!r} {e.errors[0].reason}") from None
        if len(set(v)) != len(v):
            raise ValueError("the same parent is listed twice")
        return v

    @model_validator(mode="after")
    def _hub(self) -> FederationConfig:
        if self.leaf_port and self.advertise:
            host, _, port = self.advertise.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"advertise must be host:port, got {self.advertise!r}")
        if self.enabled and self.leaf_port and not self.advertise:
            raise ValueError(
                "advertise (the host:port children dial) is required when leaf_port is set; "
                "set leaf_port = 0 on a node without children"
            )
        ports = [self.client_port, self.monitor_port] + ([self.leaf_port] if self.leaf_port else [])
        if len(set(ports)) != len(ports):
            raise ValueError(f"client_port, monitor_port and leaf_port must differ, got {ports}")
        return self


class GbUpperConfig(_Strict):
    """One upper GB/T 28181 platform this node registers to (cascade up, docs/gb28181.md)."""

    # The upper platform's 20-digit SIP ID and 10-digit domain.
    id: str
    domain: str = ""
    # host:port of its SIP endpoint.
    address: str
    transport: Literal["udp"] = "udp"
    # Our digest password at the upper (the username is our server_id).
    password: str = ""
    register_expires: Annotated[int, Field(ge=30, le=86400)] = 3600
    keepalive_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # Catalogue items per Response MESSAGE to the upper.
    catalog_page_size: Annotated[int, Field(ge=1, le=100)] = 20
    # Org subtree code whose endpoints are pushed up; empty: the node's whole directory.
    scope: str = ""

    @field_validator("id", "scope")
    @classmethod
    def _code(cls, v: str) -> str:
        if v:
            try:
                parse_code(v)
            except InvalidInput as e:
                raise ValueError(e.errors[0].reason) from None
        return v

    @field_validator("address")
    @classmethod
    def _addr(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port")
        return v

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host, int(port)


class Gb28181Config(_Strict):
    """GB/T 28181 device access: registrar, keepalive, catalogue, live INVITE (docs/gb28181.md)."""

    enabled: bool = False
    sip_host: str = "0.0.0.0"
    sip_port: Annotated[int, Field(ge=0, le=65535)] = 5060
    # Address written in our SIP headers and SDP (what devices reach us at); empty: sip_host, or
    # 127.0.0.1 when sip_host is 0.0.0.0.
    sip_address: str = ""
    # The 10-digit SIP domain; empty: the first 10 digits of the node's code.
    domain: str = ""
    # Our SIP ID; empty: the node's code.
    server_id: str = ""
    # Digest password of devices without attrs.gb_password of their own.
    password: str = ""
    # Org unit new devices are placed under in the directory; empty: devices are refused.
    parent_code: str = ""
    register_expires_max: Annotated[int, Field(ge=60, le=86400)] = 3600
    keepalive_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    keepalive_missed: Annotated[int, Field(ge=1, le=20)] = 3
    catalog_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    # Catalogue SUBSCRIBE after each registration (Expires, refreshed); 0: no subscription.
    catalog_subscribe_seconds: Annotated[int, Field(ge=0, le=86400)] = 3600
    invite_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    # UDP ports devices send PS over RTP to (one per live session).
    media_port_range: PortRange = (37000, 37999)
    # How live media comes (a channel's attrs.gb_media overrides): udp, tcp_passive (devices
    # connect to a port of media_port_range), tcp_active (we connect to the device).
    media_transport: Literal["udp", "tcp_passive", "tcp_active"] = "udp"
    # After the 200 to a device's alarm, also send it a Response CmdType=Alarm MESSAGE.
    alarm_response: bool = True
    # Alarm SUBSCRIBE to every online device (Expires, renewed); 0: no subscription.
    alarm_subscribe_seconds: Annotated[int, Field(ge=0, le=86400)] = 0
    # Upper platforms this node registers to and serves (cascade up): [[gb28181.upper]] tables.
    upper: list[GbUpperConfig] = []

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if v and not (len(v) == 10 and v.isdigit()):
            raise ValueError("must be 10 digits (or empty for the node code's first 10)")
        return v

    @field_validator("server_id", "parent_code")
    @classmethod
    def _code20(cls, v: str) -> str:
        if v:
            try:
                parse_code(v)
            except InvalidInput as e:
                raise ValueError(e.errors[0].reason) from None
        return v

    @field_validator("media_port_range")
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[1] <= v[0]:
            raise ValueError(f"must be [low, high] with low < high, got {list(v)}")
        return v


class FabricConfig(_Strict):
    """Camera streams across node links: the per-node fabric agent (docs/fabric.md)."""

    enabled: bool = False
    # This node's address on the network between nodes: neighbours send streams to it.
    address: str = ""
    # UDP ports of the link ends on ``address`` (one per stream and neighbour).
    port_range: PortRange = (38000, 38999)
    linger_seconds: Annotated[float, Field(ge=0, le=3600)] = 30.0
    rpc_timeout_seconds: Annotated[float, Field(ge=0.5, le=120)] = 10.0
    # A stream whose upstream neighbour sent nothing this long is taken from another neighbour
    # when the node tree now reaches the camera through it (dual homing).
    failover_seconds: Annotated[float, Field(ge=0.2, le=60)] = 1.0
    # Dual homing: a stream from a camera node with two parents also comes through the other
    # parent, hot, where the two paths part; it takes over when the upstream is this long silent.
    hot_standby: bool = True
    standby_takeover_seconds: Annotated[float, Field(ge=0.05, le=10)] = 0.3

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v:
            try:
                ipaddress.ip_address(v)
            except ValueError:
                raise ValueError("must be an IP address or empty") from None
        return v

    @field_validator("port_range")
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[1] <= v[0]:
            raise ValueError(f"must be [low, high] with low < high, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _needs_address(self) -> FabricConfig:
        if self.enabled and not self.address:
            raise ValueError("address (this node's IP address towards its neighbours) is required")
        return self


class ServiceDeskConfig(_Strict):
    """The remote service desk (docs/servicedesk.md)."""

    # The kiosk's ID card reader: "simulated" (sample cards, demo and tests) or "agent" (a vendor
    # agent on the kiosk's 127.0.0.1, reached by the kiosk's browser).
    id_reader: Literal["simulated", "agent"] = "simulated"
    # A kiosk whose page disconnects keeps its case and number this long before it is abandoned.
    kiosk_resume_seconds: Annotated[float, Field(ge=1, le=3600)] = 120.0
    # An agent whose page disconnects mid-call: the case goes back to the head of its queue after.
    agent_grace_seconds: Annotated[float, Field(ge=0.5, le=600)] = 15.0
    # Largest image (face photo, document still) a kiosk may upload, in megabytes.
    max_image_mb: Annotated[float, Field(gt=0, le=50)] = 12.0
    # Load the sample catalogue (40 items of 9 departments) when the catalogue is empty.
    sample_catalogue: bool = False


class RecordingConfig(_Strict):
    """Recording, retention, playback, snapshots and online-rate sampling (docs/recording.md)."""

    enabled: bool = False
    # Where segments are written; empty: <data_dir>/recordings.
    folder: str = ""
    segment_seconds: Annotated[float, Field(ge=1, le=600)] = 10.0
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    # Budget for the recordings folder in bytes (0: none) and the free-space floor of its disk.
    max_bytes: Annotated[int, Field(ge=0)] = 0
    min_free_percent: Annotated[float, Field(ge=0, le=90)] = 5.0
    retention_interval_seconds: Annotated[float, Field(ge=1, le=86400)] = 60.0
    stall_seconds: Annotated[float, Field(ge=2, le=600)] = 15.0
    health_sample_seconds: Annotated[float, Field(ge=5, le=86400)] = 300.0


class CommandConfig(_Strict):
    """Emergency command: incidents, the command room's map, the logs going up (docs/command.md)."""

    # A tile server for the map ({z}/{x}/{y} template); empty: only the offline boundaries.
    tile_url: str = ""
    tile_attribution: str = ""
    # Radius of the resources suggested around an incident, in kilometres.
    nearby_km: Annotated[float, Field(gt=0, le=500)] = 5.0
    # How often entries written here are put in this node's CMD_ stream when nothing wakes it.
    publish_seconds: Annotated[float, Field(ge=0.05, le=3600)] = 1.0
    # GB/T 28181 alarms of these priorities (1 = highest .. 4) open an incident; empty: none.
    alarm_priorities: list[Annotated[int, Field(ge=1, le=4)]] = []
    # ... and of these AlarmMethods only (1 telephone .. 7 other); empty: any method.
    alarm_methods: list[Annotated[int, Field(ge=1, le=7)]] = []


class NodeConfig(_Strict):
    node: NodeSection
    http: HttpConfig = HttpConfig()
    database: DatabaseConfig = DatabaseConfig()
    auth: AuthConfig = AuthConfig()
    log: LogConfig = LogConfig()
    media: MediaConfig = MediaConfig()
    federation: FederationConfig = FederationConfig()
    gb28181: Gb28181Config = Gb28181Config()
    fabric: FabricConfig = FabricConfig()
    recording: RecordingConfig = RecordingConfig()
    servicedesk: ServiceDeskConfig = ServiceDeskConfig()
    command: CommandConfig = CommandConfig()

    @model_validator(mode="after")
    def _fabric_needs(self) -> NodeConfig:
        if self.fabric.enabled and not (self.federation.enabled and self.media.enabled):
            raise ValueError(
                "[fabric] enabled needs [federation] enabled (the bus between nodes) and "
                "[media] enabled (the switch the streams go through)"
            )
        return self

    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.node.data_dir / 'vmesh.db').resolve()}"


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class of the table at ``loc`` (``()`` is the whole file), if it is one."""
    model: type[BaseModel] = NodeConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = field.annotation if field is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def _where(loc: tuple[str | int, ...]) -> str:
    return f"[{'.'.join(str(p) for p in loc)}]" if loc else "the top level"


def _describe(err: dict[str, Any]) -> str:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    name = ".".join(str(p) for p in loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent is not None else "none"
        what = "section" if not loc[:-1] else "key"
        return f"{name}: unknown {what}; allowed in {_where(loc[:-1])}: {allowed}"
    if kind == "missing":
        model = _model_at(loc)
        if model is not None:
            needed = [k for k, f in model.model_fields.items() if f.is_required()]
            return f"{name}: required section [{name}] is missing (it needs {', '.join(needed)})"
        return f"{name}: required key is missing"
    if kind == "model_type":
        return f"{name}: must be a table ([{name}]), got {err.get('input')!r}"
    msg = str(err["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")
    return f"{name}: {msg} (got {err.get('input')!r})"


def parse_config(data: dict[str, object], base_dir: Path | None = None) -> NodeConfig:
    try:
        cfg = NodeConfig.model_validate(data)
    except ValidationError as e:
        lines = [_describe(dict(err)) for err in e.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    if base_dir is not None and not cfg.node.data_dir.is_absolute():
        node = cfg.node.model_copy(update={"data_dir": (base_dir / cfg.node.data_dir).resolve()})
        cfg = cfg.model_copy(update={"node": node})
    return cfg


def load_config(path: Path) -> NodeConfig:
    """Read and validate a TOML file. Relative ``data_dir`` is taken from the file's folder."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    return parse_config(data, base_dir=path.parent)
