"""Configuration: a wrong key or value is refused with a message naming it and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmesh.config import ConfigError, load_config, parse_config

pytestmark = pytest.mark.unit

NODE = {"code": "33000000002006000001", "name": "浙江省节点", "tier": "province"}


def _error(data: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    return str(e.value)


def test_minimal_config_gets_documented_defaults() -> None:
    cfg = parse_config({"node": NODE})
    assert cfg.http.host == "127.0.0.1" and cfg.http.port == 8080
    assert cfg.auth.lockout_failures == 5 and cfg.log.level == "INFO"
    assert cfg.database_url().startswith("sqlite+aiosqlite:///")
    assert cfg.database_url().endswith("/vmesh.db")


def test_unknown_key_names_key_and_allowed_keys() -> None:
    msg = _error({"node": {**NODE, "colour": "red"}})
    assert "node.colour: unknown key" in msg
    assert "code, name, tier, data_dir" in msg


def test_misspelt_section_names_allowed_sections() -> None:
    msg = _error({"node": NODE, "auht": {"lockout_failures": 3}})
    assert "auht: unknown section" in msg
    assert "node, http, database, auth, log" in msg


def test_missing_node_section_says_what_it_needs() -> None:
    msg = _error({"http": {"port": 8080}})
    assert "node: required section [node] is missing" in msg
    assert "code, name, tier" in msg


def test_wrong_tier_lists_the_tiers() -> None:
    msg = _error({"node": {**NODE, "tier": "provnce"}})
    assert "node.tier" in msg
    for tier in ("province", "city", "county", "township", "village"):
        assert tier in msg
    assert "'provnce'" in msg


@pytest.mark.parametrize(
    ("section", "key", "value", "words"),
    [
        ("http", "port", 99999, "less than or equal to 65535"),
        ("http", "port", 0, "greater than or equal to 1"),
        ("database", "url", "mysql://db/x", "sqlite+aiosqlite:// or postgresql+asyncpg://"),
        ("log", "level", "debug", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("auth", "lockout_failures", "five", "valid integer"),
        ("auth", "session_hours", 0, "greater than 0"),
        ("http", "secure_cookies", "maybe", "valid boolean"),
        ("database", "sqlite_mmap_mib", -1, "greater than or equal to 0"),
        ("database", "sqlite_mmap_mib", 4096, "less than or equal to 2047"),
        ("database", "sqlite_mmap_mib", "256", "valid integer"),
    ],
)
def test_bad_value_names_key_and_rule(section: str, key: str, value: object, words: str) -> None:
    msg = _error({"node": NODE, section: {key: value}})
    assert f"{section}.{key}:" in msg
    assert words in msg
    assert repr(value) in msg


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("3300000000200600000", "20 digits"),
        ("33000000001326000001", "type 200"),
        ("3300000000200600000x", "digits"),
    ],
)
def test_bad_node_code_is_refused_with_reason(code: str, words: str) -> None:
    msg = _error({"node": {**NODE, "code": code}})
    assert "node.code:" in msg and words in msg


def test_sqlite_mmap_is_off_by_default_and_refused_for_postgresql() -> None:
    assert parse_config({"node": NODE}).database.sqlite_mmap_mib == 0
    url = "postgresql+asyncpg://vmesh:secret@127.0.0.1/vmesh"
    msg = _error({"node": NODE, "database": {"url": url, "sqlite_mmap_mib": 256}})
    assert "database.sqlite_mmap_mib: applies to SQLite only" in msg
    assert "secret" not in msg
    cfg = parse_config({"node": NODE, "database": {"url": url}})
    assert cfg.database.sqlite_mmap_mib == 0


def test_blank_node_name_is_refused() -> None:
    assert "node.name: must not be empty" in _error({"node": {**NODE, "name": "  "}})


def test_all_problems_are_reported_at_once() -> None:
    msg = _error({"node": {**NODE, "tier": "x"}, "http": {"port": -1}, "log": {"level": "loud"}})
    assert "node.tier" in msg and "http.port" in msg and "log.level" in msg


def test_relative_data_dir_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    f = tmp_path / "site" / "vmesh.toml"
    f.parent.mkdir()
    f.write_text(
        '[node]\ncode = "33000000002006000001"\nname = "浙江省节点"\ntier = "province"\n'
        'data_dir = "state"\n',
        encoding="utf-8",
    )
    cfg = load_config(f)
    assert cfg.node.data_dir == (tmp_path / "site" / "state").resolve()
    assert cfg.database_url().endswith(str(tmp_path / "site" / "state" / "vmesh.db"))


def test_unreadable_and_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*missing\.toml"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.toml is not valid TOML.*line 1"):
        load_config(bad)
