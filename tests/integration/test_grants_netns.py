"""Grants travelling between real nodes (``netns.vnet``: three ``vmesh node run`` with
nats-server, media and fabric, in network namespaces): the province with two children, the city of
Hangzhou and the county of Wencheng (not under Hangzhou), a camera at the county. One network for
both stories (they run in one test, the province's first, so that the county's grant of the second
does not cover the first's views).

Decisions at the province:

1. the city applies naming the province as the decider: it waits in the province's queue, not at
   the county, and the province's rejection reaches the city;
2. the province grants the county camera to the city's unit directly: the grant reaches the city
   and the county; the city's admin watches the camera (the watch accepted at the city, served by
   the county's fabric under the grant: ``live.view`` and ``fabric.serve`` rows with the purpose);
3. the province revokes: the city's tile stops naming the revocation, the county closes its side
   (``fabric.stop``), a new view is refused with the reason at the city and a view presented at
   the county under the grant is refused there with it (``fabric.serve`` ``denied``);
4. a decision forged at Hangzhou (not above Wencheng) and sent over the bus to the county is
   refused there with the reason, audited (``grant.refuse``) and not stored.

A decision at the owner during a cut:

5. the city applies for the county's org subtree: the application goes over NATS to the county
   (located through the province's catalogue) and is stored at both ends;
6. the county↔province link is cut: a new application from the city fails naming the county as
   unreachable and leaves nothing behind; the county approves anyway (its own decision, written
   to its outbox);
7. the link returns: the approval reaches the city and the province, once each (idempotent by
   grant id and version, although it travels county→city, county→province and city→province).
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from netns.fednodes import wait_until
from netns.vnet import (
    HANGZHOU_SPEC,
    NEEDS_MEDIA_NETWORK,
    PROV_SPEC,
    WENCHENG_SPEC,
    Net,
    Topology,
    camera,
    network_fixture,
    wait_linked,
)
from vmesh.directory.store import Directory

pytestmark = [pytest.mark.integration, *NEEDS_MEDIA_NETWORK]

TOPOLOGY = Topology(
    {
        "prov": PROV_SPEC,
        "city": HANGZHOU_SPEC,
        "county": replace(WENCHENG_SPEC, parents=("prov",)),
    },
    media=True,
)
COUNTY = TOPOLOGY.nodes["county"].code
COUNTY_ORG = TOPOLOGY.nodes["county"].org
PURPOSE = "防汛应急值守"
CITY, PROV = TOPOLOGY.nodes["city"].code, TOPOLOGY.nodes["prov"].code
CITY_ORG = TOPOLOGY.nodes["city"].org
CAM = "33032800001320000001"
PROBE = str(Path(__file__).resolve().parents[1] / "netns" / "busprobe.py")


async def _camera_at_county(name: str, directory: Directory, org: str) -> None:
    if name == "county":
        await camera(directory, org, CAM, "文成县府门口")


net = network_fixture(TOPOLOGY, _camera_at_county)


def _application() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "grantee": "unit",
        "org": COUNTY_ORG,
        "purpose": PURPOSE,
        "from": now.isoformat(),
        "until": (now + timedelta(days=1)).isoformat(),
    }


async def test_grants_decided_at_the_province_and_during_a_cut(net: Net) -> None:
    await _the_province_grants_a_county_camera_to_the_city_and_revokes_it(net)
    await _a_decision_taken_during_a_cut_arrives_when_the_link_returns(net)


async def _a_decision_taken_during_a_cut_arrives_when_the_link_returns(net: Net) -> None:
    async def located() -> bool:
        page = await net.get("prov", "/api/network/catalogue", code_prefix=COUNTY_ORG)
        return page["total"] == 1

    await wait_until(located, "the county's org unit in the province's catalogue", within=60)

    # 5. Applied at the city, stored at the county too.
    before = {x["id"] for x in (await net.get("city", "/api/grants", view="all"))["items"]}
    g = await net.send("city", "POST", "/api/grants", _application())
    gid = g["id"]
    assert (g["owner_node"], g["state"]) == (COUNTY, "applied")
    at_county = await net.get("county", f"/api/grants/{gid}")
    assert (at_county["purpose"], at_county["version"]) == (PURPOSE, 1)

    # 6. The county is cut off from the province (and so from the city).
    net.blackhole("county", "prov", "add")
    try:

        async def refused() -> Any:
            r = await net.request("city", "POST", "/api/grants", _application())
            return r if r.status_code == 504 else None

        r = await wait_until(refused, "an application refused while the county is cut off")
        assert COUNTY in r.json()["detail"] and "unreachable" in r.json()["detail"], r.text
        mine = await net.get("city", "/api/grants", view="all")
        assert {x["id"] for x in mine["items"]} == before | {gid}  # nothing half-written

        decided = await net.send(
            "county", "POST", f"/api/grants/{gid}/decision", {"decision": "approve"}
        )
        assert (decided["state"], decided["version"]) == ("active", 2)

        async def retrying() -> list[dict[str, Any]] | None:
            out = await net.get("county", "/api/grants/outbox")
            return out if out and all(o["attempts"] > 0 for o in out) else None

        pending = await wait_until(retrying, "the county retrying its deliveries")
        assert {(o["grant"], o["version"]) for o in pending} == {(gid, 2)}
        assert {o["target_node"] for o in pending} == {net.code("city"), net.code("prov")}
        assert all("unreachable" in o["last_error"] for o in pending), pending
        assert (await net.get("city", f"/api/grants/{gid}"))["state"] == "applied"
    finally:
        net.blackhole("county", "prov", "del")

    # 7. Delivered after the cut, once everywhere.
    for node in ("city", "prov"):

        async def arrived(n: str = node) -> bool:
            r = await net.request(n, "GET", f"/api/grants/{gid}")
            return r.status_code == 200 and r.json()["state"] == "active"

        await wait_until(arrived, f"the approval at the {node}", within=60)

    async def settled() -> bool:
        return all([await net.get(n, "/api/grants/outbox") == [] for n in TOPOLOGY.nodes])

    await wait_until(settled, "every outbox emptied", within=30)
    for node in ("city", "prov"):
        rows = (await net.get(node, "/api/audit", action="grant.approve"))["items"]
        rows = [r for r in rows if r["detail"]["grant"] == gid]
        assert [(r["detail"]["purpose"], r["detail"]["by"]) for r in rows] == [
            (PURPOSE, "admin-county")
        ]


async def _probe(net: Net, node: str, dst: str, service: str, body: dict[str, Any]) -> Any:
    """One bus request sent from inside ``node``'s namespace as that node (``busprobe``)."""
    argv = [sys.executable, PROBE, "call", "nats://127.0.0.1:4222", net.code(node), dst, service]
    r = await asyncio.to_thread(net.lab.run, node, [*argv, json.dumps(body), "5"])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


async def _rows(net: Net, node: str, action: str, **params: Any) -> list[dict[str, Any]]:
    return list((await net.get(node, "/api/audit", action=action, **params))["items"])


async def _the_province_grants_a_county_camera_to_the_city_and_revokes_it(net: Net) -> None:
    await wait_linked(net, "prov", CAM, ("city", "county"))

    # 1. An application naming the province waits there, not at the county; rejected there.
    applied = await net.send(
        "city", "POST", "/api/grants", _application() | {"decider": "province"}
    )
    assert (applied["owner_node"], applied["decider_node"]) == (COUNTY, PROV)
    queue = await net.get("prov", "/api/grants", view="queue")
    assert [x["id"] for x in queue["items"]] == [applied["id"]]
    assert (await net.request("county", "GET", f"/api/grants/{applied['id']}")).status_code == 404
    await net.send(
        "prov", "POST", f"/api/grants/{applied['id']}/decision",
        {"decision": "reject", "reason": "请向文成县申请"},
    )  # fmt: skip

    async def rejected_at_city() -> bool:
        g = await net.get("city", f"/api/grants/{applied['id']}")
        return g["state"] == "rejected" and "请向文成县申请" in g["reason"]

    await wait_until(rejected_at_city, "the province's rejection at the city")

    # 2. The province grants the camera to the city's unit directly.
    body = _application() | {"grantee_code": CITY_ORG, "org": None, "codes": [CAM]}
    g = await net.send("prov", "POST", "/api/grants/direct", body)
    gid = g["id"]
    assert (g["state"], g["applicant_node"], g["decider_node"]) == ("active", CITY, PROV)
    for node in ("city", "county"):

        async def active(n: str = node) -> bool:
            r = await net.request(n, "GET", f"/api/grants/{gid}")
            return r.status_code == 200 and r.json()["state"] == "active"

        await wait_until(active, f"the province's grant at the {node}")

    async with net.live("city") as viewer:
        offer = await viewer.watch("0", CAM)
        assert offer["type"] == "offer", offer

        async def served() -> list[dict[str, Any]]:
            rows = await _rows(net, "county", "fabric.serve", result="ok")
            return [r for r in rows if r["detail"].get("grant") == gid]

        rows = await wait_until(served, "the view served by the county under the grant")
        assert (rows[0]["detail"]["purpose"], rows[0]["detail"]["viewer_node"]) == (PURPOSE, CITY)
        views = await _rows(net, "city", "live.view", result="ok")
        assert [(v["detail"]["grant"], v["detail"]["purpose"]) for v in views] == [(gid, PURPOSE)]

        # 3. The province revokes: the tile stops with the reason; the county closes its side.
        await net.send("prov", "POST", f"/api/grants/{gid}/revoke", {"reason": "汛期结束"})

        def stopped() -> dict[str, Any] | None:
            last = viewer.last_state("0")
            return last if last and last["state"] == "error" else None

        last = await wait_until(stopped, "the city's tile stopped by the revocation")
        assert f"grant {gid} revoked at" in last["reason"], last
        assert "admin-prov" in last["reason"] and "汛期结束" in last["reason"], last

        async def closed() -> list[dict[str, Any]]:
            return await _rows(net, "county", "fabric.stop")

        stops = await wait_until(closed, "the county closing the stream it served under the grant")
        assert stops[0]["detail"]["grant"] == gid and "汛期结束" in stops[0]["detail"]["reason"]

        again = await viewer.watch("1", CAM)
        assert again["state"] == "error" and f"grant {gid} revoked at" in again["reason"], again

    presented = await _probe(
        net, "city", COUNTY, "fabric",
        {"op": "record", "stream": CAM, "viewer_node": CITY, "user": "admin-city", "grant": gid},
    )  # fmt: skip
    assert presented["ok"] is False and f"grant {gid} revoked at" in presented["detail"], presented
    denied = await _rows(net, "county", "fabric.serve", result="denied")
    assert denied and f"grant {gid} revoked at" in denied[0]["detail"]["reason"], denied
    for node in ("city", "county"):
        revokes = await _rows(net, node, "grant.revoke")
        assert [(r["detail"]["grant"], r["detail"]["by"]) for r in revokes] == [(gid, "admin-prov")]

    # 4. A decision forged at Hangzhou for the county's camera: refused at the county.
    forged = dict(g, id="G0123456789ab", decider_node=CITY, decider_scope=CITY_ORG)
    forged |= {"decided_by": "admin-city", "version": 2}
    answer = await _probe(
        net, "city", COUNTY, "grants", {"op": "sync", "grant": forged, "from": CITY}
    )
    assert answer["ok"] is False and f"node {CITY} is not above node {COUNTY}" in answer["detail"]
    refused = await _rows(net, "county", "grant.refuse")
    assert [(r["result"], r["detail"]["grant"]) for r in refused] == [("denied", "G0123456789ab")]
    assert f"node {CITY} is not above" in refused[0]["detail"]["reason"]
    assert (await net.request("county", "GET", "/api/grants/G0123456789ab")).status_code == 404
