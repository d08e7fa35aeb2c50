"""Province ← city ← county as three hosts (network namespaces), each a real ``vmesh node run``
with its nats-server, mutual-TLS leaf links over the lab bridge, catalogue streams sourced upward.

One topology, one story: the county's directory changes reach the province; the province's
``/api/network`` shows city and county with their links up; the city↔province link is cut (both
ends blackholed: a dead WAN, the county↔city link stays up), the province sees the city's link
go down, the county makes 50 changes (the city gets them during the cut), the link returns, and
the province holds every change exactly once (same code and version as at the county, applied
count equal to what the county published).
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_config_cli import vmesh_command

from factories import TEST_ACTOR, add_user
from netns.fednodes import make_ca, wait_until
from netns.lab import Lab, lab_factory  # noqa: F401 (fixture)
from vmesh.config import parse_config
from vmesh.directory.store import Directory
from vmesh.federation.ca import issue_node_cert
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

NODES = {
    # name: (node code, tier, org code, org name, parent)
    "prov": ("33000000002006000001", "province", "33000000002166000001", "浙江省", None),
    "city": ("33030000002006000001", "city", "33030000002166000001", "温州市", "prov"),
    "county": ("33032800002006000001", "county", "33032800002166000001", "文成县", "city"),
}
PORT = 8080


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

    async def send(self, node: str, method: str, path: str, body: dict[str, Any]) -> Any:
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.request(
                method,
                self.url(node) + path,
                json=body,
                headers={"Authorization": f"Bearer {self.tokens[node]}"},
            )
        assert r.status_code in (200, 201), r.text
        return r.json()


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
            "addresses": [f"http://{ip}:{PORT}"],
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
async def net(tmp_path: Path, lab_factory: Callable[..., Lab]) -> AsyncIterator[Net]:  # noqa: F811
    lab = lab_factory(*NODES)
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
            await Directory(ctx.db, ctx.audit).create(
                TEST_ACTOR, {"code": org, "kind": "region", "tier": tier, "name": org_name}
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
            await wait_until(healthy, f"{name} serving")
        except AssertionError:
            raise AssertionError(logs[name].read_text(errors="replace")[-3000:]) from None
    yield net  # the lab fixture stops the nodes (SIGTERM, then SIGKILL), then the namespaces


def _blackhole(lab: Lab, a: str, b: str, op: str) -> None:
    for x, y in ((a, b), (b, a)):
        subprocess.run(
            ["ip", "-n", lab[x].ns, "route", op, "blackhole", f"{lab[y].ip}/32"], check=True
        )


async def _nodes(net: Net, node: str) -> dict[str, dict[str, Any]]:
    body = await net.get(node, "/api/network")
    return {n["code"]: n for n in body["nodes"]["items"]}


async def _catalogue(net: Net, node: str, **params: Any) -> dict[str, int]:
    """code -> version of the catalogue entries at ``node`` (all pages)."""
    out: dict[str, int] = {}
    offset = 0
    while True:
        page = await net.get(node, "/api/network/catalogue", offset=offset, limit=500, **params)
        out.update({i["code"]: i["version"] for i in page["items"]})
        offset += len(page["items"])
        if offset >= page["total"] or not page["items"]:
            return out


async def test_county_changes_reach_the_province_through_a_cut(net: Net) -> None:
    prov, city, county = (NODES[n][0] for n in ("prov", "city", "county"))
    wencheng = NODES["county"][2]

    async def links_up() -> dict[str, dict[str, Any]] | None:
        nodes = await _nodes(net, "prov")
        ok = all(nodes.get(c, {}).get("link", {}).get("state") == "up" for c in (city, county))
        return nodes if ok else None

    nodes = await wait_until(links_up, "city and county up on the province's network map")
    assert (nodes[city]["parent_code"], nodes[county]["parent_code"]) == (prov, city)
    assert nodes[county]["link"]["reported_by"] == city  # measured by the city, passed up
    assert nodes[city]["link"]["reported_by"] == prov and nodes[city]["link"]["rtt_ms"] > 0

    cam = await net.send(
        "county",
        "POST",
        "/api/directory/entries",
        {"parent_code": wencheng, "kind": "camera", "name": "县府门口摄像机"},
    )

    async def at_province(code: str, version: int) -> bool:
        return (await _catalogue(net, "prov", code_prefix=code)).get(code) == version

    await wait_until(lambda: at_province(cam["code"], 1), "the county's camera at the province")

    # Cut city <-> province only; the county keeps its link to the city.
    _blackhole(net.lab, "city", "prov", "add")

    async def city_down() -> bool:
        return (await _nodes(net, "prov"))[city]["link"]["state"] == "down"

    await wait_until(city_down, "the province seeing the city's link down")

    codes = []
    for i in range(25):
        e = await net.send(
            "county",
            "POST",
            "/api/directory/entries",
            {"parent_code": wencheng, "kind": "camera", "name": f"断网期间摄像机{i:02d}"},
        )
        codes.append(e["code"])
    for i, code in enumerate(codes):
        await net.send(
            "county",
            "PATCH",
            f"/api/directory/entries/{code}",
            {"name": f"断网期间摄像机{i:02d}改"},
        )
    expected = dict.fromkeys(codes, 2)

    async def county_has_all() -> bool:
        # The county's own catalogue is fed by its periodic directory scan, so it may lag the
        # PATCHes by up to one scan interval.
        return await _catalogue(net, "county", q="断网期间") == expected

    await wait_until(county_has_all, "the 50 changes in the county's own catalogue")

    async def city_has_all() -> bool:
        return await _catalogue(net, "city", q="断网期间") == expected

    # The city gets them during the cut (its link to the county is up).
    await wait_until(city_has_all, "the 50 changes at the city during the cut")
    assert await _catalogue(net, "prov", q="断网期间") == {}

    _blackhole(net.lab, "city", "prov", "del")

    async def province_has_all() -> bool:
        return await _catalogue(net, "prov", q="断网期间") == expected

    await wait_until(province_has_all, "every change at the province after the restore")
    await wait_until(links_up, "the city's link up again")

    async def counts_settled() -> tuple[dict[str, Any], dict[str, Any]] | None:
        at_county = (await _nodes(net, "county"))[county]["sync"]
        at_prov = (await _nodes(net, "prov"))[county]["sync"]
        return (at_county, at_prov) if at_county["applied"] == at_prov["applied"] else None

    at_county, at_prov = await wait_until(counts_settled, "the same changes applied")
    # Exactly once: the province applied what the county published, nothing ignored as a
    # duplicate, and holds the same entries at the same versions.
    assert at_prov["ignored"] == 0
    assert at_prov["entries"] == at_county["entries"] == 1 + 1 + 25  # region, camera, 25
    assert await _catalogue(net, "prov", origin=county) == await _catalogue(net, "county")
