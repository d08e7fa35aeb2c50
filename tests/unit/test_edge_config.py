"""Janus configuration rendering: the keys a node depends on, and settings that cannot work."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from vmesh.edge.config import (
    JanusSecrets,
    JanusSettings,
    load_or_create_secrets,
    render,
    write_config,
)
from vmesh.errors import InvalidInput

pytestmark = pytest.mark.unit

SECRETS = JanusSecrets(
    admin_secret="a" * 20 + "-admin", api_secret="b" * 20 + "-api", plugin_admin_key="c" * 24
)


def settings(**kw: object) -> JanusSettings:
    base = JanusSettings(
        config_dir=Path("/var/lib/vmesh/janus/conf"),
        lib_dir=Path("/usr/lib/x86_64-linux-gnu/janus"),
        secrets=SECRETS,
        http_port=18088,
        admin_port=17088,
        rtp_port_range=(40000, 40999),
        streaming_port_range=(41000, 41999),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def section(text: str, name: str) -> dict[str, str]:
    """The ``key = value`` pairs of one ``name: { ... }`` section of rendered libconfig text."""
    m = re.search(rf"^{re.escape(name)}: \{{\n(.*?)^\}}", text, re.MULTILINE | re.DOTALL)
    assert m, f"section {name} missing in:\n{text}"
    pairs = {}
    for line in m.group(1).splitlines():
        key, _, val = line.strip().partition(" = ")
        pairs[key] = val
    return pairs


def test_janus_jcfg_keys() -> None:
    r = render(settings(sdp_address="10.77.0.13", ice_enforce_list=("eth0",)))
    text = r.files["janus.jcfg"]
    general = section(text, "general")
    assert general["configs_folder"] == '"/var/lib/vmesh/janus/conf"'
    assert general["plugins_folder"] == '"/var/lib/vmesh/janus/conf/plugins"'
    assert general["transports_folder"] == '"/var/lib/vmesh/janus/conf/transports"'
    assert general["events_folder"] == '"/var/lib/vmesh/janus/conf/events"'
    assert general["admin_secret"] == f'"{SECRETS.admin_secret}"'
    assert general["api_secret"] == f'"{SECRETS.api_secret}"'
    assert general["interface"] == '"10.77.0.13"'
    assert general["session_timeout"] == "60"
    assert "janusoverlord" not in text
    media = section(text, "media")
    assert media["rtp_port_range"] == '"40000-40999"'
    nat = section(text, "nat")
    assert nat["ice_keepalive_conncheck"] == "true"
    assert nat["ice_enforce_list"] == '"eth0"'
    assert nat["full_trickle"] == "true"
    assert section(text, "events")["broadcast"] == "false"


def test_only_our_modules_are_linked() -> None:
    r = render(settings())
    lib = Path("/usr/lib/x86_64-linux-gnu/janus")
    assert dict(r.links) == {
        "plugins/libjanus_streaming.so": lib / "plugins/libjanus_streaming.so",
        "plugins/libjanus_videoroom.so": lib / "plugins/libjanus_videoroom.so",
        "transports/libjanus_http.so": lib / "transports/libjanus_http.so",
    }
    assert set(r.files) == {
        "janus.jcfg",
        "janus.transport.http.jcfg",
        "janus.plugin.streaming.jcfg",
        "janus.plugin.videoroom.jcfg",
    }


def test_http_transport_on_loopback_with_admin() -> None:
    text = render(settings()).files["janus.transport.http.jcfg"]
    g = section(text, "general")
    assert (g["http"], g["port"], g["ip"], g["https"]) == ("true", "18088", '"127.0.0.1"', "false")
    a = section(text, "admin")
    assert (a["admin_http"], a["admin_port"], a["admin_ip"]) == ("true", "17088", '"127.0.0.1"')


def test_plugins_need_the_admin_key_and_have_no_samples() -> None:
    r = render(settings())
    st = r.files["janus.plugin.streaming.jcfg"]
    assert section(st, "general")["admin_key"] == f'"{SECRETS.plugin_admin_key}"'
    assert section(st, "general")["rtp_port_range"] == '"41000-41999"'
    vr = r.files["janus.plugin.videoroom.jcfg"]
    assert section(vr, "general")["lock_rtp_forward"] == "true"
    # Only a general section: the sample mountpoints and rooms bind fixed ports.
    assert re.findall(r"^(\S+): \{", st, re.MULTILINE) == ["general"]
    assert re.findall(r"^(\S+): \{", vr, re.MULTILINE) == ["general"]


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"http_host": "0.0.0.0"}, "http_host", "loopback only"),
        ({"admin_port": 18088}, "admin_port", "must differ"),
        ({"rtp_port_range": (41500, 42500)}, "streaming_port_range", "overlaps"),
        ({"rtp_port_range": (5000, 4000)}, "rtp_port_range", "at least two ports"),
        ({"http_port": 40010}, "http_port", "inside rtp_port_range"),
        ({"ice_enforce_list": ("lo",)}, "ice_enforce_list", "loopback"),
        ({"ice_enforce_list": ("127.0.0.1",)}, "ice_enforce_list", "loopback"),
        ({"sdp_address": "eth0"}, "sdp_address", "IP address"),
        ({"session_timeout": 5}, "session_timeout", "10-3600"),
        ({"config_dir": Path("rel/dir")}, "config_dir", "absolute"),
        (
            {"secrets": replace(SECRETS, admin_secret="janusoverlord")},
            "secrets.admin_secret",
            "at least 16",
        ),
        (
            {"secrets": replace(SECRETS, api_secret='x"y' * 8)},
            "secrets.api_secret",
            "quotes",
        ),
    ],
)
def test_bad_settings_name_field_and_reason(
    change: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as ei:
        render(settings(**change))
    errs = {e.field: e.reason for e in ei.value.errors}
    assert field in errs, errs
    assert reason in errs[field]


def test_shipped_default_secret_refused_even_when_long() -> None:
    # "supersecret" style defaults are refused whatever their length check says.
    with pytest.raises(InvalidInput) as ei:
        render(settings(secrets=replace(SECRETS, plugin_admin_key="supersecret")))
    assert ei.value.errors[0].field == "secrets.plugin_admin_key"


def test_secrets_generated_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "janus" / "secrets.json"
    first = load_or_create_secrets(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len({first.admin_secret, first.api_secret, first.plugin_admin_key}) == 3
    assert load_or_create_secrets(path) == first
    other = load_or_create_secrets(tmp_path / "other" / "secrets.json")
    assert other.admin_secret != first.admin_secret


def test_secrets_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    sec = load_or_create_secrets(path)
    os.chmod(path, 0o644)
    assert load_or_create_secrets(path) == sec
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_damaged_secrets_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text("{not json")
    with pytest.raises(InvalidInput) as ei:
        load_or_create_secrets(path)
    assert str(path) in ei.value.errors[0].field
    assert path.read_text() == "{not json"


def test_write_config_private_files_and_no_stray_modules(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for rel in (
        "plugins/libjanus_streaming.so",
        "plugins/libjanus_videoroom.so",
        "transports/libjanus_http.so",
    ):
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        (lib / rel).write_bytes(b"\x7fELF")
    conf = tmp_path / "conf"
    (conf / "plugins").mkdir(parents=True)
    (conf / "plugins" / "libjanus_sip.so").symlink_to(lib / "plugins/libjanus_streaming.so")
    r = render(settings(config_dir=conf, lib_dir=lib))
    write_config(r, conf)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o700
    for name in r.files:
        assert stat.S_IMODE((conf / name).stat().st_mode) == 0o600
        assert (conf / name).read_text() == r.files[name]
    assert sorted(p.name for p in (conf / "plugins").iterdir()) == [
        "libjanus_streaming.so",
        "libjanus_videoroom.so",
    ]
    assert (
        conf / "plugins/libjanus_streaming.so"
    ).resolve() == lib / "plugins/libjanus_streaming.so"
    write_config(r, conf)  # idempotent
    assert sorted(p.name for p in (conf / "transports").iterdir()) == ["libjanus_http.so"]


def test_write_config_refuses_missing_module(tmp_path: Path) -> None:
    r = render(settings(config_dir=tmp_path / "conf", lib_dir=tmp_path / "nolib"))
    with pytest.raises(InvalidInput) as ei:
        write_config(r, tmp_path / "conf")
    assert ei.value.errors[0].field == "lib_dir"
    assert "libjanus_streaming.so" in ei.value.errors[0].reason
