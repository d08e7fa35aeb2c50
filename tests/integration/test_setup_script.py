"""scripts/setup.sh without root and without sudo: it stops and names the missing packages."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"
MISSING = "vmesh-no-such-package"


def _as_unprivileged() -> list[str]:
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser is missing: cannot drop to 'nobody'")
        return [runuser, "-u", "nobody", "--"]
    sudo = shutil.which("sudo")
    if (
        sudo
        and subprocess.run([sudo, "-n", "true"], capture_output=True, check=False).returncode == 0
    ):
        pytest.skip("this user has password-less sudo, so setup.sh would try to install")
    return []


def test_without_root_or_sudo_it_names_the_missing_packages() -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system")
    r = subprocess.run(
        [*_as_unprivileged(), str(SETUP)],
        env={**os.environ, "VMESH_PACKAGES": f"iproute2 {MISSING}", "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1
    assert f"these Debian packages are missing: {MISSING}\n" in r.stderr
    assert f"apt-get install -y {MISSING}" in r.stderr
    assert "iproute2" not in r.stderr.split("missing:")[1].splitlines()[0]  # installed: not named
    assert "installing" not in r.stderr  # stopped before touching anything


def test_names_the_packages_it_installs() -> None:
    """The default list is what the README and docs/operations.md promise."""
    text = SETUP.read_text(encoding="utf-8")
    for pkg in ("chromium", "postgresql", "fonts-noto-cjk", "ffmpeg", "janus", "nats-server",
                "iproute2"):  # fmt: skip
        assert pkg in text.split("DEFAULT_PACKAGES=")[1].splitlines()[0]
