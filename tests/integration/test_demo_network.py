"""``vmesh demo --network`` end to end (what ``make demo`` runs): seven real nodes — the province,
杭州市, 温州市 and four counties — each its own ``vmesh node run`` with its own nats-server and
Janus, federated on loopback. The province's network map lists every node with its link up, the
province's catalogue holds the counties' cameras, and the province watches a county camera that
comes through its city (the fabric), and 西湖区's console (Chromium) shows 浙江省 › 杭州市 above its
tree and 上城区 beside it (passed down from the city). SIGTERM stops every process the demo started.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import websockets
from test_config_cli import vmesh_command

from netns.fednodes import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(shutil.which(b) for b in ("nats-server", "janus", "ffmpeg")),
        reason="needs nats-server, janus and ffmpeg",
    ),
]

LOGIN_RE = re.compile(r"login:\s+admin / (\S+)")
NODE_RE = re.compile(r"node:\s+(http://\S+/)\s+(\d{20})")
XIHU_NODE = "33010600002006000001"  # 西湖区, under 杭州市


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return {int(x) for x in out.stdout.split()}


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


async def test_network_demo_federates_seven_nodes_and_the_province_watches_a_county_camera(
    tmp_path: Path,
) -> None:
    base = _free_base()
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    proc = _start(tmp_path / "net", base, out, err)
    node_pids: set[int] = set()
    try:

        def up() -> bool:
            assert proc.poll() is None, err.read_text()
            return "all nodes up" in err.read_text()

        await wait_until(up, "every demo node serving /healthz", within=180)
        text = out.read_text()
        nodes = dict((code, url) for url, code in NODE_RE.findall(text))
        assert len(nodes) == 7, text
        password = LOGIN_RE.search(text)[1]  # type: ignore[index]
        province = nodes["33000000002006000001"]
        node_pids = _children(proc.pid)
        assert len(node_pids) == 7, node_pids

        async with httpx.AsyncClient(base_url=province, timeout=10) as admin:
            r = await admin.post(
                "/api/auth/login", json={"username": "admin", "password": password}
            )
            assert r.status_code == 200, r.text

            async def every_link_up() -> bool:
                items = (await admin.get("/api/network")).json()["nodes"]["items"]
                links = {n["code"]: n["link"]["state"] for n in items if not n["self"]}
                return set(links) == set(nodes) - {"33000000002006000001"} and all(
                    s == "up" for s in links.values()
                )

            await wait_until(every_link_up, "the province's map: six nodes, every link up")

            async def county_cameras() -> list[dict[str, object]]:
                r = await admin.get(
                    "/api/network/catalogue",
                    params={"code_prefix": "330106", "kind": "camera", "limit": 5},
                )
                return [c for c in r.json()["items"] if c["origin_node"] == XIHU_NODE]

            cams = await wait_until(county_cameras, "西湖区's cameras in the province's catalogue")
            cam = str(cams[0]["code"])
            cookie = "vmesh_session=" + admin.cookies["vmesh_session"]

        # The province watches it: the stream comes county → city → province.
        url = province.replace("http://", "ws://") + "api/live/ws"
        headers = {"Cookie": cookie, "Origin": province.rstrip("/")}
        async with websockets.connect(url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "watch", "tile": "0", "code": cam}))
            async with asyncio.timeout(90):  # readiness bound: the clip is encoded first
                while True:
                    m = json.loads(await ws.recv())
                    assert m.get("state") != "error", m
                    if m["type"] == "offer":
                        break
            key = f'vmesh_switch_input_packets_total{{input="fabric/{cam}"}}'

            async def packets() -> float:
                text = (await asyncio.to_thread(httpx.get, province + "metrics", timeout=10)).text
                return next(
                    (float(line.rpartition(" ")[2]) for line in text.splitlines()
                     if line.startswith(key)),
                    0.0,
                )  # fmt: skip

            first = await wait_until(packets, f"{cam}'s packets at the province")

            async def flowing() -> bool:
                return await packets() > first + 50

            await wait_until(flowing, "the county camera keeps arriving")
            city = nodes["33010000002006000001"]
            city_metrics = (await asyncio.to_thread(httpx.get, city + "metrics", timeout=10)).text
            assert f'input="fabric/{cam}"' in city_metrics  # it came through 杭州市

        # 西湖区's console shows the regions above it and beside it, passed down from 杭州市.
        await _tree_above(nodes[XIHU_NODE], password)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, err.read_text()[-3000:]
        for pid in node_pids:  # every node process ended (each stops its Janus and nats-server)
            assert not _alive(pid), pid
    finally:
        _kill(proc, node_pids)


async def _tree_above(base: str, password: str) -> None:
    from playwright.async_api import async_playwright, expect

    from e2e.console_node import CHROMIUM, CHROMIUM_ARGS, async_log_in

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await async_log_in(page, base.rstrip("/"), "admin", password)
            await page.goto(base + "#/dir")
            path = page.get_by_test_id("around-path")
            await expect(path).to_contain_text("浙江省", timeout=60_000)
            await expect(path).to_contain_text("杭州市 › 西湖区")
            await page.get_by_test_id("around-siblings").locator("summary").click()
            await expect(page.get_by_test_id("around-siblings")).to_contain_text("上城区")
        finally:
            await browser.close()


def _free_base() -> int:
    """A ``--port`` whose TCP ports (base + 100·k + i, k ≤ 5, i < 7) are all free, below Linux's
    ephemeral range so that no other test's outgoing connection takes one meanwhile."""
    import socket

    for base in range(12000, 19000, 600):
        ports = [base + 100 * k + i for k in range(6) for i in range(7)]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free block of TCP ports for the demo between 12000 and 19000")


def _start(data: Path, base: int, out: Path, err: Path) -> subprocess.Popen[bytes]:
    with open(out, "wb") as o, open(err, "wb") as e:
        return subprocess.Popen(
            [*vmesh_command(), "demo", "--network", "--data", str(data), "--port", str(base)],
            stdout=o, stderr=e,
        )  # fmt: skip


def _kill(proc: subprocess.Popen[bytes], node_pids: set[int]) -> None:
    """After a failure: the demo and every node's session (its Janus and nats-server) killed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in node_pids:
        subprocess.run(["pkill", "-KILL", "-s", str(pid)], check=False)


def test_too_few_villages_for_three_counties_is_refused(tmp_path: Path) -> None:
    r = subprocess.run(
        [*vmesh_command(), "demo", "--network", "--villages", "50", "--data",
         str(tmp_path / "net"), "--prepare-only"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert "needs at least 3" in r.stderr and "--villages 400" in r.stderr
    # Nothing half-made: no state file, so the next run generates again.
    assert not (tmp_path / "net" / "network.json").exists()
