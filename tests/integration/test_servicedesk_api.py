"""The service desk over its HTTP API on SQLite and PostgreSQL: the whole pension-statement case
(without video), bad input refused with nothing half-written, and the queue rules (priority,
first come first served, abandonment and callback, transfer, an agent's page dying mid-call)."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image
from pypdf import PdfReader

from factories import add_entry, add_region, add_user, bearer
from vmesh.audit.models import AuditRecord
from vmesh.node.context import NodeContext
from vmesh.servicedesk.catalogue import SAMPLE
from vmesh.servicedesk.idcard import SAMPLE_CARDS
from vmesh.servicedesk.service import ServiceDesk, Subscriber

pytestmark = pytest.mark.integration

PROVINCE = "33000000002166000001"
COUNTY = "33048300002166000001"  # 桐乡市
TOWN = "33048301002166000001"
VILLAGE = "33048301012166000001"
KIOSK = "33048301014010000001"  # 东安村视频室 (type 401 service room)
KIOSK2 = "33048301014010000002"
SEAT1 = "33048300004010000001"
SEAT2 = "33048300004010000002"
PENSION = "rsj-pension-statement"
DIBAO = "mzj-dibao"


async def _site(ctx: NodeContext) -> dict[str, dict[str, str]]:
    async with ctx.db.transaction() as s:
        await add_region(s, PROVINCE, "浙江省", "province")
        await add_region(s, "33040000002166000001", "嘉兴市", "city", PROVINCE)
        await add_region(s, COUNTY, "桐乡市", "county", "33040000002166000001")
        await add_region(s, TOWN, "梧桐街道", "township", COUNTY)
        await add_region(s, VILLAGE, "东安村", "village", TOWN)
        await add_entry(s, KIOSK, "东安村视频室", "service_room", parent=VILLAGE)
        await add_entry(s, KIOSK2, "东安村二号视频室", "service_room", parent=VILLAGE)
        await add_entry(s, SEAT1, "桐乡市政务服务中心1号窗口", "service_room", parent=COUNTY)
        await add_entry(s, SEAT2, "桐乡市政务服务中心2号窗口", "service_room", parent=COUNTY)
    h = {
        "admin": bearer(await add_user(ctx, "admin", ["admin"], PROVINCE)),
        "kiosk": bearer(await add_user(ctx, "donan", ["operator"], VILLAGE)),
        "a1": bearer(await add_user(ctx, "agent1", ["agent"], COUNTY)),
        "a2": bearer(await add_user(ctx, "agent2", ["agent"], COUNTY)),
    }
    return h


async def _setup(client: httpx.AsyncClient, ctx: NodeContext) -> dict[str, dict[str, str]]:
    h = await _site(ctx)
    r = await client.post(
        "/api/servicedesk/catalogue", content=SAMPLE.read_bytes(), headers=h["admin"]
    )
    assert r.status_code == 200, r.text
    for user, groups, seat in (
        ("agent1", {"social": 1, "civil": 2}, SEAT1),
        ("agent2", {"civil": 1, "social": 2}, SEAT2),
    ):
        r = await client.put(
            f"/api/servicedesk/agents/{user}",
            json={"groups": groups, "seat_code": seat},
            headers=h["admin"],
        )
        assert r.status_code == 200, r.text
    return h


def jpeg(w: int, h: int, color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "JPEG")
    return buf.getvalue()


def png(w: int = 300, h: int = 120) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (w, h), (0, 0, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


async def ok(r: Any, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()


async def _queued(
    client: httpx.AsyncClient, h: dict[str, dict[str, str]], item: str, card: int = 0
) -> dict[str, Any]:
    c = await ok(
        await client.post(
            "/api/servicedesk/cases",
            json={"kiosk_code": KIOSK, "item_code": item},
            headers=h["kiosk"],
        ),
        201,
    )
    sc = SAMPLE_CARDS[card]
    card_doc = {"name": sc.name, "id_number": sc.id_number}
    await ok(
        await client.post(
            f"/api/servicedesk/cases/{c['id']}/identify",
            json={"card": card_doc},
            headers=h["kiosk"],
        )
    )
    return await ok(
        await client.post(f"/api/servicedesk/cases/{c['id']}/enqueue", headers=h["kiosk"])
    )


async def test_the_pension_statement_case_from_ticket_to_rating(
    client: httpx.AsyncClient, ctx: NodeContext
) -> None:
    h = await _setup(client, ctx)
    case = await _queued(client, h, PENSION)
    cid = case["id"]
    assert case["state"] == "queued" and case["position"] == 1
    assert case["number"].startswith("330000") and len(case["number"]) == 20
    assert case["applicant_id"].count("*") == 8  # masked for the kiosk

    # agent1 serves social first: takes the pension case without naming it.
    taken = await ok(await client.post("/api/servicedesk/desk/accept", json={}, headers=h["a1"]))
    assert taken["id"] == cid and taken["state"] == "in_service" and taken["agent_seat"] == SEAT1
    assert taken["applicant_id"] == SAMPLE_CARDS[0].id_number  # whole for the agent

    # Two full-resolution document stills; the first is retried (same upload id): stored once.
    mats = []
    for n, color in enumerate(("white", "yellow")):
        uid = str(uuid.uuid4())
        body = jpeg(2592, 1944, color)
        for _attempt in range(2 if n == 0 else 1):
            m = await ok(
                await client.post(
                    f"/api/servicedesk/cases/{cid}/materials",
                    params={"upload_id": uid, "kind": "document", "name": f"身份证{'正反'[n]}面"},
                    content=body,
                    headers={**h["kiosk"], "Content-Type": "image/jpeg"},
                ),
                201,
            )
        assert (m["width"], m["height"]) == (2592, 1944)
        mats.append(m)
    got = await client.get(mats[1]["url"], headers=h["a1"])
    assert got.status_code == 200 and got.content == jpeg(2592, 1944, "yellow")

    # Not verified yet: no check. Recapture asked, then verified.
    r = await client.post(f"/api/servicedesk/cases/{cid}/check", headers=h["a1"])
    assert r.status_code == 409 and "not verified" in r.json()["detail"]
    await ok(
        await client.post(
            f"/api/servicedesk/materials/{mats[0]['id']}/verify",
            json={"status": "recapture", "note": "反光"},
            headers=h["a1"],
        )
    )
    for m in mats:
        await ok(
            await client.post(
                f"/api/servicedesk/materials/{m['id']}/verify",
                json={"status": "verified"},
                headers=h["a1"],
            )
        )
    await ok(await client.post(f"/api/servicedesk/cases/{cid}/check", headers=h["a1"]))
    await ok(
        await client.post(
            f"/api/servicedesk/cases/{cid}/signature",
            content=png(),
            headers={**h["kiosk"], "Content-Type": "image/png"},
        )
    )
    # The item's form needs its year.
    r = await client.post(
        f"/api/servicedesk/cases/{cid}/submit",
        json={"outcome": "已出具", "form": {}},
        headers=h["a1"],
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "form.year"
    done = await ok(
        await client.post(
            f"/api/servicedesk/cases/{cid}/submit",
            json={"outcome": "已出具养老保险缴费结算单", "form": {"year": "2025"}},
            headers=h["a1"],
        )
    )
    assert done["state"] == "submitted"
    pdf = await client.get(done["result_url"], headers=h["kiosk"])
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(
        PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().replace("\x00", "").split()
    )
    assert "养老保险缴费结算单" in text and case["number"] in text and "2025" in text

    r = await client.post(
        f"/api/servicedesk/cases/{cid}/rating", json={"grade": 6}, headers=h["kiosk"]
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "grade"
    final = await ok(
        await client.post(
            f"/api/servicedesk/cases/{cid}/rating",
            json={"grade": 5, "comment": "很方便"},
            headers=h["kiosk"],
        )
    )
    assert final["state"] == "closed" and final["rating"] == 5
    assert [e["to"] for e in final["events"]] == [
        "created",
        "identified",
        "queued",
        "in_service",
        "materials_checked",
        "signed",
        "submitted",
        "rated",
        "closed",
    ]
    assert [m["status"] for m in final["materials"]] == ["verified", "verified"]

    # Every transition is in the audit log under the case number, in order.
    async with ctx.db.sessions() as s:
        rows = (
            await s.execute(
                AuditRecord.__table__.select()
                .where(AuditRecord.target_code == case["number"])
                .order_by(AuditRecord.id)
            )
        ).all()
    actions = [
        r.action
        for r in rows
        if r.action != "servicedesk.material" and not r.action.startswith("servicedesk.material.")
    ]
    assert actions == [
        f"servicedesk.{e}"
        for e in (
            "create",
            "identify",
            "enqueue",
            "accept",
            "check",
            "sign",
            "submit",
            "rate",
            "close",
        )
    ]

    # Statistics count it: one session, one trip saved, rating 5; the CSV says so too.
    st = await ok(
        await client.get("/api/servicedesk/stats", params={"by": "department"}, headers=h["a1"])
    )
    row = next(x for x in st["rows"] if x["key"] == "rsj")
    assert (row["sessions"], row["trips_saved"], row["grade_5"]) == (1, 1, 1)
    csv = await client.get(
        "/api/servicedesk/stats", params={"by": "item", "format": "csv"}, headers=h["a1"]
    )
    assert csv.status_code == 200 and "养老保险缴费结算单" in csv.text


async def test_bad_input_is_refused_by_field_and_leaves_nothing_behind(
    client: httpx.AsyncClient, ctx: NodeContext
) -> None:
    h = await _setup(client, ctx)
    r = await client.post(
        "/api/servicedesk/cases",
        json={"kiosk_code": SEAT1, "item_code": PENSION},
        headers=h["kiosk"],
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "kiosk_code"  # out of scope
    r = await client.post(
        "/api/servicedesk/cases",
        json={"kiosk_code": KIOSK, "item_code": "nope"},
        headers=h["kiosk"],
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "item_code"
    c = await ok(
        await client.post(
            "/api/servicedesk/cases",
            json={"kiosk_code": KIOSK, "item_code": PENSION},
            headers=h["kiosk"],
        ),
        201,
    )
    bad = SAMPLE_CARDS[0].id_number[:17] + "0"
    r = await client.post(
        f"/api/servicedesk/cases/{c['id']}/identify",
        json={"card": {"name": "张阿大", "id_number": bad}},
        headers=h["kiosk"],
    )
    assert r.status_code == 422
    assert r.json()["errors"][0] == {
        "field": "card.id_number",
        "reason": "check character is wrong (GB 11643)",
        "value": bad,
    }
    r = await client.post(f"/api/servicedesk/cases/{c['id']}/enqueue", headers=h["kiosk"])
    assert r.status_code == 409 and "created cannot enqueue" in r.json()["detail"]
    r = await client.post(
        f"/api/servicedesk/cases/{c['id']}/materials",
        params={"upload_id": "u1", "name": "户口簿"},
        content=b"GIF89a....",
        headers={**h["kiosk"], "Content-Type": "image/jpeg"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "image"
    r = await client.post(
        f"/api/servicedesk/cases/{c['id']}/signature",
        content=png(),
        headers={**h["kiosk"], "Content-Type": "image/png"},
    )
    assert r.status_code == 409
    after = await ok(await client.get(f"/api/servicedesk/cases/{c['id']}", headers=h["kiosk"]))
    assert after["state"] == "created" and after["materials"] == [] and not after["signed"]
    assert [e["event"] for e in after["events"]] == ["create"]
    # A kiosk user is not an agent; a catalogue with a bad item changes nothing.
    r = await client.post("/api/servicedesk/desk/accept", json={}, headers=h["kiosk"])
    assert r.status_code == 403
    doc = json.loads(SAMPLE.read_text(encoding="utf-8"))
    doc["items"][0]["name"] = "改过的名字"
    doc["items"][1]["target_minutes"] = -1
    r = await client.post("/api/servicedesk/catalogue", content=json.dumps(doc), headers=h["admin"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "items[1].target_minutes"
    cat = await ok(await client.get("/api/servicedesk/catalogue", headers=h["kiosk"]))
    names = [i["name"] for d in cat["departments"] for i in d["items"]]
    assert "改过的名字" not in names and len(names) == 40


async def test_priority_fcfs_abandonment_callback_and_transfer(
    client: httpx.AsyncClient, ctx: NodeContext
) -> None:
    h = await _setup(client, ctx)
    p1 = await _queued(client, h, PENSION)
    d1 = await _queued(client, h, DIBAO, 1)
    p2 = await _queued(client, h, PENSION, 2)
    assert (p2["position"], d1["position"]) == (2, 1)
    q = await ok(await client.get("/api/servicedesk/desk/queues", headers=h["a2"]))
    assert [x["item"] for x in q["queues"]] == [DIBAO, PENSION]  # civil first for agent2
    assert [c["id"] for c in q["queues"][1]["cases"]] == [p1["id"], p2["id"]]

    # agent2 (civil first) takes the later dibao case; agent1 (social first) the first pension.
    assert (await ok(await client.post("/api/servicedesk/desk/accept", json={}, headers=h["a2"])))[
        "id"
    ] == d1["id"]
    assert (await ok(await client.post("/api/servicedesk/desk/accept", json={}, headers=h["a1"])))[
        "id"
    ] == p1["id"]
    # Both agents cannot hold one case.
    r = await client.post(
        "/api/servicedesk/desk/accept", json={"case_id": p1["id"]}, headers=h["a2"]
    )
    assert r.status_code == 403 and "served by agent1" in r.json()["detail"]

    # p2's villager leaves: abandoned, out of the queue; called back: first again (its ticket).
    await ok(await client.post(f"/api/servicedesk/cases/{p2['id']}/abandon", headers=h["kiosk"]))
    p3 = await _queued(client, h, PENSION, 0)
    assert p3["position"] == 1
    back = await ok(
        await client.post(f"/api/servicedesk/cases/{p2['id']}/callback", headers=h["a1"])
    )
    assert back["state"] == "queued" and back["position"] == 1
    p3 = await ok(await client.get(f"/api/servicedesk/cases/{p3['id']}", headers=h["kiosk"]))
    assert p3["position"] == 2

    # agent2 transfers the dibao case to the pension queue: at its head, for agent1 next.
    t = await ok(
        await client.post(
            f"/api/servicedesk/cases/{d1['id']}/transfer",
            json={"item_code": PENSION, "note": "其实是养老"},
            headers=h["a2"],
        )
    )
    assert t["state"] == "transferred" and t["item"]["code"] == PENSION and t["position"] == 1
    r = await client.post(f"/api/servicedesk/cases/{p1['id']}/hold", headers=h["a2"])
    assert r.status_code == 403  # not agent2's case
    await ok(
        await client.post(
            f"/api/servicedesk/cases/{p1['id']}/escalate",
            json={"note": "需县人社局领导审批"},
            headers=h["a1"],
        )
    )
    nxt = await ok(await client.post("/api/servicedesk/desk/accept", json={}, headers=h["a1"]))
    assert nxt["id"] == d1["id"]
    assert [e["event"] for e in nxt["events"]] == [
        "create",
        "identify",
        "enqueue",
        "accept",
        "transfer",
        "accept",
    ]


async def test_an_agent_whose_page_dies_puts_the_case_back_at_the_head(
    client: httpx.AsyncClient, ctx: NodeContext
) -> None:
    h = await _setup(client, ctx)
    desk: ServiceDesk = client._transport.app.state.servicedesk  # type: ignore[attr-defined]
    desk.cfg = desk.cfg.model_copy(update={"agent_grace_seconds": 0.5, "kiosk_resume_seconds": 1})
    first = await _queued(client, h, PENSION)
    second = await _queued(client, h, PENSION, 1)
    await ok(await client.post("/api/servicedesk/desk/accept", json={}, headers=h["a1"]))
    me = await ok(await client.get("/api/auth/me", headers=h["a1"]))
    from vmesh.auth.principal import Principal

    agent = Principal(0, "agent1", frozenset({"agent"}), me["scope_code"], "/")
    page = Subscriber(agent, agent="agent1")
    desk.subscribe(page)
    desk.unsubscribe(page)  # the desk page died mid-call
    for _ in range(200):  # a readiness wait for the grace timer, not a timing assertion
        c = await ok(await client.get(f"/api/servicedesk/cases/{first['id']}", headers=h["a1"]))
        if c["state"] == "queued":
            break
        await asyncio.sleep(0.05)
    assert c["state"] == "queued" and c["position"] == 1 and c["agent"] is None
    assert c["events"][-1]["event"] == "requeue" and c["events"][-1]["actor"] == "servicedesk"
    s2 = await ok(await client.get(f"/api/servicedesk/cases/{second['id']}", headers=h["kiosk"]))
    assert s2["position"] == 2
    # agent2 takes it next (it is at the head of the pension queue).
    assert (await ok(await client.post("/api/servicedesk/desk/accept", json={}, headers=h["a2"])))[
        "id"
    ] == first["id"]

    # A kiosk page that goes and comes back (a reload) keeps its case and number …
    kiosk = Principal(0, "donan", frozenset({"operator"}), VILLAGE, "/")
    kp = Subscriber(kiosk, case_id=second["id"])
    desk.subscribe(kp)
    desk.unsubscribe(kp)
    kp = Subscriber(kiosk, case_id=second["id"])
    desk.subscribe(kp)
    await asyncio.sleep(1.5)  # past kiosk_resume_seconds: the timer was cancelled by the return
    c = await ok(await client.get(f"/api/servicedesk/cases/{second['id']}", headers=h["kiosk"]))
    assert c["state"] == "queued" and c["number"] == second["number"]
    # … one that goes and does not come back: its waiting case is abandoned.
    desk.unsubscribe(kp)
    for _ in range(200):
        c = await ok(await client.get(f"/api/servicedesk/cases/{second['id']}", headers=h["kiosk"]))
        if c["state"] == "abandoned":
            break
        await asyncio.sleep(0.05)
    assert c["state"] == "abandoned"
    await desk.stop()
