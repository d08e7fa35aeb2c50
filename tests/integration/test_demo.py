"""``vmesh demo`` end to end: generate, import, log in with the printed logins, browse, watch a
camera on the live WebSocket (only that camera's source runs), stop.

The demo runs as the real command in its own process, on SQLite in a temporary folder.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import websockets
from test_config_cli import vmesh_command
from test_node_process import free_port

from vmesh.demo.generate import NODE_CODE, PROVINCE_CODE

pytestmark = pytest.mark.integration

LOGIN_RE = re.compile(r"login:\s+(\S+) / (\S+)\s+\((\w+), (\S+)\)")
VILLAGES = 40


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*vmesh_command(), "demo", *args], capture_output=True, text=True, timeout=120, check=False
    )


def logins(output: str) -> dict[str, tuple[str, str, str]]:
    return {m[1]: (m[2], m[3], m[4]) for m in LOGIN_RE.finditer(output)}


def test_prepare_then_reuse(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    first = demo("--villages", str(VILLAGES), "--seed", "5", "--data", str(data), "--prepare-only")
    assert first.returncode == 0, first.stderr
    assert f"{VILLAGES} villages (seed 5)" in first.stdout and "(reused)" not in first.stdout
    users = logins(first.stdout)
    assert users["admin"][1:] == ("admin", "浙江省")
    assert users["xihu"][1:] == ("operator", "西湖区")
    assert {"vmesh.toml", "vmesh.db", "directory.csv", "demo.json"} <= {
        p.name for p in data.iterdir()
    }
    assert (data / "demo.json").stat().st_mode & 0o077 == 0  # passwords: owner only

    again = demo("--villages", "999", "--data", str(data), "--prepare-only")
    assert again.returncode == 0, again.stderr
    assert "(reused)" in again.stdout
    assert logins(again.stdout) == users
    assert "holds a demo of 40 villages" in again.stderr

    # The import went through the directory importer and its audit: the chain verifies.
    verify = subprocess.run(
        [*vmesh_command(), "audit", "verify", "--config", str(data / "vmesh.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert "intact" in verify.stdout


def test_demo_serves_console_and_the_printed_logins_work(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "demo.out"
    with open(out, "wb") as stdout, open(tmp_path / "demo.err", "wb") as stderr:
        proc = subprocess.Popen(
            [*vmesh_command(), "demo", "--villages", str(VILLAGES), "--data",
             str(tmp_path / "d"), "--port", str(port)],
            stdout=stdout, stderr=stderr,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "demo.err").read_text()
            assert time.monotonic() < deadline, (tmp_path / "demo.err").read_text()
            try:
                if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        text = out.read_text()
        assert f"console:  {base}/" in text
        users = logins(text)

        assert httpx.get(base + "/", timeout=5).status_code == 200
        with httpx.Client(base_url=base, timeout=10) as admin:
            r = admin.post(
                "/api/auth/login", json={"username": "admin", "password": users["admin"][0]}
            )
            assert r.status_code == 200, r.text
            roots = admin.get("/api/directory/roots").json()
            assert [(n["code"], n["name"]) for n in roots] == [(PROVINCE_CODE, "浙江省")]
            kids = admin.get(f"/api/directory/entries/{PROVINCE_CODE}/children?limit=100").json()
            names = {n["name"] for n in kids["items"]}
            assert {"杭州市", "温州市", "丽水市", "浙江省视频一张网节点"} <= names
            assert NODE_CODE in {n["code"] for n in kids["items"]}
            rooms = admin.get("/api/directory/search?q=村委会视频室&limit=1").json()
            assert rooms["total"] == VILLAGES
            lucheng = admin.get("/api/directory/search?q=鹿城区&kind=region").json()["items"][0]

        with httpx.Client(base_url=base, timeout=10) as xihu:
            r = xihu.post(
                "/api/auth/login", json={"username": "xihu", "password": users["xihu"][0]}
            )
            assert r.status_code == 200, r.text
            assert [n["name"] for n in xihu.get("/api/directory/roots").json()] == ["西湖区"]
            assert xihu.get(f"/api/directory/entries/{lucheng['code']}").status_code == 404
            cams = xihu.get("/api/directory/search?kind=camera&sort=code&limit=100").json()
            cookie = "vmesh_session=" + xihu.cookies["vmesh_session"]
        # Live video is on: a camera of 西湖区 is watched; only its source runs, and it plays.
        assert cams["total"] > 1
        cam = cams["items"][0]["code"]
        asyncio.run(watch_one(base, cookie, cam))
        metrics = httpx.get(base + "/metrics", timeout=10).text
        assert "vmesh_media_sources 1.0" in metrics, metrics
        with httpx.Client(base_url=base, timeout=10) as xihu:
            xihu.post("/api/auth/login", json={"username": "xihu", "password": users["xihu"][0]})
            assert xihu.get(f"/api/directory/entries/{cam}").json()["status"] == "online"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def watch_one(base: str, cookie: str, code: str) -> None:
    """Watch ``code`` on /api/live/ws until its source sends (the tile's state says so)."""
    url = base.replace("http://", "ws://") + "/api/live/ws"
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": base}) as ws:
        await ws.send(json.dumps({"type": "watch", "tile": "0", "code": code}))
        async with asyncio.timeout(90):  # a readiness bound (the first clip is encoded), not speed
            while True:
                m = json.loads(await ws.recv())
                assert m.get("state") != "error", m
                if m["type"] == "offer":
                    break
            # No browser answers the offer, so the tile stays "connecting"; the source's own
            # state is in the directory once it sends.
            while True:
                e = (await asyncio.to_thread(httpx.get, base + "/metrics", timeout=10)).text
                if 'vmesh_switch_input_packets_total{input="' + code + '/video"}' in e:
                    break
                await asyncio.sleep(0.3)


def test_port_in_use_is_named(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = demo("--villages", "3", "--data", str(tmp_path / "d"), "--port", str(port))
    assert r.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in r.stderr
    assert not (tmp_path / "d").exists()
