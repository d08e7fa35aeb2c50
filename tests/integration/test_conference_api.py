"""Conference HTTP API over SQLite and PostgreSQL: creation (and every refusal, with nothing
written), who may see and steer a conference, chair actions changing the floor and audited,
attendance, ending. No media here: the floor runs without it; routes are the browser tests'."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from factories import add_entry, add_region, add_user, bearer
from vmesh.conference.models import ConferenceRow
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

PROVINCE = "33000000002166000001"
CITY = "33010000002166000001"
COUNTY = "33010600002166000001"
WENCHENG = "33032800002166000001"
MAIN = "33000000004000000001"  # conference terminals (type 400)
CITY_ROOM = "33010000004000000001"
COUNTY_ROOM = "33010600004000000001"
WENCHENG_ROOM = "33032800004000000001"
VILLAGE_KIOSK = "33010600004010000001"  # a service room (type 401)
CAMERA = "33010600001320000001"


@pytest.fixture
async def site(ctx: NodeContext) -> dict[str, str]:
    async with ctx.db.transaction() as s:
        await add_region(s, PROVINCE, "浙江省", "province")
        await add_region(s, CITY, "杭州市", "city", PROVINCE)
        await add_region(s, COUNTY, "西湖区", "county", CITY)
        await add_region(s, WENCHENG, "文成县", "county", PROVINCE)
        await add_entry(s, MAIN, "省主会场", "conference_terminal", parent=PROVINCE)
        await add_entry(s, CITY_ROOM, "杭州市分会场", "conference_terminal", parent=CITY)
        await add_entry(s, COUNTY_ROOM, "西湖区分会场", "conference_terminal", parent=COUNTY)
        await add_entry(s, WENCHENG_ROOM, "文成县分会场", "conference_terminal", parent=WENCHENG)
        await add_entry(s, VILLAGE_KIOSK, "龙坞村服务室", "service_room", parent=COUNTY)
        await add_entry(s, CAMERA, "文三路口", "camera", parent=COUNTY)
    return {
        "chair": await add_user(ctx, "chair1", ["chair"], PROVINCE),
        "chair2": await add_user(ctx, "chair2", ["chair"], PROVINCE),
        "xihu": await add_user(ctx, "xihu_op", ["operator"], COUNTY),
        "wencheng": await add_user(ctx, "wc_op", ["operator"], WENCHENG),
        "admin": await add_user(ctx, "admin1", ["admin"], PROVINCE),
    }


BODY = {
    "title": "全省防汛视频调度会",
    "main": MAIN,
    "venues": [CITY_ROOM, COUNTY_ROOM, VILLAGE_KIOSK],
    "chairs": ["chair1", "chair2"],
}


async def rows(ctx: NodeContext) -> int:
    async with ctx.db.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(ConferenceRow)) or 0)


async def audit(client: httpx.AsyncClient, token: str, action: str) -> list[dict]:
    r = await client.get(f"/api/audit?action={action}", headers=bearer(token))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_a_chair_creates_an_instant_conference_and_it_is_audited(
    client: httpx.AsyncClient, ctx: NodeContext, site: dict[str, str]
) -> None:
    r = await client.post("/api/conferences", json=BODY, headers=bearer(site["chair"]))
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["status"] == "active" and c["main"] == MAIN
    assert [v["code"] for v in c["venues"]] == [MAIN, CITY_ROOM, COUNTY_ROOM, VILLAGE_KIOSK]
    assert [v["role"] for v in c["venues"]][:2] == ["main", "sub"]
    assert c["chairs"] == ["chair1", "chair2"]
    rows_ = await audit(client, site["admin"], "conference.create")
    assert rows_ and rows_[0]["target_code"] == MAIN and rows_[0]["username"] == "chair1"


BAD = [
    ({"title": ""}, "title"),
    ({"main": "123"}, "main"),
    ({"venues": []}, "venues"),
    ({"venues": [CITY_ROOM, CITY_ROOM]}, "venues"),
    ({"venues": [CAMERA]}, "venues[0]"),
    ({"venues": ["33999900004000000001"]}, "venues[0]"),
    ({"chairs": ["nobody"]}, "chairs[0]"),
    ({"chairs": ["xihu_op"]}, "chairs[0]"),
    ({"layout": "5x5"}, "layout"),
]


async def test_bad_conferences_are_refused_naming_the_field_and_nothing_is_written(
    client: httpx.AsyncClient, ctx: NodeContext, site: dict[str, str]
) -> None:
    for change, field in BAD:
        r = await client.post("/api/conferences", json=BODY | change, headers=bearer(site["chair"]))
        assert r.status_code == 422, (change, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]], (change, r.json())
    assert await rows(ctx) == 0


async def test_only_chairs_create_and_venues_out_of_scope_are_refused(
    client: httpx.AsyncClient, ctx: NodeContext, site: dict[str, str]
) -> None:
    r = await client.post("/api/conferences", json=BODY, headers=bearer(site["xihu"]))
    assert r.status_code == 403
    # A chair at the county cannot pick the Wencheng room: it is outside the scope.
    token = await add_user(ctx, "xihu_chair", ["chair"], COUNTY)
    body = {
        "title": "区会",
        "main": COUNTY_ROOM,
        "venues": [WENCHENG_ROOM],
        "chairs": ["xihu_chair"],
    }
    r = await client.post("/api/conferences", json=body, headers=bearer(token))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "venues[0]"
    assert await rows(ctx) == 0


async def test_who_sees_a_conference_and_who_may_steer_it(
    client: httpx.AsyncClient, site: dict[str, str]
) -> None:
    c = (await client.post("/api/conferences", json=BODY, headers=bearer(site["chair"]))).json()
    url = f"/api/conferences/{c['id']}"
    # The county operator has a venue in scope: sees it; Wencheng's has none: 404.
    assert (await client.get(url, headers=bearer(site["xihu"]))).status_code == 200
    assert (await client.get(url, headers=bearer(site["wencheng"]))).status_code == 404
    listed = (await client.get("/api/conferences", headers=bearer(site["wencheng"]))).json()
    assert listed["total"] == 0
    listed = (await client.get("/api/conferences", headers=bearer(site["xihu"]))).json()
    assert [x["id"] for x in listed["items"]] == [c["id"]]
    # A venue's operator may not steer; the refusal is audited.
    r = await client.post(
        f"{url}/actions",
        json={"action": "roll_call", "venue": COUNTY_ROOM},
        headers=bearer(site["xihu"]),
    )
    assert r.status_code == 403
    denied = await audit(client, site["admin"], "conference.control")
    assert denied[0]["result"] == "denied" and denied[0]["username"] == "xihu_op"


async def test_chair_actions_change_the_floor_and_are_audited(
    client: httpx.AsyncClient, site: dict[str, str]
) -> None:
    c = (await client.post("/api/conferences", json=BODY, headers=bearer(site["chair"]))).json()
    url = f"/api/conferences/{c['id']}/actions"
    h = bearer(site["chair"])
    r = await client.post(url, json={"action": "roll_call", "venue": COUNTY_ROOM}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["floor"]["mode"] == "roll_call" and r.json()["floor"]["subject"] == COUNTY_ROOM
    r = await client.post(url, json={"action": "mute", "venue": None}, headers=h)
    assert set(r.json()["floor"]["muted"]) == {CITY_ROOM, COUNTY_ROOM, VILLAGE_KIOSK}
    r = await client.post(url, json={"action": "layout", "layout": "2x2"}, headers=h)
    assert r.json()["floor"]["layout"] == "2x2"
    # The second chair takes over: same conference, same floor.
    r = await client.post(
        url, json={"action": "broadcast", "venue": CITY_ROOM}, headers=bearer(site["chair2"])
    )
    assert r.json()["floor"]["mode"] == "broadcast"
    # Refusals name the field; the floor is unchanged and the refusal audited.
    r = await client.post(url, json={"action": "roll_call", "venue": MAIN}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "venue"
    r = await client.post(
        url, json={"action": "polling", "venues": [CITY_ROOM], "seconds": 0.1}, headers=h
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "seconds"
    r = await client.post(url, json={"action": "approve", "venue": CITY_ROOM}, headers=h)
    assert r.status_code == 422
    r = await client.post(url, json={"action": "fly"}, headers=h)
    assert r.status_code == 422
    state = (await client.get(f"/api/conferences/{c['id']}", headers=h)).json()["live"]
    assert state["floor"]["mode"] == "broadcast" and state["floor"]["subject"] == CITY_ROOM
    rc = await audit(client, site["admin"], "conference.roll_call")
    assert {(x["username"], x["result"], x["target_code"]) for x in rc} == {
        ("chair1", "ok", COUNTY_ROOM),
        ("chair1", "denied", MAIN),
    }
    bc = await audit(client, site["admin"], "conference.broadcast")
    assert bc[0]["username"] == "chair2"


async def test_an_action_that_cannot_be_written_down_is_undone(
    client: httpx.AsyncClient,
    site: dict[str, str],
    ctx: NodeContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The floor is routed before it is saved (a roll call does not wait for the disk); when the
    save fails the floor goes back, the chair gets the error, and no ``ok`` row is written."""
    from vmesh.conference.store import ConferenceStore

    c = (await client.post("/api/conferences", json=BODY, headers=bearer(site["chair"]))).json()
    url = f"/api/conferences/{c['id']}/actions"
    h = bearer(site["chair"])
    r = await client.post(url, json={"action": "broadcast", "venue": CITY_ROOM}, headers=h)
    assert r.status_code == 200, r.text
    saved = ConferenceStore.save_state
    failures = []

    async def disk_full(self: ConferenceStore, conf_id: int, state: dict) -> None:
        if state.get("mode") == "roll_call":  # only the new floor cannot be written
            failures.append(state)
            raise OSError(28, "No space left on device")
        await saved(self, conf_id, state)

    monkeypatch.setattr(ConferenceStore, "save_state", disk_full)
    with pytest.raises(OSError):
        await client.post(url, json={"action": "roll_call", "venue": COUNTY_ROOM}, headers=h)
    assert failures
    monkeypatch.setattr(ConferenceStore, "save_state", saved)
    state = (await client.get(f"/api/conferences/{c['id']}", headers=h)).json()["live"]
    assert state["floor"]["mode"] == "broadcast" and state["floor"]["subject"] == CITY_ROOM
    assert await audit(client, site["admin"], "conference.roll_call") == []
    assert ctx.conferences is not None
    live = ctx.conferences.running[c["id"]]
    assert live.floor.subject == CITY_ROOM and live.plan.mode.value == "broadcast"  # re-planned
    # Once the disk is back, the same roll call goes through.
    r = await client.post(url, json={"action": "roll_call", "venue": COUNTY_ROOM}, headers=h)
    assert r.status_code == 200 and r.json()["floor"]["subject"] == COUNTY_ROOM


async def test_scheduled_conference_starts_and_ends_and_ended_is_final(
    client: httpx.AsyncClient, site: dict[str, str]
) -> None:
    h = bearer(site["chair"])
    body = BODY | {"starts_at": "2099-01-01T08:00:00+08:00"}
    c = (await client.post("/api/conferences", json=body, headers=h)).json()
    assert c["status"] == "scheduled"
    url = f"/api/conferences/{c['id']}"
    r = await client.post(f"{url}/actions", json={"action": "mute"}, headers=h)
    assert r.status_code == 409  # not running yet
    assert (await client.post(f"{url}/start", headers=h)).json()["status"] == "active"
    assert (await client.post(f"{url}/end", headers=h)).json()["status"] == "ended"
    assert (await client.post(f"{url}/start", headers=h)).status_code == 409
    assert (await client.get(f"{url}/attendance", headers=h)).json() == []
    assert [x["result"] for x in await audit(client, site["admin"], "conference.end")] == ["ok"]
