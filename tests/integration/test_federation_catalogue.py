"""Catalogue up-flow and the network view on loopback: a province and a city, each a real node
context (its own database) with its ``Federation`` (real nats-server, mutual-TLS leaf, JetStream
stream sourcing), in this process.

The city's directory changes reach the province's catalogue (create, update, delete); a change
delivered again, or an older one after a newer, is not applied (by code and version); the
province's ``/api/network`` shows the city with its link up and the changes applied from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from factories import TEST_ACTOR, add_user
from netns.fednodes import free_ports, make_ca, node_server, wait_until
from vmesh.api.app import create_app
from vmesh.config import parse_config
from vmesh.directory.store import Directory
from vmesh.federation.catalogue import (
    CatalogueChange,
    batch_subject,
    encode,
    encode_batch,
    subject,
)
from vmesh.federation.node import Federation
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

PROV = "33000000002006000001"
CITY = "33030000002006000001"
ZJ = "33000000002166000001"
WZ = "33030000002166000001"


@dataclass
class Node:
    ctx: NodeContext
    fed: Federation
    client: httpx.AsyncClient
    directory: Directory


async def _node(
    tmp: Path, code: str, name: str, tier: str, ca: Path, ports: list[int], **fed: Any
) -> Node:
    leaf = fed.pop("leaf_port", 0)
    cfg = parse_config(
        {
            "node": {"code": code, "name": name, "tier": tier, "data_dir": str(tmp / tier)},
            "federation": {
                "enabled": True,
                "client_port": ports[0],
                "monitor_port": ports[1],
                "leaf_port": leaf,
                "advertise": f"127.0.0.1:{leaf}" if leaf else "",
                "announce_seconds": 0.5,
                "link_check_seconds": 0.5,
                "catalogue_scan_seconds": 0.2,
                "lat": 30.27 if tier == "province" else 28.0,
                "lon": 120.15 if tier == "province" else 120.7,
                **fed,
            },
        }
    )
    f = cfg.federation
    server = node_server(
        tmp,
        code,
        ca_dir=ca,
        sans=["127.0.0.1"],
        label=f"{tier}-nats",
        client_port=f.client_port,
        monitor_port=f.monitor_port,
        leaf_host="127.0.0.1",
        leaf_port=f.leaf_port,
        advertise=f.advertise,
        parents=tuple(f.parents),
        ping_interval=2,
    )
    ctx = await NodeContext.open(cfg)
    federation = Federation(ctx, server=server)
    await federation.start()
    ctx.federation = federation
    transport = httpx.ASGITransport(app=create_app(ctx), client=("10.1.2.3", 5555))
    client = httpx.AsyncClient(transport=transport, base_url="http://node.test")
    return Node(ctx, federation, client, Directory(ctx.db, ctx.audit))


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[dict[str, Node]]:
    ca = make_ca(tmp_path)
    p = free_ports(5)
    nodes: dict[str, Node] = {}
    try:
        nodes["prov"] = await _node(tmp_path, PROV, "浙江省节点", "province", ca, p, leaf_port=p[2])
        nodes["city"] = await _node(
            tmp_path,
            CITY,
            "温州市节点",
            "city",
            ca,
            p[3:],
            parents=[f"nats-leaf://127.0.0.1:{p[2]}"],
        )
        await nodes["prov"].directory.create(
            TEST_ACTOR, {"code": ZJ, "kind": "region", "tier": "province", "name": "浙江省"}
        )
        await nodes["city"].directory.create(
            TEST_ACTOR, {"code": WZ, "kind": "region", "tier": "city", "name": "温州市"}
        )
        yield nodes
    finally:
        for n in reversed(list(nodes.values())):
            await n.client.aclose()
            await n.fed.stop()
            await n.ctx.close()


async def _catalogue(node: Node, h: dict[str, str], **params: str) -> list[dict[str, Any]]:
    r = await node.client.get("/api/network/catalogue", params=params, headers=h)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def _network(node: Node, h: dict[str, str]) -> dict[str, Any]:
    r = await node.client.get("/api/network", headers=h)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _by_code(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["code"]: n for n in body["nodes"]["items"]}


async def test_city_changes_reach_the_province_catalogue(net: dict[str, Node]) -> None:
    prov, city = net["prov"], net["city"]
    h = {"Authorization": f"Bearer {await add_user(prov.ctx, 'admin', ['admin'], ZJ)}"}
    cam = await city.directory.create(
        TEST_ACTOR,
        {"parent_code": WZ, "kind": "camera", "name": "五马街口摄像机", "lat": 28.0, "lon": 120.6},
    )

    async def found(version: int) -> dict[str, Any] | None:
        items = await _catalogue(prov, h, q="五马街")
        return next((i for i in items if i["version"] == version), None)

    got = await wait_until(lambda: found(1), "the city's camera in the province's catalogue")
    assert (got["code"], got["origin_node"], got["parent_code"]) == (cam["code"], CITY, WZ)
    assert got["kind"] == "camera" and got["lat"] == 28.0

    await city.directory.update(TEST_ACTOR, cam["code"], {"name": "五马街口高清摄像机"})
    got = await wait_until(lambda: found(2), "the rename at the province")
    assert got["name"] == "五马街口高清摄像机"

    await city.directory.delete(TEST_ACTOR, cam["code"])

    async def gone() -> bool:
        return not await _catalogue(prov, h, q="五马街")

    await wait_until(gone, "the deletion at the province")
    # The region the city made first is there too, searchable by the province.
    [wz] = await _catalogue(prov, h, origin=CITY, kind="region")
    assert (wz["code"], wz["name"]) == (WZ, "温州市")

    body = await _network(prov, h)
    nodes = _by_code(body)
    assert nodes[CITY]["parent_code"] == PROV and nodes[CITY]["link"]["state"] == "up"
    assert nodes[CITY]["sync"]["applied"] == 4  # region, camera, rename, deletion
    assert nodes[CITY]["sync"]["pending"] == 0
    assert nodes[PROV]["self"] is True
    assert body["links"] == [
        {
            "child": CITY,
            "parent": PROV,
            "state": "up",
            "rtt_ms": nodes[CITY]["link"]["rtt_ms"],
            "last_seen": nodes[CITY]["link"]["last_seen"],
        }
    ]
    hc = {"Authorization": f"Bearer {await add_user(city.ctx, 'wz', ['viewer'], WZ)}"}
    city_view = await _network(city, hc)
    assert city_view["node"]["uplink"]["parent_code"] == PROV
    assert city_view["node"]["uplink"]["state"] == "up"
    # A user of the city sees the city's nodes only: the province lies outside Wenzhou.
    assert [n["code"] for n in city_view["nodes"]["items"]] == [CITY]


async def test_a_change_delivered_again_or_late_is_not_applied(net: dict[str, Node]) -> None:
    prov, city = net["prov"], net["city"]
    h = {"Authorization": f"Bearer {await add_user(prov.ctx, 'admin', ['admin'], ZJ)}"}
    cam = await city.directory.create(
        TEST_ACTOR, {"parent_code": WZ, "kind": "camera", "name": "江心屿摄像机"}
    )
    code = cam["code"]
    await city.directory.update(TEST_ACTOR, code, {"name": "江心屿东塔摄像机"})

    async def at_version_2() -> bool:
        return [i["version"] for i in await _catalogue(prov, h, q="江心屿")] == [2]

    await wait_until(at_version_2, "version 2 at the province")

    async def applied() -> tuple[int, int]:
        sync = _by_code(await _network(prov, h))[CITY]["sync"]
        return sync["applied"], sync["ignored"]

    before = await applied()
    # Deliver version 2 again and a stale version 1 after it, with message ids JetStream has
    # not seen (so its own de-duplication does not hide them): the province must ignore both.
    js = city.fed.js
    old = CatalogueChange(
        CITY,
        code,
        1,
        cam["updated_at"],
        {"parent_code": WZ, "kind": "camera", "name": "江心屿摄像机", "status": "unknown"},
    )
    again = CatalogueChange(
        CITY,
        code,
        2,
        cam["updated_at"],
        {"parent_code": WZ, "kind": "camera", "name": "江心屿东塔摄像机", "status": "unknown"},
    )
    for i, c in enumerate((again, old)):
        await js.publish(subject(CITY, code), encode(c), headers={"Nats-Msg-Id": f"replay-{i}"})

    async def both_ignored() -> tuple[int, int] | None:
        now = await applied()
        return now if now[1] == before[1] + 2 else None

    after = await wait_until(both_ignored, "the replayed changes counted as ignored")
    assert after[0] == before[0]  # nothing applied
    [entry] = await _catalogue(prov, h, q="江心屿")
    assert (entry["version"], entry["name"]) == (2, "江心屿东塔摄像机")

    # A format-2 batch with one bad change is refused whole (its good change not applied) and
    # does not hold up the batch after it.
    v3 = replace(again, version=3, entry={**again.entry, "name": "不应出现"})  # type: ignore[dict-item]
    [(bad, _)] = encode_batch(CITY, [v3, replace(again, version=4)])
    bad = bad.replace(b'"version":4', b'"version":0')
    v5 = replace(again, version=5, entry={**again.entry, "name": "江心屿西塔摄像机"})  # type: ignore[dict-item]
    [(good, _)] = encode_batch(CITY, [v5])
    malformed = prov.fed.applier.stats.malformed  # type: ignore[union-attr]
    for i, body in enumerate((bad, good)):
        await js.publish(batch_subject(CITY), body, headers={"Nats-Msg-Id": f"batch-{i}"})

    async def at_version_5() -> bool:
        return [i["version"] for i in await _catalogue(prov, h, q="江心屿")] == [5]

    await wait_until(at_version_5, "the good batch after the bad one")
    assert prov.fed.applier.stats.malformed == malformed + 1  # type: ignore[union-attr]
    assert (await _catalogue(prov, h, q="江心屿"))[0]["name"] == "江心屿西塔摄像机"
    assert not await _catalogue(prov, h, q="不应出现")
