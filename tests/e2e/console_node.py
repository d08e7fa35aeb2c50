"""A vmesh node for browser tests, run as a real process: config, CLI set-up, start and stop.

``Node.cli`` runs ``vmesh`` commands against the node's configuration (directory import, users);
``Node.start`` launches ``vmesh node run`` on a free loopback port and waits for ``/healthz``;
``Node.stop`` ends it (SIGTERM, then SIGKILL of its process group). ``media_browser_args`` are
the Chromium flags of a page that plays (and, with fake devices, captures) live media,
``launch_chromium`` starts Debian's Chromium with them and ``log_in`` signs a page in through the
console's login form (``async_log_in`` for Playwright's async API).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
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
# Flags of a page that plays live media: autoplay, and host candidates as IPs (not mDNS names).
MEDIA_ARGS = [
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
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


def media_browser_args(*, fake_devices: int = 0) -> list[str]:
    """Chromium flags for live media; with ``fake_devices`` cameras (Chromium's test pattern) and
    a fake microphone, granted without a prompt."""
    args = [*CHROMIUM_ARGS, *MEDIA_ARGS]
    if fake_devices:
        device = "--use-fake-device-for-media-stream"
        if fake_devices > 1:
            device += f"=device-count={fake_devices}"
        args += [device, "--use-fake-ui-for-media-stream"]
    return args


@contextlib.contextmanager
def launch_chromium(args: list[str]) -> Iterator[object]:
    """Debian's Chromium (Playwright, sync API) with ``args``; closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield b
        finally:
            b.close()


def watch_network(page: object) -> None:
    """Keep what ``network_report`` prints about ``page``: its console messages, the requests
    that failed and the ones sent but not answered yet, each with the time since the page opened."""
    start = time.monotonic()
    log: list[str] = []
    pending: dict[int, str] = {}

    def at() -> str:
        return f"{time.monotonic() - start:7.2f}s"

    def sent(req) -> None:  # type: ignore[no-untyped-def]
        pending[id(req)] = f"{at()} {req.method} {req.url}"

    def answered(req) -> None:  # type: ignore[no-untyped-def]
        pending.pop(id(req), None)

    def failed(req) -> None:  # type: ignore[no-untyped-def]
        pending.pop(id(req), None)
        log.append(f"{at()} request failed: {req.method} {req.url}: {req.failure}")

    page.on("console", lambda m: log.append(f"{at()} console {m.type}: {m.text}"))  # type: ignore[attr-defined]
    page.on("request", sent)  # type: ignore[attr-defined]
    page.on("requestfinished", answered)  # type: ignore[attr-defined]
    page.on("requestfailed", failed)  # type: ignore[attr-defined]
    page.network_log = log  # type: ignore[attr-defined]
    page.network_pending = pending  # type: ignore[attr-defined]


def network_report(page: object) -> str:
    """What ``watch_network`` kept about ``page``, and what its document shows."""
    lines = list(getattr(page, "network_log", []))
    lines += [f"{v} (no answer yet)" for v in getattr(page, "network_pending", {}).values()]
    lines.append(f"url {page.url}")  # type: ignore[attr-defined]
    body = page.evaluate("document.body ? document.body.innerHTML.slice(0, 400) : ''")  # type: ignore[attr-defined]
    lines.append(f"body {body!r}")
    return "\n".join(lines)


def log_in(
    page: object,
    base_url: str,
    username: str,
    password: str,
    hash_: str = "",
    *,
    timeout_ms: float | None = None,
) -> None:
    """Sign ``page`` in through the console's login form, then open ``hash_`` (e.g. ``#/wall``).

    ``timeout_ms`` bounds the page loads and the wait for the signed-in user (Playwright's
    defaults when None)."""
    from playwright.sync_api import expect

    wait = {} if timeout_ms is None else {"timeout": timeout_ms}
    page.goto(base_url + "/", **wait)  # type: ignore[attr-defined]
    page.get_by_test_id("login-username").fill(username)  # type: ignore[attr-defined]
    page.get_by_test_id("login-password").fill(password)  # type: ignore[attr-defined]
    page.get_by_test_id("login-submit").click()  # type: ignore[attr-defined]
    expect(page.get_by_test_id("current-user")).to_contain_text(username, **wait)  # type: ignore[attr-defined]
    if hash_:
        page.goto(base_url + "/" + hash_, **wait)  # type: ignore[attr-defined]


async def async_log_in(page: object, base_url: str, username: str, password: str) -> None:
    """``log_in`` for a page of Playwright's async API (stays on the console's home view)."""
    await page.goto(base_url + "/")  # type: ignore[attr-defined]
    await page.get_by_test_id("login-username").fill(username)  # type: ignore[attr-defined]
    await page.get_by_test_id("login-password").fill(password)  # type: ignore[attr-defined]
    await page.get_by_test_id("login-submit").click()  # type: ignore[attr-defined]
    await page.get_by_test_id("current-user").wait_for()  # type: ignore[attr-defined]


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
