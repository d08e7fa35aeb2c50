"""Conferences with venues at other nodes (issue 6 item 4 and 6), the host's side: venues from
the catalogue, their node's reports (``ConferenceService.on_rpc``, what arrives over the bus as
``vmesh.<host>.rpc.conference``) making them joined, the layout each gets back (nobody hears
itself; where each source publishes), and a venue whose node stops reporting shown unreachable
until it reports again; a venue node's content; the host pushing a chair's roll call to a venue's
node over a real bus (nats-server). SQLite and PostgreSQL (the ``ctx`` fixture)."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, select

from factories import add_entry, add_region, add_user, bearer
from peers.nats_server import local_nats
from vmesh.conference.api import service_of
from vmesh.conference.models import ConferenceRow
from vmesh.conference.service import REMOTE_STALE
from vmesh.errors import Forbidden, InvalidInput, NotFound
from vmesh.federation.bus import Bus
from vmesh.federation.models import CatalogueEntry
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

PROVINCE = "33000000002166000001"
MAIN = "33000000004000000001"
CITY_NODE, COUNTY_NODE = "33030000002006000021", "33032800002006000021"
CITY_ROOM, COUNTY_ROOM = "33030000004000000001", "33032800004000000001"
COUNTY_CAMERA = "33032800001320000001"


@pytest.fixture
async def site(ctx: NodeContext) -> dict[str, str]:
    now = datetime.now(UTC)
    async with ctx.db.transaction() as s:
        await add_region(s, PROVINCE, "浙江省", "province")
        await add_entry(s, MAIN, "省主会场", "conference_terminal", parent=PROVINCE)
        for code, node, kind, name in (
            (CITY_ROOM, CITY_NODE, "conference_terminal", "温州市分会场"),
            (COUNTY_ROOM, COUNTY_NODE, "conference_terminal", "文成县分会场"),
            (COUNTY_CAMERA, COUNTY_NODE, "camera", "文成路口"),
        ):
            s.add(
                CatalogueEntry(
                    code=code, origin_node=node, kind=kind, name=name, status="online",
                    version=1, changed_at=now, applied_at=now,
                )
            )  # fmt: skip
    return {"chair": await add_user(ctx, "chair1", ["chair"], PROVINCE)}


BODY = {"title": "三级会议", "main": MAIN, "venues": [CITY_ROOM, COUNTY_ROOM], "chairs": ["chair1"]}


async def test_venues_of_other_nodes_report_join_hear_the_roll_call_and_go_unreachable(
    client: httpx.AsyncClient, ctx: NodeContext, site: dict[str, str]
) -> None:
    # a camera of the catalogue is no venue: refused naming it, nothing written
    bad = BODY | {"venues": [CITY_ROOM, COUNTY_CAMERA]}
    r = await client.post("/api/conferences", json=bad, headers=bearer(site["chair"]))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "venues[1]", r.text
    async with ctx.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ConferenceRow)) == 0

    r = await client.post("/api/conferences", json=BODY, headers=bearer(site["chair"]))
    assert r.status_code == 201, r.text
    conf = r.json()["id"]
    svc = service_of(ctx)
    lc = await svc.live(conf)
    now = [1000.0]
    lc.clock = lambda: now[0]

    def status() -> dict[str, str]:
        return {v["code"]: v["status"] for v in lc.snapshot()["venues"]}

    def report(venue: str, node: str, live: bool = True) -> dict:
        return {"op": "venue", "conference": conf, "venue": venue, "node": node, "live": live}

    assert status()[COUNTY_ROOM] == "absent"
    await svc.on_rpc(report(CITY_ROOM, CITY_NODE))
    county = await svc.on_rpc(report(COUNTY_ROOM, COUNTY_NODE) | {"level": 0.4})
    assert status() == {MAIN: "absent", CITY_ROOM: "joined", COUNTY_ROOM: "joined"}
    assert {v["code"]: v["node"] for v in lc.snapshot()["venues"]}[COUNTY_ROOM] == COUNTY_NODE
    assert county["venue"] == COUNTY_ROOM

    # roll call of the county: the city hears it and is told where it publishes; the county not
    r = await client.post(
        f"/api/conferences/{conf}/actions",
        json={"action": "roll_call", "venue": COUNTY_ROOM},
        headers=bearer(site["chair"]),
    )
    assert r.status_code == 200, r.text
    city = await svc.on_rpc(report(CITY_ROOM, CITY_NODE))
    county = await svc.on_rpc(report(COUNTY_ROOM, COUNTY_NODE))
    assert city["featured"] == COUNTY_ROOM and city["video"][0]["code"] == COUNTY_ROOM
    assert COUNTY_ROOM in [a["code"] for a in city["audio"]]
    assert city["nodes"][COUNTY_ROOM] == COUNTY_NODE
    assert COUNTY_ROOM not in [a["code"] for a in county["audio"]]
    assert COUNTY_ROOM not in [v["code"] for v in county["video"]]

    # the county shares its screen there (双流): the city's content tile is the county's content,
    # taken from the county's node; the county gets no content tile of its own; it stops: gone
    await svc.on_rpc(report(COUNTY_ROOM, COUNTY_NODE) | {"content": True})
    city = await svc.on_rpc(report(CITY_ROOM, CITY_NODE))
    assert city["content"]["code"] == f"{COUNTY_ROOM}-content", city["content"]
    assert city["content"]["name"] == "文成县分会场 双流"
    assert city["nodes"][f"{COUNTY_ROOM}-content"] == COUNTY_NODE
    assert lc.layout_of(MAIN)["content"]["code"] == f"{COUNTY_ROOM}-content"
    assert {v["code"]: v["content"] for v in lc.snapshot()["venues"]}[COUNTY_ROOM] is True
    county = await svc.on_rpc(report(COUNTY_ROOM, COUNTY_NODE) | {"content": True})
    assert county["content"] is None
    with pytest.raises(InvalidInput) as e:
        await svc.on_rpc(report(COUNTY_ROOM, COUNTY_NODE) | {"content": "yes"})
    assert e.value.errors[0].field == "content"
    await svc.on_rpc(report(COUNTY_ROOM, COUNTY_NODE))
    assert (await svc.on_rpc(report(CITY_ROOM, CITY_NODE)))["content"] is None

    # the county's node stops reporting (a cut link): unreachable, then back with its report
    now[0] += REMOTE_STALE + 1
    await svc.on_rpc(report(CITY_ROOM, CITY_NODE))
    assert status()[COUNTY_ROOM] == "unreachable" and status()[CITY_ROOM] == "joined"
    await svc.on_rpc(report(COUNTY_ROOM, COUNTY_NODE))
    assert status()[COUNTY_ROOM] == "joined"
    # its page closed at the county: dropped, not unreachable
    await svc.on_rpc(report(COUNTY_ROOM, COUNTY_NODE, live=False))
    await lc.sync()
    assert status()[COUNTY_ROOM] == "dropped"

    # reports that are wrong are refused naming what is wrong
    with pytest.raises(Forbidden, match=COUNTY_NODE):
        await svc.on_rpc(report(COUNTY_ROOM, CITY_NODE))
    with pytest.raises(InvalidInput) as e:
        await svc.on_rpc(report(MAIN, PROVINCE))
    assert e.value.errors[0].field == "venue"
    with pytest.raises(InvalidInput) as e:
        await svc.on_rpc(report(CITY_ROOM, CITY_NODE) | {"level": 7})
    assert e.value.errors[0].field == "level"
    await svc.stop()


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs nats-server")
async def test_a_chairs_roll_call_is_pushed_to_the_venues_node_at_once(
    client: httpx.AsyncClient, ctx: NodeContext, site: dict[str, str]
) -> None:
    """The host tells a venue's node its new layout over the bus as soon as the chair acts (a
    roll call need not wait for the node's next report); a newer plan has a newer version."""
    r = await client.post("/api/conferences", json=BODY, headers=bearer(site["chair"]))
    conf = r.json()["id"]
    svc = service_of(ctx)
    pushed: asyncio.Queue[dict] = asyncio.Queue()

    async def city_node(body: dict) -> dict:  # the city node's conference service, as the bus
        await pushed.put(body)  # delivers it; its relay is tests/e2e/test_conference_tiers_live
        return {"applied": True}

    async with local_nats() as url:
        host_bus = await Bus.connect(url, PROVINCE)
        city_bus = await Bus.connect(url, CITY_NODE)
        try:
            await city_bus.serve("conference", city_node)
            svc.bus = host_bus
            lc = await svc.live(conf)
            report = {"op": "venue", "conference": conf, "node": CITY_NODE, "live": True}
            first = await svc.on_rpc(report | {"venue": CITY_ROOM})
            await svc.on_rpc(report | {"venue": COUNTY_ROOM, "node": COUNTY_NODE})
            r = await client.post(
                f"/api/conferences/{conf}/actions",
                json={"action": "roll_call", "venue": COUNTY_ROOM},
                headers=bearer(site["chair"]),
            )
            assert r.status_code == 200, r.text
            while True:  # no report since: what arrives is the host's push
                body = await asyncio.wait_for(pushed.get(), 10)
                if body["layout"]["featured"] == COUNTY_ROOM:
                    break
            assert (body["op"], body["host"], body["conference"], body["venue"]) == (
                "layout", lc.info.host_node, conf, CITY_ROOM,
            )  # fmt: skip
            assert body["layout"]["nodes"][COUNTY_ROOM] == COUNTY_NODE
            assert body["layout"]["version"] > first["version"]
        finally:
            await host_bus.close()
            await city_bus.close()
    # a push for a page this node does not have, or a malformed one: refused naming it
    with pytest.raises(NotFound):
        await svc.on_rpc({"op": "layout", "host": PROVINCE, "conference": conf,
                          "venue": CITY_ROOM, "layout": {"version": 1}})  # fmt: skip
    with pytest.raises(InvalidInput) as e:
        await svc.on_rpc({"op": "layout", "host": PROVINCE, "conference": conf, "layout": []})
    assert e.value.errors[0].field == "layout"
    with pytest.raises(InvalidInput) as e:
        await svc.on_rpc({"op": "push", "conference": conf})
    assert e.value.errors[0].field == "op"
    await svc.stop()
