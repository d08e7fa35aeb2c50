"""A province viewer watches a county camera through its city: province ← city ← county as three
hosts (network namespaces), each a real ``vmesh node run`` with nats-server, Janus, its switch and
``[fabric] enabled``; viewers talk to ``/api/live/ws`` as the console does (no browser).

One topology, one story:

1. the county's synthetic camera reaches the province's catalogue; 3 viewers at the province
   watch it: frames reach the province's channels, the views are audited at the province
   (``live.view``) and recorded at the county (``fabric.serve``);
2. 2 viewers at the city join: county→city and city→province each carry one fabric output and
   about one copy of the camera's packets (switch counters, ``/metrics``);
3. the city↔province link is cut (both ends blackholed): the province's tiles report no signal
   naming the city; a new watch of another county camera fails naming the city; the link
   returns: the tiles play again, and the other camera can be watched;
4. every viewer leaves: after the linger no fabric input or output is left at any node, and the
   county's camera sources stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from test_config_cli import vmesh_command
from websockets.asyncio.client import ClientConnection

from factories import TEST_ACTOR, add_user
from netns.fednodes import make_ca, wait_until
from netns.lab import Lab, netns_unavailable
from vmesh.config import parse_config
from vmesh.directory.store import Directory
from vmesh.federation.ca import issue_node_cert
from vmesh.node.context import NodeContext

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
    pytest.mark.skipif(
        not (shutil.which("nats-server") and shutil.which("janus") and shutil.which("ffmpeg")),
        reason="needs nats-server, janus and ffmpeg",
    ),
]

NODES = {
    # name: (node code, tier, org code, org name, parent)
    "prov": ("33000000002006000001", "province", "33000000002166000001", "浙江省", None),
    "city": ("33030000002006000001", "city", "33030000002166000001", "温州市", "prov"),
    "county": ("33032800002006000001", "county", "33032800002166000001", "文成县", "city"),
}
PROV, CITY, COUNTY = (NODES[n][0] for n in ("prov", "city", "county"))
CAM = "33032800001320000001"
CAM2 = "33032800001320000002"
CAMERAS = {
    CAM: ("文成县府门口", "#e02020"),
    CAM2: ("文成县车站", "#2040e0"),
}
PORT = 8080
LINGER = 2.0
OUT_PACKETS = "vmesh_switch_output_packets_total"


@dataclass
class Net:
    lab: Lab
    tokens: dict[str, str]
    logs: dict[str, Path]

    def url(self, node: str) -> str:
        return f"http://{self.lab[node].ip}:{PORT}"

    async def get(self, node: str, path: str, **params: Any) -> Any:
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.get(
                self.url(node) + path,
                params=params,
                headers={"Authorization": f"Bearer {self.tokens[node]}"},
            )
        assert r.status_code == 200, r.text
        return r.json()

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


@dataclass
class Viewer:
    """One console page's WebSocket: what it was told, per tile."""

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
        """Watch ``code`` on ``tile``; Janus's offer (the channel is routed before it comes)."""
        await self.send(type="watch", tile=tile, code=code)

        def outcome() -> dict[str, Any] | None:
            if offers := self.of(tile, "offer"):
                return offers[-1]
            errors = [s for s in self.of(tile) if s["state"] == "error"]
            return errors[-1] if errors else None

        return await wait_until(outcome, f"an offer or an error for tile {tile}")


def _config(tmp: Path, lab: Lab, name: str) -> dict[str, Any]:
    code, tier, *_, parent = NODES[name]
    ip = lab[name].ip
    hub = name != "county"
    return {
        "node": {"code": code, "name": f"{name}节点", "tier": tier, "data_dir": str(tmp / name)},
        "http": {"host": ip, "port": PORT},
        "federation": {
            "enabled": True,
            "leaf_port": 7422 if hub else 0,
            "advertise": f"{ip}:7422" if hub else "",
            "parents": [f"nats-leaf://{lab[parent].ip}:7422"] if parent else [],
            "ping_interval_seconds": 2,
            "announce_seconds": 1,
            "link_check_seconds": 1,
            "catalogue_scan_seconds": 0.3,
        },
        "media": {
            "enabled": True,
            "public_address": ip,
            "channels": 4,
            "source_linger_seconds": 1,
            "no_signal_seconds": 2,
        },
        "fabric": {
            "enabled": True,
            "address": ip,
            "linger_seconds": LINGER,
            "rpc_timeout_seconds": 3,
        },
    }


def _toml(d: dict[str, Any]) -> str:
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


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    lab = Lab(list(NODES)).up()
    try:
        ca = make_ca(tmp_path)
        tokens, logs = {}, {}
        for name, (code, tier, org, org_name, _) in NODES.items():
            d = _config(tmp_path, lab, name)
            cfg = parse_config(d)
            issue_node_cert(
                ca, code, out_dir=cfg.node.data_dir / "federation" / "tls", sans=[lab[name].ip]
            )
            ctx = await NodeContext.open(cfg)
            try:
                directory = Directory(ctx.db, ctx.audit)
                await directory.create(
                    TEST_ACTOR, {"code": org, "kind": "region", "tier": tier, "name": org_name}
                )
                if name == "county":
                    for cam, (cam_name, color) in CAMERAS.items():
                        attrs = {"source": "synthetic", "width": 320, "height": 180}
                        attrs |= {"fps": 25, "gop": 25, "color": color}
                        await directory.create(
                            TEST_ACTOR,
                            {
                                "code": cam,
                                "parent_code": org,
                                "kind": "camera",
                                "name": cam_name,
                                "attrs": attrs,
                            },
                        )
                tokens[name] = await add_user(ctx, f"admin-{name}", ["admin"], org)
            finally:
                await ctx.close()
            path = tmp_path / f"{name}.toml"
            path.write_text(_toml(d), encoding="utf-8")
            logs[name] = tmp_path / f"{name}.log"
            lab.spawn(name, [*vmesh_command(), "node", "run", "--config", str(path)], logs[name])
        net = Net(lab, tokens, logs)
        for name in NODES:

            async def healthy(n: str = name) -> bool:
                async with httpx.AsyncClient(timeout=3) as c:
                    return (await c.get(net.url(n) + "/healthz")).status_code == 200

            try:
                await wait_until(healthy, f"{name} serving", within=60)
            except AssertionError:
                raise AssertionError(logs[name].read_text(errors="replace")[-3000:]) from None
        yield net
    finally:
        lab.down()


def _blackhole(lab: Lab, a: str, b: str, op: str) -> None:
    for x, y in ((a, b), (b, a)):
        subprocess.run(
            ["ip", "-n", lab[x].ns, "route", op, "blackhole", f"{lab[y].ip}/32"], check=True
        )


def _out(code: str, node: str) -> str:
    return f'{OUT_PACKETS}{{output="fabric/{code}>{node}"}}'


def _fabric_series(m: dict[str, float]) -> list[str]:
    return [k for k in m if re.search(r'(input|output)="fabric/', k)]


async def _channel_packets(net: Net, node: str) -> float:
    m = await net.metrics(node)
    return sum(
        v
        for k, v in m.items()
        if k.startswith('vmesh_switch_output_packets_total{output="channel-')
    )


async def _grows(net: Net, node: str, what: str) -> None:
    first = await _channel_packets(net, node)

    async def more() -> bool:
        return await _channel_packets(net, node) > first + 25

    await wait_until(more, what)


async def test_province_watches_a_county_camera_through_its_city(net: Net) -> None:
    async def in_catalogue() -> bool:
        page = await net.get("prov", "/api/network/catalogue", code_prefix="3303280000132")
        return {i["code"] for i in page["items"]} == set(CAMERAS)

    async def county_known() -> bool:
        nodes = (await net.get("prov", "/api/network"))["nodes"]["items"]
        return any(n["code"] == COUNTY and n["link"]["state"] == "up" for n in nodes)

    await wait_until(in_catalogue, "the county's cameras in the province's catalogue", within=60)
    await wait_until(county_known, "the county on the province's network map", within=60)

    async with net.live("prov") as p, net.live("city") as c:
        # 1. Three viewers at the province.
        for tile in ("a", "b", "c"):
            offer = await p.watch(tile, CAM)
            assert offer["type"] == "offer", offer
        await _grows(net, "prov", "frames of the county camera at the province's channels")
        views = await net.get("prov", "/api/audit", action="live.view", target=CAM)
        assert [r["result"] for r in views["items"]] == ["ok"] * 3
        assert {r["username"] for r in views["items"]} == {"admin-prov"}

        # 2. Two viewers at the city: each link still carries one copy.
        for tile in ("d", "e"):
            assert (await c.watch(tile, CAM))["type"] == "offer"
        await _grows(net, "city", "frames at the city's channels")

        async def five_recorded() -> list[dict[str, Any]] | None:
            page = await net.get("county", "/api/audit", action="fabric.serve", target=CAM)
            return page["items"] if page["total"] == 5 else None

        county = await wait_until(five_recorded, "5 views recorded at the county")
        by_node = sorted(r["detail"]["viewer_node"] for r in county)
        assert by_node == sorted([CITY, CITY, PROV, PROV, PROV])
        assert {r["detail"]["user"] for r in county} == {"admin-prov", "admin-city"}

        m_county0, m_city0 = await net.metrics("county"), await net.metrics("city")
        await asyncio.sleep(4)
        m_county1, m_city1 = await net.metrics("county"), await net.metrics("city")
        outs_county = [
            k
            for k in m_county1
            if k.startswith('vmesh_switch_output_packets_total{output="fabric/')
        ]
        outs_city = [
            k for k in m_city1 if k.startswith('vmesh_switch_output_packets_total{output="fabric/')
        ]
        assert outs_county == [_out(CAM, CITY)]  # one output towards the city, none elsewhere
        assert outs_city == [_out(CAM, PROV)]
        cam_in = f'vmesh_switch_input_packets_total{{input="{CAM}/video"}}'
        sent = m_county1[cam_in] - m_county0[cam_in]
        to_city = m_county1[_out(CAM, CITY)] - m_county0[_out(CAM, CITY)]
        to_prov = m_city1[_out(CAM, PROV)] - m_city0[_out(CAM, PROV)]
        assert sent > 50
        # One copy per link (5 viewers behind them), give or take packets in flight.
        assert 0.9 * sent <= to_city <= 1.1 * sent, (sent, to_city)
        assert 0.9 * sent <= to_prov <= 1.1 * sent, (sent, to_prov)

        # 3. Cut city <-> province.
        _blackhole(net.lab, "city", "prov", "add")

        def no_signal() -> dict[str, Any] | None:
            st = p.last_state("a")
            return st if st is not None and st["state"] == "no_signal" else None

        st = await wait_until(no_signal, "the province's tile reporting no signal")
        assert CITY in st["reason"], st
        await _grows(net, "city", "the city's own viewers still playing during the cut")

        failed = await p.watch("f", CAM2)
        assert failed["state"] == "error" and CITY in failed["reason"], failed

        _blackhole(net.lab, "city", "prov", "del")
        mark = len(p.messages)

        def back() -> bool:
            return any(
                m.get("tile") == "a" and m.get("state") not in (None, "no_signal")
                for m in p.messages[mark:]
            )

        await wait_until(back, "the province's tile out of no signal after the restore")
        await _grows(net, "prov", "frames at the province again")

        async def watch_again() -> bool:
            p.messages.clear()
            return (await p.watch("f", CAM2))["type"] == "offer"

        await wait_until(watch_again, "the other county camera watchable again", every=1)

        # 4. Everyone leaves.
        for tile in ("a", "b", "c", "f"):
            await p.send(type="stop", tile=tile)
        for tile in ("d", "e"):
            await c.send(type="stop", tile=tile)

        def stopped() -> bool:
            return all(
                any(m["state"] == "stopped" for m in v.of(tile))
                for v, tiles in ((p, "abcf"), (c, "de"))
                for tile in tiles
            )

        await wait_until(stopped, "every tile stopped")

    left: dict[str, list[str]] = {}

    async def all_gone() -> bool:
        for node in NODES:
            m = await net.metrics(node)
            left[node] = _fabric_series(m) + [f"sources={m['vmesh_media_sources']}"] * bool(
                m.get("vmesh_media_sources")
            )
        return not any(left.values())

    try:
        await wait_until(all_gone, "no fabric input/output and no source left at any node")
    except AssertionError:
        raise AssertionError(f"left after the linger: {left}") from None
