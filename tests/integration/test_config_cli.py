"""A wrong configuration stops ``vmesh node run`` before anything starts, naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def vmesh_command() -> list[str]:
    """The installed ``vmesh`` entry point beside this interpreter (what a user runs)."""
    exe = Path(sys.executable).parent / "vmesh"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from vmesh.cli import main; main()"]


def run_node(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*vmesh_command(), "node", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


GOOD_NODE = '[node]\ncode = "33000000002006000001"\nname = "浙江省节点"\ntier = "province"\n'


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            GOOD_NODE + 'data_dir = "d"\ncolour = "red"\n',
            "node.colour: unknown key; allowed in [node]",
        ),
        (GOOD_NODE + 'data_dir = "d"\n[htp]\nport = 80\n', "htp: unknown section"),
        (GOOD_NODE + 'data_dir = "d"\n[http]\nport = 70000\n', "http.port: must be less than"),
        (GOOD_NODE.replace("province", "nation") + 'data_dir = "d"\n', "node.tier: must be"),
        (GOOD_NODE + 'data_dir = "d"\n[database]\nurl = "mysql://x"\n', "database.url: must start"),
        (GOOD_NODE + 'data_dir = "d"\n[log]\nlevel = "chatty"\n', "log.level: must be 'DEBUG'"),
    ],
)
def test_bad_config_stops_node_with_named_key(tmp_path: Path, toml: str, expected: str) -> None:
    cfg = tmp_path / "vmesh.toml"
    cfg.write_text(toml, encoding="utf-8")
    r = run_node(cfg)
    assert r.returncode == 2
    assert expected in r.stderr
    assert "Traceback" not in r.stderr
    # Nothing was started or created: no data folder, no database.
    assert not (tmp_path / "d").exists()


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    r = run_node(tmp_path / "nowhere.toml")
    assert r.returncode == 2
    assert "cannot read" in r.stderr and "nowhere.toml" in r.stderr


def test_syntax_error_is_reported_with_line(tmp_path: Path) -> None:
    cfg = tmp_path / "vmesh.toml"
    cfg.write_text(GOOD_NODE + "[http\n", encoding="utf-8")
    r = run_node(cfg)
    assert r.returncode == 2
    assert "is not valid TOML" in r.stderr and "line 5" in r.stderr
