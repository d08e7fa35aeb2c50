"""``vmesh node run`` as a real process: serves /healthz and /metrics, stops cleanly on SIGTERM.

Runs once per database (``db_url``): the node's own SQLite file, and PostgreSQL by URL.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_config_cli import vmesh_command

pytestmark = pytest.mark.integration

NODE_CODE = "33000000002006000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, port: int, db_url: str) -> Path:
    cfg = folder / "vmesh.toml"
    db = f'[database]\nurl = "{db_url}"\n' if db_url else ""
    cfg.write_text(
        f'[node]\ncode = "{NODE_CODE}"\nname = "浙江省节点"\ntier = "province"\n'
        f'data_dir = "data"\n[http]\nhost = "127.0.0.1"\nport = {port}\n{db}',
        encoding="utf-8",
    )
    return cfg


class NodeProcess:
    def __init__(self, config: Path, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = config.parent / "node.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*vmesh_command(), "node", "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout: float = 60.0) -> httpx.Response:
        """Poll until the node answers; fail with its log if it exits or never answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"node exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                return httpx.get(self.base + "/healthz", timeout=5)
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail(f"node did not answer /healthz:\n{self.log.read_text()}")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def node_config(tmp_path: Path, db_url: str) -> tuple[Path, int]:
    port = free_port()
    return write_config(tmp_path, port, db_url), port


@pytest.fixture
def node(node_config: tuple[Path, int]) -> Iterator[NodeProcess]:
    proc = NodeProcess(*node_config)
    try:
        yield proc
    finally:
        proc.kill()


def test_serves_health_and_metrics_then_stops_on_sigterm(
    node: NodeProcess, node_config: tuple[Path, int], db_url: str
) -> None:
    health = node.wait_healthy()
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "version": health.json()["version"],
        "node": NODE_CODE,
        "database": "ok",
    }

    metrics = httpx.get(node.base + "/metrics", timeout=5)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'vmesh_http_requests_total{route="/healthz",status="200"} 1.0' in metrics.text
    assert "# TYPE vmesh_http_request_seconds histogram" in metrics.text

    # The console is served at the root.
    assert httpx.get(node.base + "/", timeout=5).status_code == 200

    assert node.terminate() == 0
    log = node.log.read_text()
    assert "signal=SIGTERM" in log and f"node={NODE_CODE} stopped" in log
    assert "Traceback" not in log
    with pytest.raises(httpx.TransportError):
        httpx.get(node.base + "/healthz", timeout=2)
    if not db_url:
        assert (node_config[0].parent / "data" / "vmesh.db").is_file()


def test_restart_on_same_data_serves_again(
    node: NodeProcess, node_config: tuple[Path, int]
) -> None:
    assert node.wait_healthy().status_code == 200
    assert node.terminate() == 0
    again = NodeProcess(*node_config)
    try:
        assert again.wait_healthy().json()["database"] == "ok"
        assert again.terminate() == 0
    finally:
        again.kill()


def test_port_in_use_stops_node_with_message(node_config: tuple[Path, int]) -> None:
    config, port = node_config
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        proc = NodeProcess(config, port)
        try:
            rc = proc.proc.wait(timeout=60)
        finally:
            proc.kill()
    assert rc != 0
    assert "address already in use" in proc.log.read_text()
