"""A node with live video for the media integration tests and the live browser tests.

``media_node(base, channels=...)`` writes a configuration with ``[media] enabled`` on free
loopback ports and port ranges below Linux's ephemeral range, imports a small directory whose
cameras are synthetic (each with its own colour patch: ``CAMERAS``), adds the users, and returns
a started ``Node`` (tests/e2e/console_node.py). ``login_cookie`` logs a user in over HTTP and
returns the ``Cookie`` header value for the live WebSocket. ``extra_cameras`` adds cameras of the
test's own (e.g. RTSP cameras pointing at ``RtspPeer``, GStreamer's RTSP server run from a
synchronous browser test).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import select
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from e2e.console_node import NODE_CODE, Node, free_port
from peers.rtsp import SERVER, SYSTEM_PYTHON

PROVINCE = "33000000002166000001"
XIHU = "33010600002166000001"
VILLAGE = "33010601002166000002"
WENCHENG_VILLAGE = "33032801002166000002"
ADMIN = ("admin", "Zj-admin-2024!")
XIHU_OPERATOR = ("xihu_op", "Xh-operator-2024!")

# Picture sizes are small: Chromium decodes up to 16 of them at once on 2 cores.
COLORS = ("#e02020", "#20c020", "#2040e0", "#e0e020", "#e020e0", "#20e0e0", "#f08020", "#8020f0")


def camera_code(n: int) -> str:
    return f"3301060100132600{n:04d}"


CAMERAS = {
    camera_code(n): {
        "name": f"龙坞测试摄像机{n:02d}",
        "attrs": {
            "source": "synthetic",
            "width": 320,
            "height": 180,
            "fps": 25,
            "gop": 25,
            "color": COLORS[(n - 1) % len(COLORS)],
        },
    }
    for n in range(1, 17)
}
# 640x360: the single-camera test checks the configured resolution is what the browser decodes.
BIG_CAMERA = camera_code(20)
CAMERAS[BIG_CAMERA] = {
    "name": "龙坞高清摄像机",
    "attrs": {"source": "synthetic", "width": 640, "height": 360, "color": "#20c020"},
}
NO_SOURCE_CAMERA = camera_code(21)
CAMERAS[NO_SOURCE_CAMERA] = {"name": "龙坞无源摄像机", "attrs": {}}
UNREACHABLE_RTSP_CAMERA = camera_code(22)
CAMERAS[UNREACHABLE_RTSP_CAMERA] = {
    "name": "龙坞离线网络摄像机",
    # Nothing listens on loopback TCP port 9: the pull is refused at once.
    "attrs": {"rtsp_url": "rtsp://admin:Secret-123@127.0.0.1:9/main"},
}
OUT_OF_SCOPE_CAMERA = "33032801001326000901"  # 文成县: outside 西湖区's scope


def write_directory(path: Path, extra: dict[str, dict[str, Any]] | None = None) -> None:
    rows = [
        (PROVINCE, "", "region", "province", "浙江省", {}),
        ("33010000002166000001", PROVINCE, "region", "city", "杭州市", {}),
        (XIHU, "33010000002166000001", "region", "county", "西湖区", {}),
        ("33010601002166000001", XIHU, "region", "township", "转塘街道", {}),
        (VILLAGE, "33010601002166000001", "region", "village", "龙坞村", {}),
        ("33030000002166000001", PROVINCE, "region", "city", "温州市", {}),
        ("33032800002166000001", "33030000002166000001", "region", "county", "文成县", {}),
        ("33032801002166000001", "33032800002166000001", "region", "township", "大峃镇", {}),
        (WENCHENG_VILLAGE, "33032801002166000001", "region", "village", "西坑村", {}),
        (
            OUT_OF_SCOPE_CAMERA,
            WENCHENG_VILLAGE,
            "camera",
            "",
            "西坑测试摄像机",
            {"source": "synthetic", "width": 320, "height": 180},
        ),
    ]
    cameras = {**CAMERAS, **(extra or {})}
    rows += [(code, VILLAGE, "camera", "", c["name"], c["attrs"]) for code, c in cameras.items()]
    status = {code: c.get("status", "online") for code, c in cameras.items()}
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["code", "parent_code", "kind", "tier", "name", "status", "attrs"])
        for code, parent, kind, tier, name, attrs in rows:
            w.writerow(
                [code, parent, kind, tier, name, status.get(code, "online"), json.dumps(attrs)]
            )


BLOCK = 3100
_BLOCK_BASES = range(10_000, 32_000 - BLOCK, 4_000)
_handed_out: set[int] = set()


def _bound_udp_ports() -> set[int]:
    ports: set[int] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            for line in f:
                local = line.split()[1]
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def free_udp_block(size: int) -> int:
    """The base of a block of ``size`` UDP ports of which none is bound now, not handed out before
    in this test run (a stopped node's Janus may still be releasing its ports)."""
    bound = _bound_udp_ports()
    for base in _BLOCK_BASES:
        if base in _handed_out:
            continue
        if not any(base <= p < base + size for p in bound):
            _handed_out.add(base)
            return base
    _handed_out.clear()  # every block used once: reuse the first that is free now
    for base in _BLOCK_BASES:
        if not any(base <= p < base + size for p in bound):
            _handed_out.add(base)
            return base
    raise RuntimeError(f"no free block of {size} UDP ports between 10000 and 32000")


def media_node(
    base: Path,
    *,
    channels: int = 4,
    linger: float = 2.0,
    extra_cameras: dict[str, dict[str, Any]] | None = None,
    port_base: int | None = None,
    gop_cache: bool = True,
    extra_toml: str = "",
) -> Node:
    """A started node with live video on; the caller stops it.

    Its UDP port ranges lie in ``[port_base, port_base + 3100)`` (below Linux's ephemeral ports).
    Without ``port_base`` a block that no socket on this machine uses is picked, so a module's
    node never collides with a node still shutting down, or another run's."""
    if port_base is None:
        port_base = free_udp_block(BLOCK)
    port = free_port()
    http, admin = free_port(), free_port()
    while admin == http:
        admin = free_port()
    config = base / "vmesh.toml"
    config.write_text(
        "[node]\n"
        f'code = "{NODE_CODE}"\n'
        'name = "浙江省节点"\n'
        'tier = "province"\n'
        'data_dir = "data"\n'
        "\n[http]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        "\n[media]\n"
        "enabled = true\n"
        f"janus_http_port = {http}\n"
        f"janus_admin_port = {admin}\n"
        f"ice_port_range = [{port_base}, {port_base + 999}]\n"
        f"streaming_port_range = [{port_base + 3000}, {port_base + 3099}]\n"
        f"channel_port_range = [{port_base + 1000}, {port_base + 1399}]\n"
        f"input_port_range = [{port_base + 2000}, {port_base + 2999}]\n"
        f"channels = {channels}\n"
        f"source_linger_seconds = {linger}\n"
        f"gop_cache = {'true' if gop_cache else 'false'}\n" + extra_toml,
        encoding="utf-8",
    )
    directory = base / "directory.csv"
    write_directory(directory, extra_cameras)
    n = Node(base_url=f"http://127.0.0.1:{port}", config=config, log=base / "node.log")
    n.cli("directory", "import", str(directory))
    n.add_user(*ADMIN, roles=("admin",), scope=PROVINCE, display_name="省平台管理员")
    n.add_user(*XIHU_OPERATOR, roles=("operator",), scope=XIHU, display_name="西湖区值班员")
    n.start()
    return n


def hang_up_viewers(node: Node, plugin: str = "janus.plugin.streaming") -> int:
    """Hang up every WebRTC connection of ``plugin``'s handles in the node's Janus through its
    admin API, as an ICE failure would (e.g. a network interface going away); returns how many."""
    import asyncio
    import concurrent.futures
    import tomllib

    from vmesh.edge.janus import JanusAdmin

    conf = tomllib.loads(node.config.read_text(encoding="utf-8"))
    data = node.config.parent / conf["node"]["data_dir"]
    secret = json.loads((data / "janus" / "secrets.json").read_text())["admin_secret"]
    url = f"http://127.0.0.1:{conf['media']['janus_admin_port']}/admin"

    async def run() -> int:
        n = 0
        async with JanusAdmin(url, secret) as admin:
            for session in await admin.list_sessions():
                for handle in await admin.list_handles(session):
                    info = await admin.handle_info(session, handle)
                    if info.get("plugin") == plugin and (info.get("flags") or {}).get("ready"):
                        await admin.hangup_webrtc(session, handle)
                        n += 1
        return n

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=60)


def login_cookie(node: Node, username: str, password: str) -> str:
    req = urllib.request.Request(
        f"{node.base_url}/api/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    # argon2id verification takes seconds on a loaded 2-core machine: a readiness bound only
    with urllib.request.urlopen(req, timeout=60) as r:
        cookie = r.headers.get("set-cookie", "")
    return cookie.split(";", 1)[0]


def api(node: Node, cookie: str, method: str, path: str, body: Any = None) -> Any:
    """``method /api<path>`` as the session ``cookie`` (``login_cookie``), ``body`` as JSON; the
    JSON reply (None when empty). An error status raises ``urllib.error.HTTPError``."""
    req = urllib.request.Request(
        f"{node.base_url}/api{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Cookie": cookie},
        method=method,
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read() or b"null")


def ws_url(node: Node) -> str:
    return node.base_url.replace("http://", "ws://") + "/api/live/ws"


class RtspPeer:
    """GStreamer's RTSP server (``tests/peers/rtsp_server.py``) for synchronous (browser) tests.

    ``start()`` waits for it to listen; ``pause()``/``resume()`` freeze and thaw it (SIGSTOP /
    SIGCONT: connections stay open, no media flows); ``stop()`` ends it. ``url`` has no
    credentials."""

    def __init__(self, log_path: Path, *, path: str = "/cam", **options: str) -> None:
        self.port = free_port()
        self.path = path
        self.args = ["--port", str(self.port), "--path", path]
        for k, v in options.items():
            self.args += [f"--{k}", v]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self) -> RtspPeer:
        with self.log_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(SERVER), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {line!r} (log {self.log_path})")
        return self

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
