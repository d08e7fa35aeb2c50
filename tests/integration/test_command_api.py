"""Command API over SQLite and PostgreSQL: a commander opens an incident (refusals name the
field, write nothing, and are audited), nearby cameras are suggested by distance, actions become
log entries with who and when, a field terminal joins and moves, officials are convened through
the conference service, the timeline exports as HTML and PDF, entries copied from another node
apply exactly once, alarms open incidents."""

from __future__ import annotations

import io

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from factories import add_entry, add_region, add_user, bearer
from vmesh.command.api import open_from_alarm, service_of
from vmesh.command.models import IncidentRow, LogRow
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

COUNTY = "33010600002166000001"
TOWN = "33010600102166000001"
ROOM = "33010600004000000001"
TOWN_ROOM = "33010600104000000001"
NEAR = ["33010600001320000001", "33010600001320000002"]
FAR = "33010600001320000003"
PHONE = "33010600001380000001"
POINT = {"lat": 30.2500, "lon": 120.1300}


@pytest.fixture
async def site(ctx: NodeContext) -> dict[str, str]:
    async with ctx.db.transaction() as s:
        await add_region(s, COUNTY, "西湖区", "county")
        await add_region(s, TOWN, "转塘街道", "township", COUNTY)
        await add_entry(s, ROOM, "西湖区指挥中心", "conference_terminal", parent=COUNTY)
        await add_entry(s, TOWN_ROOM, "转塘分会场", "conference_terminal", parent=TOWN)
        for i, (code, d) in enumerate([(NEAR[0], 0.004), (NEAR[1], 0.02), (FAR, 0.3)]):
            e = await add_entry(s, code, f"摄像机{i}", "camera", parent=COUNTY)
            e.lat, e.lon = POINT["lat"] + d, POINT["lon"]
        await add_entry(s, PHONE, "单兵1", "field_terminal", parent=TOWN)
    return {
        "cmdr": await add_user(ctx, "cmdr", ["commander", "chair"], COUNTY),
        "viewer": await add_user(ctx, "viewer1", ["viewer"], COUNTY),
        "field": await add_user(ctx, "field1", ["operator"], TOWN),
        "admin": await add_user(ctx, "admin1", ["admin"], COUNTY),
    }


OPEN = {"type": "flood", "title": "转塘内涝", "severity": "III", **POINT}


async def count(ctx: NodeContext, model: type) -> int:
    async with ctx.db.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_bad_input_and_wrong_roles_are_refused_and_write_nothing(
    client: httpx.AsyncClient, ctx: NodeContext, site: dict[str, str]
) -> None:
    r = await client.post("/api/command/incidents", json=OPEN, headers=bearer(site["viewer"]))
    assert r.status_code == 403
    bad = {**OPEN, "severity": "V", "lat": 95}
    r = await client.post("/api/command/incidents", json=bad, headers=bearer(site["cmdr"]))
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"severity", "lat"}
    assert await count(ctx, IncidentRow) == 0 and await count(ctx, LogRow) == 0
    r = await client.get("/api/audit?action=command.open", headers=bearer(site["admin"]))
    assert [a["result"] for a in r.json()["items"]] == ["refused"]


async def test_a_room_from_open_to_export(
    client: httpx.AsyncClient, ctx: NodeContext, site: dict[str, str]
) -> None:
    h = bearer(site["cmdr"])
    r = await client.post("/api/command/incidents", json=OPEN, headers=h)
    assert r.status_code == 201, r.text
    inc = r.json()
    iid = inc["id"]
    assert inc["host"] == ctx.config.node.code and inc["reachable"] is None

    r = await client.get(f"/api/command/incidents/{iid}/nearby?km=3", headers=h)
    assert [x["code"] for x in r.json()] == NEAR  # nearest first, the far one left out
    assert r.json()[0]["distance_km"] < r.json()[1]["distance_km"]

    for code in NEAR:
        r = await client.post(
            f"/api/command/incidents/{iid}/actions",
            json={"action": "feed_on", "code": code},
            headers=h,
        )
        assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/command/incidents/{iid}/actions",
        json={"action": "feed_off", "code": NEAR[0]},
        headers=h,
    )
    assert [f["code"] for f in r.json()["feeds"]] == [NEAR[1]]

    # A field terminal in the field user's scope joins and moves; the room's incident shows it.
    f = bearer(site["field"])
    r = await client.post(f"/api/command/incidents/{iid}/join", json={"code": NEAR[0]}, headers=h)
    assert r.status_code == 422 and "field_terminal" in r.json()["errors"][0]["reason"]
    r = await client.post(f"/api/command/incidents/{iid}/join", json={"code": PHONE}, headers=f)
    assert r.status_code == 200, r.text
    for lat in (30.251, 30.252):
        r = await client.post(
            f"/api/command/incidents/{iid}/position",
            json={"code": PHONE, "lat": lat, "lon": 120.13},
            headers=f,
        )
        assert r.status_code == 200, r.text
    r = await client.get(f"/api/command/incidents/{iid}", headers=h)
    unit = r.json()["units"][0]
    assert (unit["code"], unit["lat"]) == (PHONE, 30.252)
    assert any(
        x["kind"] == "field_unit"
        for x in (await client.get(f"/api/command/incidents/{iid}/nearby", headers=h)).json()
    )

    # Convening goes through the conference service: a bad venue is refused by it, nothing logged.
    n = len(r.json()["log"])
    r = await client.post(
        f"/api/command/incidents/{iid}/convene", json={"main": ROOM, "venues": [NEAR[1]]}, headers=h
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "venues[0]"
    r = await client.post(
        f"/api/command/incidents/{iid}/convene",
        json={"main": ROOM, "venues": [TOWN_ROOM]},
        headers=h,
    )
    assert r.status_code == 200, r.text
    conf = r.json()["conference"]
    r = await client.get(f"/api/conferences/{conf}", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "active"

    # Pushing a feed to a person: it is in their inbox.
    r = await client.post(
        f"/api/command/incidents/{iid}/actions",
        json={"action": "push", "code": NEAR[1], "to_kind": "user", "to": "viewer1"},
        headers=h,
    )
    assert r.status_code == 200
    r = await client.get("/api/command/inbox", headers=bearer(site["viewer"]))
    assert [(x["code"], x["from"]) for x in r.json()] == [(NEAR[1], "cmdr")]

    r = await client.get(f"/api/command/incidents/{iid}", headers=h)
    log = r.json()["log"]
    assert len(log) == n + 2
    assert [e["action"] for e in log] == [
        "open",
        "feed_on",
        "feed_on",
        "feed_off",
        "unit_join",
        "position",
        "position",
        "convene",
        "push",
    ]
    assert {e["actor"] for e in log} == {"cmdr", "field1"}
    r = await client.get("/api/audit?action=command.feed_on", headers=bearer(site["admin"]))
    assert len(r.json()["items"]) == 2

    r = await client.get(f"/api/command/incidents/{iid}/export.html", headers=h)
    assert r.status_code == 200
    assert r.text.count('<tr class="action">') == len(log)
    assert "单兵1" in r.text and NEAR[0] in r.text and f"conference {conf}" in r.text
    r = await client.get(f"/api/command/incidents/{iid}/export.pdf", headers=h)
    assert r.headers["content-type"] == "application/pdf"
    pages = PdfReader(io.BytesIO(r.content)).pages
    text = "".join(p.extract_text() for p in pages).replace("\x00", "")
    assert "转塘内涝" in text and "feed_off" in text and "单兵1" in text


async def test_copied_entries_apply_once_and_alarms_open_incidents(
    client: httpx.AsyncClient, ctx: NodeContext, site: dict[str, str]
) -> None:
    iid = await open_from_alarm(
        ctx,
        source="gb28181:34020000001320000001",
        type="fire",
        title="烟感报警",
        severity="IV",
        **POINT,
    )
    store = service_of(ctx).store
    inc, entries = await store.get(iid)
    assert inc.opened_by == "alarm:gb28181:34020000001320000001"
    assert await store.apply(entries) == 0  # its own entries again: nothing new
    r = await client.get("/api/command/incidents", headers=bearer(site["viewer"]))
    assert [x["id"] for x in r.json()["items"]] == [iid]


async def test_map_settings_and_offline_boundaries(
    client: httpx.AsyncClient, site: dict[str, str]
) -> None:
    h = bearer(site["viewer"])
    r = await client.get("/api/command/map", headers=h)
    assert r.json()["leaflet"] is True and r.json()["tile_url"] == ""
    r = await client.get("/api/command/boundaries/330106", headers=h)
    assert r.status_code == 200 and r.json()["type"] in ("MultiPolygon", "Polygon")
    r = await client.get("/api/command/boundaries/33x", headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "adcode"
    r = await client.get("/vendor/leaflet/leaflet.js")
    assert r.status_code == 200


async def test_a_parent_reopens_a_room_from_a_childs_replicated_log(
    client: httpx.AsyncClient, ctx: NodeContext, site: dict[str, str]
) -> None:
    from datetime import UTC, datetime

    from vmesh.command import core

    child = "33010600102006000001"
    detail = core.check(None, "open", OPEN, here=child)
    opened = core.Entry("a" * 32, "b" * 32, datetime.now(UTC), child, "town_cmdr", "open", detail)
    store = service_of(ctx).store
    assert await store.apply([opened]) == 1
    h = bearer(site["cmdr"])
    r = await client.get(f"/api/command/incidents/{opened.incident}", headers=h)
    assert (r.json()["host"], r.json()["reachable"]) == (child, False)  # no link to it here
    r = await client.post(
        f"/api/command/incidents/{opened.incident}/actions",
        json={"action": "severity", "severity": "I"},
        headers=h,
    )
    assert r.status_code == 409 and child in r.json()["detail"]
    # Taking the room over asks its host, which needs the federation: refused, audited.
    r = await client.post(f"/api/command/incidents/{opened.incident}/take_over", json={}, headers=h)
    assert r.status_code == 409 and "federation" in r.json()["detail"]
    rows = await client.get("/api/audit?action=command.take_over", headers=bearer(site["admin"]))
    assert [x["result"] for x in rows.json()["items"]] == ["refused"]
    r = await client.post(
        f"/api/command/incidents/{opened.incident}/actions",
        json={"action": "reopen", "reason": "乡镇节点失联"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["host"], r.json()["hosted_here"]) == (ctx.config.node.code, True)
    r = await client.post(
        f"/api/command/incidents/{opened.incident}/actions",
        json={"action": "note", "text": "县接管"},
        headers=h,
    )
    assert r.status_code == 200
    r = await client.get(f"/api/command/incidents/{opened.incident}", headers=h)
    log = r.json()["log"]
    assert [(e["action"], e["node"]) for e in log] == [
        ("open", child),
        ("reopen", ctx.config.node.code),
        ("note", ctx.config.node.code),
    ]
