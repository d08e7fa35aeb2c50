"""Petitions over the HTTP API on SQLite and PostgreSQL (the ctx fixture): the whole story on one
node (booking with evidence → triage → session as a recorded conference → clerk's record →
signature and PDF → case with its 60-day deadline, one 30-day extension → follow-up → answer →
rating), every transition audited in order; bad input refused by field with nothing written;
who may do what; overdue cases flagged."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import func, select, update

from conftest import PROVINCE_NODE
from factories import add_entry, add_region, add_user, bearer
from vmesh.audit.models import AuditRecord
from vmesh.conference.models import ConferenceRow
from vmesh.node.context import NodeContext
from vmesh.petition.models import Evidence, Petition
from vmesh.servicedesk.idcard import SAMPLE_CARDS

pytestmark = pytest.mark.integration

PROVINCE = "33000000002166000001"
CITY = "33030000002166000001"
COUNTY = "33032800002166000001"
TOWN = "33032801002166000001"
ROOM = "33032801004010000001"  # 大峃镇接访室 (service room)
CITY_HALL = "33030000004000000001"
COUNTY_HALL = "33032800004000000001"
CAMERA = "33032801001310000001"
CARD = {"name": SAMPLE_CARDS[2].name, "id_number": SAMPLE_CARDS[2].id_number}


async def _site(ctx: NodeContext) -> dict[str, dict[str, str]]:
    async with ctx.db.transaction() as s:
        await add_region(s, PROVINCE, "浙江省", "province")
        await add_region(s, CITY, "温州市", "city", PROVINCE)
        await add_region(s, COUNTY, "文成县", "county", CITY)
        await add_region(s, TOWN, "大峃镇", "township", COUNTY)
        await add_entry(s, ROOM, "大峃镇接访室", "service_room", parent=TOWN)
        await add_entry(s, CAMERA, "镇政府门口", "camera", parent=TOWN)
        await add_entry(s, CITY_HALL, "温州市信访局接访室", "conference_terminal", parent=CITY)
        await add_entry(s, COUNTY_HALL, "文成县信访局接访室", "conference_terminal", parent=COUNTY)
    return {
        "petitioner": bearer(await add_user(ctx, "daxun", ["operator"], TOWN)),
        "staff": bearer(await add_user(ctx, "xfb", ["petition"], CITY)),
        "city": bearer(await add_user(ctx, "li", ["chair"], CITY)),
    }


def jpeg(color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, "JPEG")
    return buf.getvalue()


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (240, 90), (0, 0, 0, 255)).save(buf, "PNG")
    return buf.getvalue()


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def form(**over: Any) -> dict[str, str]:
    base = {
        "room_code": ROOM,
        "category": "request",
        "subject": "宅基地边界纠纷，村里调解未果",
        "card": json.dumps(CARD, ensure_ascii=False),
    }
    return {**base, **over}


async def ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return dict(r.json())


async def book(client: httpx.AsyncClient, h: dict[str, str], **over: Any) -> dict[str, Any]:
    files = [("evidence", ("现场照片.jpg", jpeg(), "image/jpeg")), ("evidence", ("协议.pdf", PDF))]
    return await ok(
        await client.post("/api/petition/petitions", data=form(**over), files=files, headers=h), 201
    )


OFFICIALS = [
    {"username": "li", "node": PROVINCE_NODE, "venue": CITY_HALL},
    {"username": "zhao", "node": PROVINCE_NODE, "venue": COUNTY_HALL},
]


async def approve(client: httpx.AsyncClient, h: dict[str, str], pid: int) -> dict[str, Any]:
    when = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    body = {"reason": "属本级受理范围", "scheduled_at": when, "officials": OFFICIALS}
    return await ok(
        await client.post(f"/api/petition/petitions/{pid}/approve", json=body, headers=h)
    )


async def test_a_petition_from_booking_to_rating(
    client: httpx.AsyncClient, ctx: NodeContext
) -> None:
    h = await _site(ctx)
    p = await book(client, h["petitioner"])
    assert p["state"] == "booked" and p["number"].startswith("XF330000")
    assert p["petitioner_id"].count("*") == 8  # masked for the petitioner's side
    assert [e["name"] for e in p["evidence"]] == ["现场照片.jpg", "协议.pdf"]
    assert [e["media_type"] for e in p["evidence"]] == ["image/jpeg", "application/pdf"]
    img = await client.get(p["evidence"][0]["url"], headers=h["staff"])
    assert img.status_code == 200 and img.content == jpeg()
    pid = p["id"]

    # Triage by petition staff: the officials, their venues, the time.
    p = await approve(client, h["staff"], pid)
    assert p["state"] == "scheduled" and p["officials"] == OFFICIALS
    assert p["petitioner_id"] == CARD["id_number"]  # staff see the whole number

    # The session is a conference: main venue the first official's, the room a sub-venue, recorded.
    p = await ok(await client.post(f"/api/petition/petitions/{pid}/start", headers=h["staff"]))
    assert p["state"] == "in_session" and p["host_node"] == PROVINCE_NODE
    conf = await ok(await client.get(f"/api/conferences/{p['conference_id']}", headers=h["city"]))
    assert conf["main"] == CITY_HALL and conf["recording"] is True
    assert [v["code"] for v in conf["venues"]] == [CITY_HALL, COUNTY_HALL, ROOM]
    assert conf["status"] == "active"

    # The clerk's record: paragraphs with their offsets into the recording.
    for text in ("信访人陈述：邻居建房占用宅基地约两米。", "县信访局表示将会同镇政府现场勘测。"):
        p = await ok(
            await client.post(
                f"/api/petition/petitions/{pid}/record", json={"text": text}, headers=h["staff"]
            )
        )
    assert [r["seq"] for r in p["record"]] == [1, 2]
    assert all(r["offset_seconds"] >= 0 for r in p["record"])
    # Only during the session, and only by staff.
    r = await client.post(
        f"/api/petition/petitions/{pid}/record", json={"text": "x"}, headers=h["petitioner"]
    )
    assert r.status_code == 403 and "role petition" in r.json()["detail"]
    p = await ok(await client.post(f"/api/petition/petitions/{pid}/end", headers=h["staff"]))
    assert p["state"] == "recorded"
    async with ctx.db.sessions() as s:
        row = await s.get(ConferenceRow, p["conference_id"])
        assert row is not None and row.status == "ended"
    r = await client.post(
        f"/api/petition/petitions/{pid}/record", json={"text": "too late"}, headers=h["staff"]
    )
    assert r.status_code == 409 and "during the session" in r.json()["detail"]

    # The petitioner signs: the PDF has the record with its offsets and the signature.
    p = await ok(
        await client.post(
            f"/api/petition/petitions/{pid}/signature",
            content=png(),
            headers={**h["petitioner"], "Content-Type": "image/png"},
        )
    )
    assert p["state"] == "signed"
    pdf = await client.get(p["record_url"], headers=h["staff"])
    assert pdf.headers["content-type"] == "application/pdf"
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().replace("\x00", "")
    assert "邻居建房占用宅基地" in text and "信访人签名" in text and p["number"] in text
    assert f"[{p['record'][0]['offset_seconds'] // 60:02d}:" in text

    # The case: 60 days, extended once by 30 with a reason, not twice.
    p = await ok(
        await client.post(
            f"/api/petition/petitions/{pid}/assign",
            json={"department": "文成县自然资源和规划局"},
            headers=h["staff"],
        )
    )
    assigned, due = datetime.fromisoformat(p["assigned_at"]), datetime.fromisoformat(p["due_at"])
    assert p["state"] == "assigned" and due - assigned == timedelta(days=60)
    r = await client.post(f"/api/petition/petitions/{pid}/extend", json={}, headers=h["staff"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    p = await ok(
        await client.post(
            f"/api/petition/petitions/{pid}/extend",
            json={"reason": "需测绘院出具勘测报告"},
            headers=h["staff"],
        )
    )
    assert datetime.fromisoformat(p["due_at"]) - assigned == timedelta(days=90)
    assert p["extensions"] == 1
    r = await client.post(
        f"/api/petition/petitions/{pid}/extend", json={"reason": "again"}, headers=h["staff"]
    )
    assert r.status_code == 409 and "only once" in r.json()["detail"]

    # Follow-up session (a second conference), the answer, the rating.
    p = await ok(await client.post(f"/api/petition/petitions/{pid}/follow_up", headers=h["staff"]))
    assert p["state"] == "follow_up" and p["followup_conference_id"] != p["conference_id"]
    p = await ok(
        await client.post(
            f"/api/petition/petitions/{pid}/answer",
            json={"outcome": "经勘测，边界按1998年确权图恢复。"},
            headers=h["staff"],
        )
    )
    r = await client.post(
        f"/api/petition/petitions/{pid}/rating", json={"grade": 6}, headers=h["petitioner"]
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "grade"
    p = await ok(
        await client.post(
            f"/api/petition/petitions/{pid}/rating", json={"grade": 5}, headers=h["petitioner"]
        )
    )
    assert p["state"] == "closed" and p["rating"] == 5
    events = [e["event"] for e in p["events"]]
    expected = ["book", "approve", "start", "end", "sign", "assign", "extend", "follow_up"]
    expected += ["answer", "rate", "close"]
    assert events == expected

    # Every transition audited, in order, under the petition number.
    async with ctx.db.sessions() as s:
        rows = (
            await s.execute(
                AuditRecord.__table__.select()
                .where(AuditRecord.target_code == p["number"])
                .order_by(AuditRecord.id)
            )
        ).all()
    actions = [r.action for r in rows if r.action != "petition.record"]
    assert actions == [f"petition.{e}" for e in expected]
    assert sum(r.action == "petition.record" for r in rows) == 2


async def _counts(ctx: NodeContext) -> tuple[int, int]:
    async with ctx.db.sessions() as s:
        n = await s.scalar(select(func.count()).select_from(Petition))
        m = await s.scalar(select(func.count()).select_from(Evidence))
    return int(n or 0), int(m or 0)


async def test_bad_bookings_are_refused_by_field_and_nothing_is_written(
    client: httpx.AsyncClient, ctx: NodeContext
) -> None:
    h = await _site(ctx)
    url = "/api/petition/petitions"
    cases: list[tuple[dict[str, Any], list[Any], str]] = [
        (form(category="gossip"), [], "category"),
        (form(subject=""), [], "subject"),
        (
            form(card=json.dumps({"name": "王", "id_number": "330328194909051530"})),
            [],
            "card.id_number",
        ),
        (form(card="{not json"), [], "card"),
        (form(room_code=CAMERA), [], "room_code"),
        (form(room_code="33999999004010000001"), [], "room_code"),
        (
            form(),
            [("evidence", ("病毒.exe", b"MZ\x90\x00", "application/octet-stream"))],
            "evidence[0]",
        ),
        (
            form(),
            [("evidence", ("a.jpg", jpeg())), ("evidence", ("b.pdf", b"%PDF-1.4 cut"))],
            "evidence[1]",
        ),
        (form(), [("evidence", (f"{i}.jpg", jpeg())) for i in range(9)], "evidence"),
    ]
    for data, files, field in cases:
        r = await client.post(url, data=data, files=files or None, headers=h["petitioner"])
        assert r.status_code == 422, (field, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]], (field, r.json())
    r = await client.post(url, json={"room_code": ROOM}, headers=h["petitioner"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "Content-Type"
    assert await _counts(ctx) == (0, 0)
    assert not (ctx.config.node.data_dir / "petition").exists() or not any(
        (ctx.config.node.data_dir / "petition").iterdir()
    )


async def test_triage_rules_and_refused_steps(client: httpx.AsyncClient, ctx: NodeContext) -> None:
    h = await _site(ctx)
    pid = (await book(client, h["petitioner"]))["id"]
    base = f"/api/petition/petitions/{pid}"
    when = datetime.now(UTC).isoformat()
    # The petitioner cannot triage their own petition.
    r = await client.post(
        f"{base}/approve",
        json={"scheduled_at": when, "officials": OFFICIALS},
        headers=h["petitioner"],
    )
    assert r.status_code == 403
    # Officials are named field by field; nothing changes.
    bad = [{"username": "li", "node": "123", "venue": CITY_HALL}]
    r = await client.post(
        f"{base}/approve", json={"scheduled_at": when, "officials": bad}, headers=h["staff"]
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "officials[0].node"
    r = await client.post(f"{base}/reject", json={"reason": " "}, headers=h["staff"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    # A step the state does not allow: 409 naming the state and what it allows.
    r = await client.post(f"{base}/start", headers=h["staff"])
    assert r.status_code == 409
    assert r.json()["detail"] == (
        "a petition that is booked cannot start; it can: approve, reject, withdraw"
    )
    p = await ok(await client.get(base, headers=h["staff"]))
    assert p["state"] == "booked" and [e["event"] for e in p["events"]] == ["book"]
    # A session whose chair is not a user of the host is refused naming the chair; still scheduled.
    when2 = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    offs = [{**OFFICIALS[0], "username": "nobody"}, OFFICIALS[1]]
    await ok(
        await client.post(
            f"{base}/approve", json={"scheduled_at": when2, "officials": offs}, headers=h["staff"]
        )
    )
    r = await client.post(f"{base}/start", headers=h["staff"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "chairs[0]"
    assert (await ok(await client.get(base, headers=h["staff"])))["state"] == "scheduled"
    async with ctx.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ConferenceRow)) == 0
    # Rescheduled with the right officials, it starts.
    body = {"scheduled_at": when2, "officials": OFFICIALS, "reason": "改由李主任主持"}
    p = await ok(await client.post(f"{base}/reschedule", json=body, headers=h["staff"]))
    assert p["state"] == "scheduled" and p["officials"] == OFFICIALS
    p = await ok(await client.post(f"{base}/start", headers=h["staff"]))
    assert [e["event"] for e in p["events"]] == ["book", "approve", "reschedule", "start"]
    # Rejected: final, with the reason.
    pid2 = (await book(client, h["petitioner"]))["id"]
    p = await ok(
        await client.post(
            f"/api/petition/petitions/{pid2}/reject",
            json={"reason": "已进入诉讼程序，不予受理"},
            headers=h["staff"],
        )
    )
    assert p["state"] == "rejected" and p["triage_reason"] == "已进入诉讼程序，不予受理"
    assert p["allowed"] == []
    # Outside one's scope a petition does not exist.
    async with ctx.db.transaction() as s:
        await add_region(s, "33040000002166000001", "嘉兴市", "city", PROVINCE)
    other = bearer(await add_user(ctx, "far", ["petition"], "33040000002166000001"))
    r = await client.get(base, headers=other)
    assert r.status_code == 404


async def test_overdue_cases_are_flagged_in_the_list(
    client: httpx.AsyncClient, ctx: NodeContext
) -> None:
    h = await _site(ctx)
    ids = [(await book(client, h["petitioner"]))["id"] for _ in range(2)]
    now = datetime.now(UTC)
    async with ctx.db.transaction() as s:  # two assigned cases, one past its deadline
        for pid, due in zip(ids, (now - timedelta(days=1), now + timedelta(days=30)), strict=True):
            await s.execute(
                update(Petition)
                .where(Petition.id == pid)
                .values(state="assigned", assigned_at=due - timedelta(days=60), due_at=due)
            )
    page = await ok(await client.get("/api/petition/petitions", headers=h["staff"]))
    flags = {i["id"]: i["overdue"] for i in page["items"]}
    assert flags == {ids[0]: True, ids[1]: False}
    page = await ok(await client.get("/api/petition/petitions?overdue=true", headers=h["staff"]))
    assert [i["id"] for i in page["items"]] == [ids[0]]
    r = await client.get("/api/petition/petitions?state=lost", headers=h["staff"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "state"
