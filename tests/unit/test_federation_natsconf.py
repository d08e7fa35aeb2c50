"""nats-server configuration rendering, the [federation] section, and bus subjects."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from vmesh.config import ConfigError, parse_config
from vmesh.errors import InvalidInput
from vmesh.federation.bus import rpc_subject
from vmesh.federation.natsconf import NatsSettings, render
from vmesh.federation.service import settings_for_node

pytestmark = pytest.mark.unit

CITY = "33010000002006000001"
TLS = Path("/var/lib/vmesh/federation/tls")


def _settings(**kw: object) -> NatsSettings:
    base = NatsSettings(
        node_code=CITY,
        store_dir=Path("/var/lib/vmesh/federation"),
        ca_file=TLS / "ca.pem",
        cert_file=TLS / "node.pem",
        key_file=TLS / "node.key",
        advertise="10.1.0.2:7422",
        parents=("nats-leaf://10.1.0.1:7422",),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def _block(text: str, name: str) -> str:
    """The text of the first ``name { ... }`` block (balanced braces)."""
    start = text.index(name + " {")
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0 and text[i] == "}":
            return text[start : i + 1]
    raise AssertionError(f"unbalanced {name}")


def test_hub_and_leaf_settings_as_tested_on_2_9() -> None:
    text = render(_settings())
    assert f'server_name: "{CITY}"' in text
    assert 'listen: "127.0.0.1:4222"' in text  # clients: loopback only
    assert 'http: "127.0.0.1:8222"' in text
    assert 'ping_interval: "10s"' in text and "ping_max: 2" in text
    js = _block(text, "jetstream")
    assert f'domain: "{CITY}"' in js and 'store_dir: "/var/lib/vmesh/federation"' in js
    leaf = _block(text, "leafnodes")
    assert 'listen: "0.0.0.0:7422"' in leaf and 'advertise: "10.1.0.2:7422"' in leaf
    listener_tls = _block(leaf, "tls")
    assert "verify: true" in listener_tls  # mutual TLS: children must show a CA certificate
    assert f'ca_file: "{TLS}/ca.pem"' in listener_tls
    remotes = leaf[leaf.index("remotes") :]
    assert 'urls: ["nats-leaf://10.1.0.1:7422"]' in remotes
    remote_tls = _block(remotes, "tls")
    assert f'cert_file: "{TLS}/node.pem"' in remote_tls and "verify" not in remote_tls
    assert "password" not in text and "authorization" not in text


def test_second_parent_is_a_fallback_url_of_the_same_remote() -> None:
    text = render(_settings(parents=("nats-leaf://10.1.0.1:7422", "tls://hub2.example:7433")))
    assert len(re.findall(r"urls:", text)) == 1  # two remotes would form a loop in the tree
    assert 'urls: ["nats-leaf://10.1.0.1:7422", "tls://hub2.example:7433"]' in text
    assert "dont_randomize: true" in text


def test_leaf_only_node_has_no_listener_and_province_no_remote() -> None:
    leaf_only = render(_settings(leaf_port=0, advertise=""))
    assert 'listen: "0.0.0.0' not in leaf_only and "verify" not in leaf_only
    province = render(_settings(parents=()))
    assert "remotes" not in province


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"client_host": "0.0.0.0"}, "client_host", "loopback"),
        ({"advertise": ""}, "advertise", "required"),
        ({"advertise": "10.1.0.2"}, "advertise", "host:port"),
        ({"parents": ("http://x:1",)}, "parents[0]", "must start with"),
        ({"parents": ("nats-leaf://u:p@x:1",)}, "parents[0]", "certificates"),
        ({"parents": ("nats-leaf://x",)}, "parents[0]", "leaf port"),
        (
            {"parents": ("nats-leaf://a:1", "nats-leaf://b:1", "nats-leaf://c:1")},
            "parents",
            "at most",
        ),
        ({"monitor_port": 4222}, "monitor_port", "same port as client_port"),
        ({"node_code": "33010000001326000001"}, "node_code", "type 200"),
        ({"ca_file": Path("relative/ca.pem")}, "ca_file", "absolute"),
        ({"cert_file": Path('/tmp/"x.pem')}, "cert_file", "quotes"),
        ({"ping_interval": 0}, "ping_interval", "1-600"),
    ],
)
def test_bad_settings_name_field_and_reason(
    change: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as e:
        render(_settings(**change))
    hits = [fe for fe in e.value.errors if fe.field == field]
    assert hits and reason in hits[0].reason, e.value.errors


def test_federation_section_feeds_the_settings(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "node": {"code": CITY, "name": "杭州", "tier": "city", "data_dir": str(tmp_path)},
            "federation": {
                "enabled": True,
                "advertise": "10.1.0.2:7422",
                "parents": ["nats-leaf://10.1.0.1:7422"],
                "ping_interval_seconds": 5,
            },
        }
    )
    s = settings_for_node(cfg)
    assert s.node_code == CITY and s.parents == ("nats-leaf://10.1.0.1:7422",)
    assert s.cert_file == tmp_path / "federation" / "tls" / "node.pem"
    assert s.ping_interval == 5
    assert 'ping_interval: "5s"' in render(s)


@pytest.mark.parametrize(
    ("fed", "message"),
    [
        ({"enabled": True}, "advertise"),
        ({"parents": ["ftp://x:1"]}, "federation.parents"),
        ({"parents": ["nats-leaf://a:1"] * 2}, "listed twice"),
        ({"leaf_host": "any"}, "federation.leaf_host"),
        ({"client_port": 8222}, "must differ"),
        ({"colour": 1}, "federation.colour: unknown key"),
    ],
)
def test_bad_federation_config_names_the_key(
    tmp_path: Path, fed: dict[str, object], message: str
) -> None:
    node = {"code": CITY, "name": "杭州", "tier": "city"}
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"node": node, "federation": fed})


def test_rpc_subject() -> None:
    assert rpc_subject(CITY, "stream.open") == f"vmesh.{CITY}.rpc.stream.open"
    with pytest.raises(InvalidInput) as e:
        rpc_subject(CITY, "bad subject")
    assert e.value.errors[0].field == "service"
    for bad in ("*", ">", "a..b", ""):
        with pytest.raises(InvalidInput):
            rpc_subject(CITY, bad)
    with pytest.raises(InvalidInput) as e:
        rpc_subject("123", "echo")
    assert e.value.errors[0].field == "node"
