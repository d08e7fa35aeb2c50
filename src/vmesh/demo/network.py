"""``vmesh demo --network``: a real multi-node network on one machine (issue 4, item 8).

The sample Zhejiang directory (``vmesh.demo.generate``) is split among real nodes: the province,
two cities (杭州市, 温州市) and every county the generated network has under them (at least
three). Each node is its own ``vmesh node run`` process with its own nats-server and Janus, its
own data folder under ``<data>/<node>``, and holds its own part of the directory: its org unit and
everything below it except what a node further down holds. The nodes are federated for real: a
network CA made once (``vmesh.federation.ca``), a certificate per node, leaf links child → parent
on loopback. Cameras are the generated synthetic sources, started only while watched, so the
province's console watches a county camera through its city (the fabric) and the network map
shows every node and link.

Everything listens on loopback, each node on its own ports (``node_ports``): node ``i``'s console
on ``port + i``, its nats-server and Janus on ``port + 100·k + i``, and a UDP block of 1,000 ports
from 20,000 up — below Linux's ephemeral range.

``prepare_network(...)`` makes (or reuses) the folder; ``run_network(...)`` starts every node,
waits until each serves ``/healthz``, and stops them all in order on Ctrl-C / SIGTERM, or when one
dies (its log's tail is printed).

Calls: ``vmesh.demo.generate``, ``vmesh.demo.site`` (the import and the logins of one node),
``vmesh.federation.ca``.
Public: ``DemoNode``, ``NetworkSite``, ``plan_nodes``, ``split_rows``, ``node_ports``,
``prepare_network``, ``run_network``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from vmesh.config import load_config
from vmesh.demo.generate import count_kinds, generate
from vmesh.demo.site import CONFIG_FILE, Login, Progress, new_password, populate, rows_as_csv
from vmesh.federation.ca import init_ca, issue_node_cert
from vmesh.identity.codes import compose
from vmesh.node.files import write_atomic

log = logging.getLogger(__name__)

STATE_FILE = "network.json"
# The cities that get a node of their own (division prefixes); every county under them does too.
NODE_CITIES = ("3301", "3303")
MIN_COUNTIES = 3
UDP_BASE, UDP_BLOCK = 20000, 1000
Row = dict[str, str]


@dataclass(frozen=True)
class DemoNode:
    slug: str  # folder name and handle: "province", "3301" (a city), "330106" (a county)
    name: str  # the place: 浙江省, 杭州市, 西湖区
    tier: str
    org: str  # the org unit's code (the root of what the node holds)
    code: str  # the node's own code (type 200)
    parent: str | None  # the parent node's slug
    index: int  # position: picks the node's ports
    lat: float  # where the network map shows it: its org unit's place
    lon: float


@dataclass(frozen=True)
class NodePorts:
    http: int
    nats_client: int
    nats_monitor: int
    leaf: int
    janus_http: int
    janus_admin: int
    udp: int  # first port of the node's UDP block


def node_ports(index: int, http_base: int) -> NodePorts:
    """Node ``index``'s ports: TCP ones side by side per service, UDP in a block of its own."""
    return NodePorts(
        http=http_base + index,
        nats_client=http_base + 100 + index,
        nats_monitor=http_base + 200 + index,
        leaf=http_base + 300 + index,
        janus_http=http_base + 400 + index,
        janus_admin=http_base + 500 + index,
        udp=UDP_BASE + index * UDP_BLOCK,
    )


def plan_nodes(rows: Sequence[Row]) -> list[DemoNode]:
    """The province, ``NODE_CITIES`` and every county under them, parents first."""
    regions = [r for r in rows if r["kind"] == "region"]
    province = next(r for r in regions if r["tier"] == "province")

    def node(slug: str, r: Row, parent: str | None, index: int) -> DemoNode:
        code = compose(r["code"][:8], "200", 1)
        lat, lon = float(r["lat"]), float(r["lon"])
        return DemoNode(slug, r["name"], r["tier"], r["code"], code, parent, index, lat, lon)

    nodes = [node("province", province, None, 0)]
    for prefix in NODE_CITIES:
        city = next(r for r in regions if r["tier"] == "city" and r["code"].startswith(prefix))
        nodes.append(node(prefix, city, "province", len(nodes)))
    for prefix in NODE_CITIES:
        for r in regions:
            if r["tier"] == "county" and r["code"].startswith(prefix):
                nodes.append(node(r["code"][:6], r, prefix, len(nodes)))
    counties = len(nodes) - 1 - len(NODE_CITIES)
    if counties < MIN_COUNTIES:
        raise ValueError(
            f"the generated network has {counties} counties under 杭州市 and 温州市; "
            f"the network demo needs at least {MIN_COUNTIES}: use more villages (--villages 400)"
        )
    return nodes


def split_rows(rows: Sequence[Row], nodes: Sequence[DemoNode]) -> dict[str, list[Row]]:
    """Each node's rows: its subtree without the subtrees of nodes below it, parents first.

    A city or county node's root org unit has no parent there (the tree above it comes down
    from the province over the federation); each such node gets its own platform entry (200)."""
    by_org = {n.org: n for n in nodes}
    parent = {r["code"]: r["parent_code"] for r in rows}
    owner_of: dict[str, str] = {}

    def owner(code: str) -> str:
        if code not in owner_of:
            n = by_org.get(code)
            owner_of[code] = n.slug if n else owner(parent[code])
        return owner_of[code]

    out: dict[str, list[Row]] = {n.slug: [] for n in nodes}
    for r in rows:
        slug = owner(r["code"])
        n = by_org.get(r["code"])
        if n is not None and n.parent is not None:
            out[slug].append({**r, "parent_code": ""})
            out[slug].append(
                {
                    **r,
                    "code": n.code,
                    "parent_code": n.org,
                    "kind": "platform",
                    "tier": "",
                    "name": f"{n.name}视频一张网节点",
                    "tags": "节点",
                    "status": "online",
                    "attrs": json.dumps({"role": f"{n.tier} node"}),
                }
            )
        else:
            out[slug].append(r)
    return out


def node_config(data_dir: Path, n: DemoNode, nodes: Sequence[DemoNode], http_base: int) -> str:
    """Node ``n``'s ``vmesh.toml``: federation to its parent, live video and the fabric."""
    p = node_ports(n.index, http_base)
    hub = any(m.parent == n.slug for m in nodes)
    parents = [
        f"nats-leaf://127.0.0.1:{node_ports(m.index, http_base).leaf}"
        for m in nodes
        if m.slug == n.parent
    ]
    u = p.udp
    return (
        "# Written by `vmesh demo --network` on every start.\n"
        f'[node]\ncode = "{n.code}"\nname = "{n.name}节点"\ntier = "{n.tier}"\n'
        f'data_dir = "{data_dir / n.slug}"\n\n'
        f'[http]\nhost = "127.0.0.1"\nport = {p.http}\n\n'
        '[log]\nlevel = "INFO"\n\n'
        "[federation]\nenabled = true\n"
        f"client_port = {p.nats_client}\nmonitor_port = {p.nats_monitor}\n"
        f'leaf_host = "127.0.0.1"\nleaf_port = {p.leaf if hub else 0}\n'
        f'advertise = "{f"127.0.0.1:{p.leaf}" if hub else ""}"\n'
        f"parents = {json.dumps(parents)}\n"
        f'addresses = ["http://127.0.0.1:{p.http}"]\nlat = {n.lat}\nlon = {n.lon}\n\n'
        "[media]\nenabled = true\n"
        f"janus_http_port = {p.janus_http}\njanus_admin_port = {p.janus_admin}\n"
        f"ice_port_range = [{u}, {u + 299}]\n"
        f"streaming_port_range = [{u + 300}, {u + 349}]\n"
        f"channel_port_range = [{u + 400}, {u + 599}]\n"
        f"input_port_range = [{u + 600}, {u + 899}]\n"
        "channels = 16\nsource_linger_seconds = 10\n\n"
        f'[fabric]\nenabled = true\naddress = "127.0.0.1"\nport_range = [{u + 900}, {u + 999}]\n'
        + ("\n[servicedesk]\nsample_catalogue = true\n" if n.parent is None else "")
    )


@dataclass(frozen=True)
class NetworkSite:
    data_dir: Path
    villages: int
    seed: int
    nodes: list[DemoNode]
    counts: dict[str, dict[str, int]]  # per node slug: entries by kind
    login: Login  # the same admin name and password at every node, scoped to that node
    reused: bool

    def config(self, n: DemoNode) -> Path:
        return self.data_dir / n.slug / CONFIG_FILE


def _load(data_dir: Path) -> NetworkSite | None:
    path = data_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return NetworkSite(
            data_dir,
            int(d["villages"]),
            int(d["seed"]),
            [DemoNode(**n) for n in d["nodes"]],
            {k: {a: int(b) for a, b in v.items()} for k, v in d["counts"].items()},
            Login(**d["login"]),
            reused=True,
        )
    except (ValueError, KeyError, TypeError) as e:
        log.warning("network demo state=%s unreadable (%s): preparing again", path, e)
        return None


def prepare_network(
    data_dir: Path,
    *,
    villages: int,
    seed: int,
    http_base: int,
    progress: Progress | None = None,
) -> NetworkSite:
    """Make the network's folder (or reuse it): CA, certificates, each node's directory part,
    configuration and admin login. Configurations are rewritten every time (ports may change)."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    site = _load(data_dir)
    if site is None:
        rows = generate(villages, seed)
        nodes = plan_nodes(rows)
        parts = split_rows(rows, nodes)
        ca = data_dir / "ca"
        if not (ca / "ca.pem").exists():
            init_ca(ca, name="浙江省视频一张网（演示）")
        login = Login("admin", new_password(), ["admin"], "", "each node's own unit")
        for n in nodes:
            folder = data_dir / n.slug
            folder.mkdir(exist_ok=True)
            write_atomic(folder / CONFIG_FILE, node_config(data_dir, n, nodes, http_base), 0o644)
            issue_node_cert(ca, n.code, out_dir=folder / "federation" / "tls",
                            name=f"{n.name}节点", sans=["127.0.0.1"])  # fmt: skip
            scoped = Login(login.username, login.password, login.roles, n.org, n.name)
            data = rows_as_csv(parts[n.slug]).encode("utf-8")
            asyncio.run(
                populate(
                    load_config(folder / CONFIG_FILE),
                    data,
                    n.org,
                    [(scoped, "演示管理员")],
                    progress,
                )
            )
        site = NetworkSite(data_dir, villages, seed, nodes,
                           {s: count_kinds(p) for s, p in parts.items()}, login,
                           reused=False)  # fmt: skip
        state = {
            "villages": villages,
            "seed": seed,
            "nodes": [asdict(n) for n in nodes],
            "counts": site.counts,
            "login": asdict(login),
        }
        write_atomic(data_dir / STATE_FILE, json.dumps(state, ensure_ascii=False, indent=2) + "\n",
                     0o600)  # fmt: skip
    for n in site.nodes:
        write_atomic(site.config(n), node_config(data_dir, n, site.nodes, http_base), 0o644)
    return site


def describe(site: NetworkSite, http_base: int) -> str:
    lines = [
        f"vmesh demo --network: 浙江省, {site.villages} villages (seed {site.seed}), "
        f"{len(site.nodes)} nodes" + (" (reused)" if site.reused else ""),
        "",
    ]
    for n in site.nodes:
        indent = {"province": "", "city": "  ", "county": "    "}.get(n.tier, "")
        entries = sum(site.counts.get(n.slug, {}).values())
        cams = site.counts.get(n.slug, {}).get("camera", 0)
        lines.append(
            f"  node:     http://127.0.0.1:{node_ports(n.index, http_base).http}/  {n.code}  "
            f"{indent}{n.name} ({entries} entries, {cams} cameras)"
        )
    lines += [
        "",
        f"  login:    {site.login.username} / {site.login.password}   "
        "(admin at every node, scoped to that node's unit)",
        f"  map:      http://127.0.0.1:{node_ports(0, http_base).http}/#/network",
        f"  data:     {site.data_dir}  (remove it to generate a new network)",
    ]
    return "\n".join(lines)


def _vmesh() -> list[str]:
    exe = Path(sys.executable).parent / "vmesh"
    return (
        [str(exe)] if exe.exists() else [sys.executable, "-c", "from vmesh.cli import main; main()"]
    )


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return "(no log)"


def run_network(
    site: NetworkSite, http_base: int, *, echo: Callable[[str], None], ready_within: float = 120
) -> int:
    """Start every node (parents first), wait for ``/healthz`` of each, then serve until a signal
    or a node's death; stop them all (children first). The exit status: 0 after a signal, 1 when
    a node died or never came up."""
    stop = {"signal": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {n.slug: site.data_dir / n.slug / "node.log" for n in site.nodes}
    status = 0
    try:
        for n in site.nodes:
            with open(logs[n.slug], "ab") as out:
                procs[n.slug] = subprocess.Popen(
                    [*_vmesh(), "node", "run", "--config", str(site.config(n))],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        pending = {n.slug: n for n in site.nodes}
        deadline = time.monotonic() + ready_within
        while pending and not stop["signal"]:
            for slug, n in list(pending.items()):
                if procs[slug].poll() is not None:
                    echo(f"node {n.name} exited ({procs[slug].returncode}):\n{_tail(logs[slug])}")
                    return 1
                url = f"http://127.0.0.1:{node_ports(n.index, http_base).http}/healthz"
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        echo(f"  up:       {n.name} ({url.removesuffix('/healthz')})")
                        del pending[slug]
                except httpx.TransportError:
                    pass
            if time.monotonic() > deadline:
                names = ", ".join(n.name for n in pending.values())
                echo(
                    f"not serving after {ready_within:g} s: {names}; see {site.data_dir}/*/node.log"
                )
                return 1
            time.sleep(0.3)
        if not stop["signal"]:
            echo("  (all nodes up; Ctrl-C stops the network)")
        while not stop["signal"]:
            for n in site.nodes:
                if procs[n.slug].poll() is not None:
                    echo(
                        f"node {n.name} exited ({procs[n.slug].returncode}):\n{_tail(logs[n.slug])}"
                    )
                    return 1
            time.sleep(0.5)
        return status
    finally:
        _stop_all([procs[n.slug] for n in reversed(site.nodes) if n.slug in procs])
        for s, h in old.items():
            signal.signal(s, h)


def _stop_all(procs: Sequence[subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    """SIGTERM each node (it stops its Janus and nats-server), then kill the stragglers' groups."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("node pid=%d did not stop in %g s; killing its process group", p.pid, grace)
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
