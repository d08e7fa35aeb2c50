"""The ``vmesh`` command line: version, the command groups issue 2 promises, usage errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from vmesh import __version__
from vmesh.cli import cli

pytestmark = pytest.mark.unit


def test_version() -> None:
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0
    assert r.output.strip() == f"vmesh, version {__version__}"


def test_help_lists_every_command_group() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    listed = {
        line.split()[0] for line in r.output.split("Commands:")[1].splitlines() if line.strip()
    }
    assert {"node", "demo", "directory", "user", "audit"} <= listed


def test_node_run_requires_config() -> None:
    r = CliRunner().invoke(cli, ["node", "run"])
    assert r.exit_code == 2
    assert "Missing option '--config'" in r.output


def test_demo_options_are_documented() -> None:
    r = CliRunner().invoke(cli, ["demo", "--help"])
    assert r.exit_code == 0
    for option in ("--size", "--villages", "--seed", "--data", "--host", "--port"):
        assert option in r.output
