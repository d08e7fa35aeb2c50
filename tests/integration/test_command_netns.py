"""Incident logs flowing up between real nodes (``netns.vnet``: a city and its county, each a
``vmesh node run`` with nats-server, in network namespaces).

1. the county opens an incident and acts in its room; the city's copy of the log follows;
2. the county↔city link is cut: the county room keeps working (actions recorded locally), the
   city shows the incident as unreachable;
3. the link returns: the city's copy has every county entry exactly once (same ids, no double);
4. the county hands the room up: the city hosts it and acts in it, the county is refused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from netns.fednodes import wait_until
from netns.vnet import HANGZHOU_SPEC, NEEDS_NETWORK, Net, NodeSpec, Topology, network_fixture

pytestmark = [pytest.mark.integration, *NEEDS_NETWORK]

TOPOLOGY = Topology(
    {
        "city": replace(HANGZHOU_SPEC, parents=()),
        "county": NodeSpec(
            "33010600002006000001", "county", "33010600002166000001", "西湖区", ("city",)
        ),
    },
    overrides={"federation": {"link_check_seconds": 1, "announce_seconds": 1}},
)
CAM = "33010600001320000001"
OPEN = {"type": "flood", "title": "西湖区内涝", "severity": "III", "lat": 30.25, "lon": 120.13}


net = network_fixture(TOPOLOGY)


async def log_at(net: Net, node: str, iid: str) -> list[dict[str, Any]]:
    return list((await net.get(node, f"/api/command/incidents/{iid}"))["log"])


async def note(net: Net, iid: str, text: str) -> None:
    await net.send(
        "county", "POST", f"/api/command/incidents/{iid}/actions", {"action": "note", "text": text}
    )


async def test_the_county_room_survives_a_cut_and_the_city_log_catches_up(net: Net) -> None:
    inc = await net.send("county", "POST", "/api/command/incidents", OPEN)
    iid = inc["id"]
    await net.send(
        "county",
        "POST",
        f"/api/command/incidents/{iid}/actions",
        {"action": "feed_on", "code": CAM},
    )

    async def copied(n: int) -> bool:
        return len(await log_at(net, "city", iid)) == n

    await wait_until(lambda: copied(2), "the city's copy of the first two entries", within=60)

    net.blackhole("county", "city", "add")
    try:

        async def unreachable() -> bool:
            page = await net.get("city", "/api/command/incidents")
            return [x["reachable"] for x in page["items"] if x["id"] == iid] == [False]

        await wait_until(unreachable, "the city showing the incident unreachable", within=60)
        for i in range(5):
            await note(net, iid, f"断网期间记录 {i}")
        await net.send(
            "county",
            "POST",
            f"/api/command/incidents/{iid}/actions",
            {"action": "feed_off", "code": CAM},
        )
        assert len(await log_at(net, "county", iid)) == 8  # the room works alone
        assert len(await log_at(net, "city", iid)) == 2
    finally:
        net.blackhole("county", "city", "del")

    await wait_until(lambda: copied(8), "the city's copy catching up", within=90)
    county_log, city_log = await log_at(net, "county", iid), await log_at(net, "city", iid)
    assert Counter(e["id"] for e in city_log) == Counter(e["id"] for e in county_log)
    assert max(Counter(e["id"] for e in city_log).values()) == 1
    assert [e["action"] for e in city_log] == [e["action"] for e in county_log]

    async def reachable() -> bool:
        page = await net.get("city", "/api/command/incidents")
        return [x["reachable"] for x in page["items"] if x["id"] == iid] == [True]

    await wait_until(reachable, "the city showing the incident reachable again", within=60)

    # Hand the room up: the city hosts it; the county is refused and says where to act.
    up = await net.send(
        "county",
        "POST",
        f"/api/command/incidents/{iid}/hand_over",
        {"direction": "up", "reason": "事态升级"},
    )
    assert up["host"] == net.code("city")
    at_city = await net.get("city", f"/api/command/incidents/{iid}")
    assert at_city["hosted_here"] is True
    await net.send(
        "city",
        "POST",
        f"/api/command/incidents/{iid}/actions",
        {"action": "severity", "severity": "II"},
    )
    r = await net.request(
        "county", "POST", f"/api/command/incidents/{iid}/actions", {"action": "note", "text": "x"}
    )
    assert r.status_code == 409 and net.code("city") in r.json()["detail"]
