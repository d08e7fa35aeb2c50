"""A network of real ``vmesh node run`` processes in test-bed namespaces (``Lab``), shared by the
netns federation and fabric tests.

``Topology``: the nodes (code, tier, org unit, parents) and what each one runs (federation always;
media + fabric with ``media=True``). ``start_network(tmp, lab, topo, setup=…)`` issues each node's
certificate from one CA, seeds its database (org unit, an ``admin-<node>`` user, then ``setup``
for extra directory entries), writes its TOML, spawns ``vmesh node run`` inside the node's
namespace and waits until every node serves ``/healthz``. ``Net`` is the test's handle: HTTP as
each node's admin, ``/metrics``, ``/api/live/ws`` viewers, link faults (``blackhole``) and the
kernel's interface counters of each node's veth (``veth``).

``network_fixture(topo, setup)``: a test module's ``net`` fixture (a lab of the topology's nodes,
the network started on it, torn down after each test). ``PROV_SPEC``, ``WENZHOU_SPEC``,
``WENCHENG_SPEC``, ``HANGZHOU_SPEC``: the province, cities and county the tests' topologies are
made of (``WENZHOU_CHAIN``: province ← 温州市 ← 文成县).

``NEEDS_NETWORK`` / ``NEEDS_MEDIA_NETWORK``: the skip marks of a test that runs such a network
(with media);
``wait_linked(net, hub, code, nodes)``: until a code is in a hub's catalogue and the nodes linked;
``console(net, node)``: Debian's Chromium (root namespace, over the lab's root leg) logged in to a
node's console as its admin.

Public: ``NodeSpec``, ``Topology``, ``Net``, ``Viewer``, ``start_network``, ``network_fixture``,
``toml``, ``NEEDS_NETWORK``, ``NEEDS_MEDIA_NETWORK``, ``console``, ``wait_linked`` and the node
specs above.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from factories import TEST_ACTOR, add_user
from netns.fednodes import make_ca, wait_until
from netns.lab import Lab, netns_unavailable
from vmesh.config import parse_config
from vmesh.directory.store import Directory
from vmesh.federation.ca import issue_node_cert
from vmesh.node.context import NodeContext

PORT = 8080
LEAF_PORT = 7422
PASSWORD = "s3cret-pass"  # factories.add_user's default

NEEDS_NETWORK = [
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
    pytest.mark.skipif(not shutil.which("nats-server"), reason="needs nats-server"),
]
NEEDS_MEDIA_NETWORK = [
    NEEDS_NETWORK[0],
    pytest.mark.skipif(
        not (shutil.which("nats-server") and shutil.which("janus") and shutil.which("ffmpeg")),
        reason="needs nats-server, janus and ffmpeg",
    ),
]


@dataclass(frozen=True)
class NodeSpec:
    code: str
    tier: str
    org: str
    org_name: str
    parents: tuple[str, ...] = ()  # lab node names; the second is the fallback parent


@dataclass
class Topology:
    nodes: dict[str, NodeSpec]
    media: bool = False
    linger: float = 2.0
    channels: int = 4
    # Extra TOML per section, applied to every node (e.g. {"federation": {"announce_seconds": 2}}).
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def hub(self, name: str) -> bool:
        return any(name in s.parents for s in self.nodes.values())


PROV_SPEC = NodeSpec("33000000002006000001", "province", "33000000002166000001", "浙江省")
WENZHOU_SPEC = NodeSpec("33030000002006000001", "city", "33030000002166000001", "温州市", ("prov",))
HANGZHOU_SPEC = NodeSpec(
    "33010000002006000001", "city", "33010000002166000001", "杭州市", ("prov",)
)
WENCHENG_SPEC = NodeSpec(
    "33032800002006000001", "county", "33032800002166000001", "文成县", ("city",)
)
WENZHOU_CHAIN = {"prov": PROV_SPEC, "city": WENZHOU_SPEC, "county": WENCHENG_SPEC}


def node_config(tmp: Path, lab: Lab, topo: Topology, name: str) -> dict[str, Any]:
    spec = topo.nodes[name]
    ip = lab[name].ip
    hub = topo.hub(name)
    d: dict[str, Any] = {
        "node": {
            "code": spec.code,
            "name": f"{name}节点",
            "tier": spec.tier,
            "data_dir": str(tmp / name),
        },
        "http": {"host": ip, "port": PORT},
        "federation": {
            "enabled": True,
            "leaf_port": LEAF_PORT if hub else 0,
            "advertise": f"{ip}:{LEAF_PORT}" if hub else "",
            "parents": [f"nats-leaf://{lab[p].ip}:{LEAF_PORT}" for p in spec.parents],
            "ping_interval_seconds": 2,
            "announce_seconds": 1,
            "link_check_seconds": 1,
            "catalogue_scan_seconds": 0.3,
            "addresses": [f"http://{ip}:{PORT}"],
        },
    }
    if topo.media:
        d["media"] = {
            "enabled": True,
            "public_address": ip,
            "channels": topo.channels,
            "source_linger_seconds": 1,
            "no_signal_seconds": 2,
        }
        d["fabric"] = {
            "enabled": True,
            "address": ip,
            "linger_seconds": topo.linger,
            "rpc_timeout_seconds": 3,
        }
    for sec, body in topo.overrides.items():
        d.setdefault(sec, {}).update(body)
    return d


def toml(d: dict[str, Any]) -> str:
    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return str(v)

    return "".join(
        f"[{sec}]\n" + "".join(f"{k} = {val(v)}\n" for k, v in body.items())
        for sec, body in d.items()
    )


def vmesh_command() -> list[str]:
    """The installed ``vmesh`` entry point beside this interpreter (what a user runs)."""
    exe = Path(sys.executable).parent / "vmesh"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from vmesh.cli import main; main()"]


@dataclass
class Viewer:
    """One console page's ``/api/live/ws``: what it was told, per tile."""

    ws: ClientConnection
    reader: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def read(self) -> None:
        async for raw in self.ws:
            self.messages.append(json.loads(raw))

    async def send(self, **msg: Any) -> None:
        await self.ws.send(json.dumps(msg))

    def of(self, tile: str, kind: str = "status") -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("tile") == tile and m.get("type") == kind]

    def last_state(self, tile: str) -> dict[str, Any] | None:
        states = self.of(tile)
        return states[-1] if states else None

    async def watch(self, tile: str, code: str) -> dict[str, Any]:
        """Watch ``code`` on ``tile``; Janus's offer once the channel is routed (for another
        node's camera the offer comes while the path opens, ``routing``: then the status after
        it says the path is open), or the error status."""
        start = len(self.messages)
        await self.send(type="watch", tile=tile, code=code)

        def outcome() -> dict[str, Any] | None:
            mine = [m for m in self.messages[start:] if m.get("tile") == tile]
            for i, m in enumerate(mine):
                if m.get("type") == "status" and m.get("state") == "error":
                    return m
                if m.get("type") == "offer":
                    if not m.get("routing"):
                        return m
                    after = [x for x in mine[i + 1 :] if x.get("type") == "status"]
                    if after:
                        return after[0] if after[0].get("state") == "error" else m
            return None

        return await wait_until(outcome, f"an offer or an error for tile {tile}")


@dataclass
class Net:
    lab: Lab
    topo: Topology
    tokens: dict[str, str]
    logs: dict[str, Path]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def code(self, node: str) -> str:
        return self.topo.nodes[node].code

    def url(self, node: str) -> str:
        return f"http://{self.lab[node].ip}:{PORT}"

    async def request(
        self, node: str, method: str, path: str, body: Any = None, **params: Any
    ) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as c:
            return await c.request(
                method,
                self.url(node) + path,
                params=params,
                json=body,
                headers={"Authorization": f"Bearer {self.tokens[node]}"},
            )

    async def get(self, node: str, path: str, **params: Any) -> Any:
        r = await self.request(node, "GET", path, **params)
        assert r.status_code == 200, r.text
        return r.json()

    async def send(self, node: str, method: str, path: str, body: dict[str, Any]) -> Any:
        r = await self.request(node, method, path, body)
        assert r.status_code in (200, 201, 204), r.text
        return r.json() if r.content else None

    async def login(self, node: str, username: str, password: str = "s3cret-pass") -> int:
        """A console login at ``node``; the HTTP status."""
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.post(
                self.url(node) + "/api/auth/login",
                json={"username": username, "password": password},
            )
        return r.status_code

    async def metrics(self, node: str) -> dict[str, float]:
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.get(self.url(node) + "/metrics")
        out = {}
        for line in r.text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    @contextlib.asynccontextmanager
    async def live(self, node: str) -> AsyncIterator[Viewer]:
        url = f"ws://{self.lab[node].ip}:{PORT}/api/live/ws"
        headers = {"Authorization": f"Bearer {self.tokens[node]}"}
        async with websockets.connect(url, additional_headers=headers) as ws:
            v = Viewer(ws)
            v.reader = asyncio.create_task(v.read())
            try:
                yield v
            finally:
                v.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await v.reader

    def blackhole(self, a: str, b: str, op: str) -> None:
        """``op`` = "add": packets between nodes ``a`` and ``b`` vanish both ways (a dead WAN
        between them; their other links stay up); "del" restores."""
        for x, y in ((a, b), (b, a)):
            subprocess.run(
                ["ip", "-n", self.lab[x].ns, "route", op, "blackhole", f"{self.lab[y].ip}/32"],
                check=True,
            )

    def veth(self, node: str) -> dict[str, int]:
        """The kernel's counters of the node's ``eth0`` (``ip -s link``): rx/tx bytes and packets
        as Ethernet frames (IP + UDP headers and the 14-byte Ethernet header included)."""
        r = subprocess.run(
            ["ip", "-n", self.lab[node].ns, "-s", "-j", "link", "show", "eth0"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        s = json.loads(r.stdout)[0]["stats64"]
        return {
            "rx_bytes": s["rx"]["bytes"],
            "rx_packets": s["rx"]["packets"],
            "tx_bytes": s["tx"]["bytes"],
            "tx_packets": s["tx"]["packets"],
        }


Setup = Callable[[str, Directory, str], Awaitable[None]]


async def start_network(tmp: Path, lab: Lab, topo: Topology, setup: Setup | None = None) -> Net:
    """Seed, configure and start every node of ``topo`` in ``lab``; ``setup(name, directory,
    org_code)`` adds directory entries before the node starts. The lab stops the processes."""
    ca = make_ca(tmp)
    tokens, logs, procs = {}, {}, {}
    for name, spec in topo.nodes.items():
        d = node_config(tmp, lab, topo, name)
        cfg = parse_config(d)
        issue_node_cert(
            ca, spec.code, out_dir=cfg.node.data_dir / "federation" / "tls", sans=[lab[name].ip]
        )
        ctx = await NodeContext.open(cfg)
        try:
            directory = Directory(ctx.db, ctx.audit)
            await directory.create(
                TEST_ACTOR,
                {"code": spec.org, "kind": "region", "tier": spec.tier, "name": spec.org_name},
            )
            if setup is not None:
                await setup(name, directory, spec.org)
            tokens[name] = await add_user(ctx, f"admin-{name}", ["admin"], spec.org)
        finally:
            await ctx.close()
        path = tmp / f"{name}.toml"
        path.write_text(toml(d), encoding="utf-8")
        logs[name] = tmp / f"{name}.log"
        procs[name] = lab.spawn(
            name, [*vmesh_command(), "node", "run", "--config", str(path)], logs[name]
        )
    net = Net(lab, topo, tokens, logs, procs)
    for name in topo.nodes:

        async def healthy(n: str = name) -> bool:
            async with httpx.AsyncClient(timeout=3) as c:
                return (await c.get(net.url(n) + "/healthz")).status_code == 200

        try:
            await wait_until(healthy, f"{name} serving", within=60)
        except AssertionError:
            raise AssertionError(logs[name].read_text(errors="replace")[-3000:]) from None
    return net


def print_logs(net: Net, lines: int = 60) -> None:
    """Each node's last ``lines`` log lines, and its last fabric and federation lines, to stderr:
    what the nodes were doing when a test failed (pytest shows it with the failure)."""
    for name, path in net.logs.items():
        try:
            text = path.read_text(errors="replace").splitlines()
        except OSError as e:
            print(f"\n--- {name}: no log ({e}) ---", file=sys.stderr)
            continue
        mesh = [ln for ln in text if "vmesh.fabric" in ln or "vmesh.federation" in ln]
        print(f"\n--- {name}: last fabric/federation lines ---", file=sys.stderr)
        print("\n".join(mesh[-lines:]), file=sys.stderr)
        print(f"--- {name}: log tail ---", file=sys.stderr)
        print("\n".join(text[-lines:]), file=sys.stderr)


def network_fixture(topo: Topology, setup: Setup | None = None) -> Any:
    """A ``net`` fixture for a test module (``net = network_fixture(TOPO, _setup)``): a lab of
    ``topo``'s nodes, ``start_network`` on it, and the lab torn down (every process in its
    namespaces ended) after the test, also when it fails. Skips when namespaces are unavailable."""

    @pytest.fixture
    async def net(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Net]:
        reason = netns_unavailable()
        if reason is not None:
            pytest.skip(f"network-namespace test bed unavailable: {reason}")
        lab = Lab(list(topo.nodes))
        try:
            network = await start_network(tmp_path, lab.up(), topo, setup)
            yield network
            rep = getattr(request.node, "rep_call", None)
            if rep is not None and rep.failed:
                print_logs(network)
        finally:
            lab.down()

    return net


async def wait_linked(net: Net, hub: str, code: str, nodes: tuple[str, ...]) -> None:
    """Wait until ``code`` is in ``hub``'s catalogue and the links of ``nodes`` (lab names) to it
    are up (readiness, not a performance bound)."""
    codes = {net.code(n) for n in nodes}

    async def ready() -> bool:
        page = await net.get(hub, "/api/network/catalogue", code_prefix=code)
        found = (await net.get(hub, "/api/network"))["nodes"]["items"]
        up = {n["code"] for n in found if n["link"]["state"] == "up"}
        return page["total"] == 1 and codes <= up

    await wait_until(ready, f"{code} at {hub}, {', '.join(nodes)} linked", within=90)


async def camera(directory: Directory, parent: str, code: str, name: str, **attrs: Any) -> None:
    """A synthetic camera in ``directory`` under ``parent``."""
    a = {"source": "synthetic", "width": 320, "height": 180, "fps": 25, "gop": 25} | attrs
    await directory.create(
        TEST_ACTOR,
        {"code": code, "parent_code": parent, "kind": "camera", "name": name, "attrs": a},
    )


@contextlib.asynccontextmanager
async def console(net: Net, node: str) -> AsyncIterator[Any]:
    """A Playwright page in Debian's Chromium, logged in to ``node``'s console as
    ``admin-<node>`` (Chromium runs in the root namespace and reaches the node over the root
    leg); closed on exit."""
    from playwright.async_api import async_playwright

    from e2e.console_node import CHROMIUM, async_log_in, media_browser_args

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=media_browser_args(),
        )
        try:
            page = await browser.new_page()
            await async_log_in(page, net.url(node), f"admin-{node}", PASSWORD)
            yield page
        finally:
            await browser.close()
