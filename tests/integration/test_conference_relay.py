"""A venue node relaying a conference hosted elsewhere (``vmesh.conference.relay``), the parts a
browser does not show: which venue page this node accepts (its own terminal, in the user's scope,
a venue role), what it refuses to relay (chair actions, chair pages), a hand raised at a venue
node arriving at the host (``hand`` in the report, audited as the node), and bad reports refused
naming the field. The three-tier media path is ``tests/e2e/test_conference_tiers_live.py``.
SQLite and PostgreSQL (the ``ctx`` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from factories import add_entry, add_region, add_user, bearer
from vmesh.auth.principal import Principal
from vmesh.conference import core
from vmesh.conference.api import service_of
from vmesh.conference.relay import relay
from vmesh.errors import Conflict, Forbidden, InvalidInput
from vmesh.federation.models import CatalogueEntry
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

PROVINCE, CITY_REGION = "33000000002166000001", "33030000002166000001"
MAIN, ROOM, CAMERA = "33000000004000000001", "33000000004000000002", "33000000001320000001"
OTHER_HOST = "33000000002006000099"
CITY_NODE, CITY_ROOM = "33030000002006000021", "33030000004000000001"


@pytest.fixture
async def site(ctx: NodeContext) -> dict[str, Principal]:
    async with ctx.db.transaction() as s:
        prov = await add_region(s, PROVINCE, "浙江省", "province")
        city = await add_region(s, CITY_REGION, "温州市", "city", parent=PROVINCE)
        await add_entry(s, MAIN, "省主会场", "conference_terminal", parent=PROVINCE)
        await add_entry(s, ROOM, "省会议室", "service_room", parent=PROVINCE)
        await add_entry(s, CAMERA, "省府门口", "camera", parent=PROVINCE)
    return {
        "admin": Principal(1, "a", frozenset({"admin"}), PROVINCE, prov.path),
        "viewer": Principal(2, "v", frozenset({"viewer"}), PROVINCE, prov.path),
        "city": Principal(3, "c", frozenset({"admin"}), CITY_REGION, city.path),
    }


async def test_a_relayed_venue_page_is_this_nodes_terminal_and_cannot_steer(
    ctx: NodeContext, site: dict[str, Principal]
) -> None:
    r = relay(ctx, OTHER_HOST, 7)
    assert service_of(ctx).relays[(OTHER_HOST, 7)] is r
    ep = await r.endpoint(site["admin"], ROOM)
    assert (ep.code, ep.kind) == (ROOM, "service_room")
    refusals = [
        (site["admin"], "33000000004000000077", "no venue"),  # not at this node
        (site["admin"], CAMERA, "is a camera, not a venue"),
        (site["city"], MAIN, "no venue"),  # outside the user's scope
        (site["admin"], 12, "20-digit"),
    ]
    for who, code, why in refusals:
        with pytest.raises(InvalidInput) as e:
            await r.endpoint(who, code)
        assert e.value.errors[0].field == "code" and why in e.value.errors[0].reason
    with pytest.raises(Forbidden, match="roles"):
        await r.endpoint(site["viewer"], MAIN)
    # chairs steer at the host; a venue page here may only raise or lower its hand
    with pytest.raises(Forbidden, match=OTHER_HOST):
        r.check_chair(site["admin"])
    with pytest.raises(Forbidden, match=OTHER_HOST):
        await r.act(site["admin"], "roll_call", core.RollCall(MAIN), MAIN)
    await r.act(site["admin"], "hand", core.RaiseHand(MAIN), MAIN)
    assert r.hands == {MAIN: True}
    # this node runs without federation: a report cannot be sent, and says why
    with pytest.raises(Conflict, match="federation"):
        await r._report(MAIN, live=True)
    await r.stop()


async def test_a_hand_raised_at_a_venue_node_reaches_the_host(
    client: httpx.AsyncClient, ctx: NodeContext, site: dict[str, Principal]
) -> None:
    now = datetime.now(UTC)
    async with ctx.db.transaction() as s:
        s.add(
            CatalogueEntry(
                code=CITY_ROOM, origin_node=CITY_NODE, kind="conference_terminal",
                name="温州市分会场", status="online", version=1, changed_at=now, applied_at=now,
            )
        )  # fmt: skip
    chair = await add_user(ctx, "chair1", ["chair"], PROVINCE)
    auditor = await add_user(ctx, "admin1", ["admin"], PROVINCE)
    body = {"title": "会", "main": MAIN, "venues": [CITY_ROOM], "chairs": ["chair1"]}
    r = await client.post("/api/conferences", json=body, headers=bearer(chair))
    assert r.status_code == 201, r.text
    conf = r.json()["id"]
    svc = service_of(ctx)
    report = {"op": "venue", "conference": conf, "venue": CITY_ROOM, "node": CITY_NODE}

    with pytest.raises(InvalidInput) as e:
        await svc.on_rpc(report | {"live": True, "hand": "yes"})
    assert e.value.errors[0].field == "hand"
    assert (await svc.on_rpc(report | {"live": True}))["hand"] is False

    layout = await svc.on_rpc(report | {"live": True, "hand": True})
    assert layout["hand"] is True  # the answer the venue page shows
    lc = await svc.live(conf)
    assert lc.floor.hands == [CITY_ROOM]
    rows = (
        await client.get(
            "/api/audit", params={"action": "conference.hand"}, headers=bearer(auditor)
        )
    ).json()["items"]
    assert [(x["username"], x["target_code"]) for x in rows] == [(f"node:{CITY_NODE}", CITY_ROOM)]
    # the chair approves: the venue is roll-called, its hand down, in the next answer
    r = await client.post(
        f"/api/conferences/{conf}/actions",
        json={"action": "approve", "venue": CITY_ROOM},
        headers=bearer(chair),
    )
    assert r.status_code == 200, r.text
    layout = await svc.on_rpc(report | {"live": True})
    assert layout["hand"] is False and layout["mode"] == "roll_call"
    await svc.stop()
