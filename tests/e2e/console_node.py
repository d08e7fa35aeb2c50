"""A vmesh node for browser tests, run as a real process: config, CLI set-up, start and stop.

``Node.cli`` runs ``vmesh`` commands against the node's configuration (directory import, users);
``Node.start`` launches ``vmesh node run`` on a free loopback port and waits for ``/healthz``;
``Node.stop`` ends it (SIGTERM, then SIGKILL of its process group).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HERE = Path(__file__).parent
NODE_CODE = "33000000002006000001"
PROVINCE = "33000000002166000001"
XIHU = "33010600002166000001"
ADMIN = ("admin", "Zj-admin-2024!")
XIHU_OPERATOR = ("xihu_op", "Xh-operator-2024!")
LOCKOUT_FAILURES = 3
# How long to wait for the node to answer /healthz before giving up; a readiness bound, not a
# performance assertion.
START_DEADLINE_S = 60.0


def vmesh_command() -> list[str]:
    script = Path(sys.executable).with_name("vmesh")
    if script.exists():
        return [str(script)]
    found = shutil.which("vmesh")
    if found:
        return [found]
    return [sys.executable, "-c", "from vmesh.cli import main; main()"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    base_url: str
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    users: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``vmesh <args> --config <this node's config>``; fail with its output if it fails."""
        cmd = [*vmesh_command(), *args, "--config", str(self.config)]
        res = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=300, check=False
        )
        if res.returncode != 0:
            pytest.fail(
                f"{' '.join(cmd)} exited {res.returncode}\n"
                f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
            )
        return res

    def add_user(
        self, username: str, password: str, roles: tuple[str, ...], scope: str, display_name: str
    ) -> None:
        role_args = [a for r in roles for a in ("--role", r)]
        self.cli(
            "user",
            "add",
            username,
            *role_args,
            "--scope",
            scope,
            "--display-name",
            display_name,
            "--password-stdin",
            stdin=password + "\n",
        )
        self.users[username] = password

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*vmesh_command(), "node", "run", "--config", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"node exited with {self.proc.returncode} before serving:\n{self.log_text()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"node did not answer /healthz within {START_DEADLINE_S:g}s:\n{self.log_text()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-5000:] if self.log.exists() else "(no log)"
