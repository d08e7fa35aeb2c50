"""``vmesh doctor`` run for real: the tools installed here, and a PATH without them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def run_doctor(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "vmesh.node.doctor_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_reports_installed_versions() -> None:
    r = run_doctor("--json")
    assert r.returncode == 0, r.stdout + r.stderr
    found = {f["name"]: f for f in json.loads(r.stdout)["findings"]}
    assert set(found) == {"janus", "nats-server", "ffmpeg", "chromium", "postgresql"}
    for name in ("janus", "nats-server", "ffmpeg"):
        assert found[name]["verdict"] == "ok", found[name]
        assert found[name]["required"] is True
    janus = subprocess.run(["janus", "--version"], capture_output=True, text=True, check=False)
    assert f"({found['janus']['version']})" in janus.stdout
    nats = subprocess.run(
        [found["nats-server"]["path"], "--version"], capture_output=True, text=True, check=False
    )
    assert f"v{found['nats-server']['version']}" in nats.stdout

    text = run_doctor()
    assert text.returncode == 0
    assert "ready: every required program is installed and new enough" in text.stdout
    version = re.escape(found["janus"]["version"])
    assert re.search(rf"^janus\s+ok\s+{version}\s+≥ 1\.1\.2\s+required\s+/", text.stdout, re.M)


def test_missing_programs_fail_with_the_package_to_install(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    r = run_doctor(path=str(empty))
    assert r.returncode == 1
    assert "→ not found; install: apt-get install janus" in r.stdout
    assert "→ not found; install: apt-get install ffmpeg" in r.stdout
    assert "not ready: janus, ffmpeg" in r.stdout
