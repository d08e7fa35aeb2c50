"""Grants travelling between real nodes (``netns.vnet``: three ``vmesh node run`` with
nats-server, in network namespaces): the province with two children, the city of Hangzhou and the
county of Wencheng (not under Hangzhou).

1. the city applies for the county's org subtree: the application goes over NATS to the county
   (located through the province's catalogue) and is stored at both ends;
2. the county↔province link is cut: a new application from the city fails naming the county as
   unreachable and leaves nothing behind; the county approves anyway (its own decision, written
   to its outbox);
3. the link returns: the approval reaches the city and the province, once each (idempotent by
   grant id and version, although it travels county→city, county→province and city→province).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from netns.fednodes import wait_until
from netns.vnet import (
    HANGZHOU_SPEC,
    NEEDS_NETWORK,
    PROV_SPEC,
    WENCHENG_SPEC,
    Net,
    Topology,
    network_fixture,
)

pytestmark = [pytest.mark.integration, *NEEDS_NETWORK]

TOPOLOGY = Topology(
    {
        "prov": PROV_SPEC,
        "city": HANGZHOU_SPEC,
        "county": replace(WENCHENG_SPEC, parents=("prov",)),
    }
)
COUNTY = TOPOLOGY.nodes["county"].code
COUNTY_ORG = TOPOLOGY.nodes["county"].org
PURPOSE = "防汛应急值守"


net = network_fixture(TOPOLOGY)


def _application() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "grantee": "unit",
        "org": COUNTY_ORG,
        "purpose": PURPOSE,
        "from": now.isoformat(),
        "until": (now + timedelta(days=1)).isoformat(),
    }


async def test_a_decision_taken_during_a_cut_arrives_when_the_link_returns(net: Net) -> None:
    async def located() -> bool:
        page = await net.get("prov", "/api/network/catalogue", code_prefix=COUNTY_ORG)
        return page["total"] == 1

    await wait_until(located, "the county's org unit in the province's catalogue", within=60)

    # 1. Applied at the city, stored at the county too.
    g = await net.send("city", "POST", "/api/grants", _application())
    gid = g["id"]
    assert (g["owner_node"], g["state"]) == (COUNTY, "applied")
    at_county = await net.get("county", f"/api/grants/{gid}")
    assert (at_county["purpose"], at_county["version"]) == (PURPOSE, 1)

    # 2. The county is cut off from the province (and so from the city).
    net.blackhole("county", "prov", "add")
    try:

        async def refused() -> Any:
            r = await net.request("city", "POST", "/api/grants", _application())
            return r if r.status_code == 504 else None

        r = await wait_until(refused, "an application refused while the county is cut off")
        assert COUNTY in r.json()["detail"] and "unreachable" in r.json()["detail"], r.text
        mine = await net.get("city", "/api/grants", view="all")
        assert [x["id"] for x in mine["items"]] == [gid]  # nothing half-written

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

    # 3. Delivered after the cut, once everywhere.
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
        assert [(r["detail"]["grant"], r["detail"]["purpose"]) for r in rows] == [(gid, PURPOSE)]
        assert rows[0]["detail"]["by"] == "admin-county"
