"""The serving node's half of the service desk across tiers (``vmesh.servicedesk.tiers``), on
SQLite and PostgreSQL: what a kiosk's node asks over the bus, answered by ``Tiers.on_rpc`` here
(the bus itself and the kiosk's node are in tests/e2e/test_servicedesk_tiers.py).

A kiosk of a township node (known from the catalogue) creates, identifies and queues a case here;
this node's agent sees it in the queue; ``watch`` gives the kiosk its position; an image bigger
than one request arrives in parts and is stored once; every step is audited under the kiosk's
user at its node. Bad requests are refused naming the field, and a refused ``create`` writes
nothing.
"""

from __future__ import annotations

import base64
import io
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from factories import add_entry, add_region
from vmesh.audit.models import AuditRecord
from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import InvalidInput, NotFound
from vmesh.federation.models import CatalogueEntry
from vmesh.node.context import NodeContext
from vmesh.servicedesk.idcard import SAMPLE_CARDS
from vmesh.servicedesk.models import Case
from vmesh.servicedesk.service import ServiceDesk
from vmesh.servicedesk.tiers import CHUNK

pytestmark = pytest.mark.integration

COUNTY = "33032800002166000001"
SEAT = "33032800004010000001"
TOWN_NODE = "33032801002006000001"
OTHER_NODE = "33032802002006000001"
VILLAGE = "33032801002166000002"
KIOSK = "33032801004010000001"
PENSION = "rsj-pension-statement"


async def _serving_node(ctx: NodeContext) -> tuple[ServiceDesk, Principal]:
    """This node as the county centre, the township's village and kiosk in its catalogue."""
    now = datetime.now(UTC)
    async with ctx.db.transaction() as s:
        await add_region(s, COUNTY, "文成县", "county")
        await add_entry(s, SEAT, "文成县政务服务中心1号窗口", "service_room", parent=COUNTY)
        for code, parent, kind, name in (
            (VILLAGE, None, "region", "西坑村"),
            (KIOSK, VILLAGE, "service_room", "西坑村视频室"),
        ):
            s.add(
                CatalogueEntry(
                    code=code,
                    origin_node=TOWN_NODE,
                    parent_code=parent,
                    kind=kind,
                    tier="village" if kind == "region" else None,
                    name=name,
                    status="online",
                    version=1,
                    deleted=False,
                    changed_at=now,
                    applied_at=now,
                )
            )
    desk = ServiceDesk(ctx)
    desk.cfg = desk.cfg.model_copy(update={"sample_catalogue": True})
    desk.tiers.tier = "county"
    admin = Principal(1, "admin", frozenset({"admin"}), COUNTY, "/")
    await desk.ready()
    await desk.set_agent(admin, "agent1", {"social": 1}, SEAT)
    async with ctx.db.sessions() as s:
        county_path = await s.scalar(select(Entry.path).where(Entry.code == COUNTY))
    agent = Principal(2, "agent1", frozenset({"agent"}), COUNTY, str(county_path))
    return desk, agent


def rpc(op: str, **body: Any) -> dict[str, Any]:
    return {"op": op, "from": TOWN_NODE, "user": "xikeng_room", **body}


def noisy_jpeg(width: int, height: int) -> bytes:
    """A JPEG bigger than one request's part (noise does not compress)."""
    im = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    return buf.getvalue()


async def test_a_kiosk_of_a_township_queued_served_and_audited_here(ctx: NodeContext) -> None:
    desk, agent = await _serving_node(ctx)
    t = desk.tiers
    case = await t.on_rpc(
        rpc("create", kiosk_code=KIOSK, kiosk_name="西坑村视频室", item_code=PENSION)
    )
    cid = case["id"]
    assert case["state"] == "created" and case["village"] == "西坑村"
    card = SAMPLE_CARDS[0]
    card_json = {"name": card.name, "id_number": card.id_number}
    case = await t.on_rpc(rpc("identify", case=cid, card=card_json))
    assert case["applicant_id"].count("*") == 8  # masked for the kiosk
    case = await t.on_rpc(rpc("enqueue", case=cid))
    assert case["state"] == "queued" and case["position"] == 1

    # This node's agent sees the villager of the township's kiosk in the pension queue.
    queues = await desk.queues(agent)
    assert [c["id"] for q in queues["queues"] for c in q["cases"]] == [cid]
    watched = await t.on_rpc(rpc("watch", case=cid))
    assert watched["position"] == 1 and watched["case"]["number"] == case["number"]

    # A still bigger than one part arrives in parts; the same upload again is stored once.
    image = noisy_jpeg(800, 700)
    assert len(image) > CHUNK
    parts = [image[i : i + CHUNK] for i in range(0, len(image), CHUNK)]
    for again in range(2):
        for n, part in enumerate(parts):
            got = await t.on_rpc(
                rpc(
                    "upload",
                    case=cid,
                    upload_id="u-1",
                    kind="face",
                    name="人像",
                    part=n,
                    parts=len(parts),
                    data=base64.b64encode(part).decode(),
                )
            )
        assert got["width"] == 800 and got["size"] == len(image), (again, got)
    full = await desk.case_json(agent, cid)
    assert [(m["kind"], m["size"]) for m in full["materials"]] == [("face", len(image))]

    accepted = await desk.accept(agent, None)
    assert accepted["id"] == cid and accepted["agent_seat"] == SEAT
    async with ctx.db.sessions() as s:
        rows = (
            await s.scalars(
                select(AuditRecord)
                .where(AuditRecord.target_code == case["number"])
                .order_by(AuditRecord.id)
            )
        ).all()
    who = f"xikeng_room@{TOWN_NODE}"
    assert [(r.username, r.action) for r in rows] == [
        (who, "servicedesk.create"),
        (who, "servicedesk.identify"),
        (who, "servicedesk.enqueue"),
        (who, "servicedesk.material"),
        ("agent1", "servicedesk.accept"),
    ]
    await desk.stop()


async def test_bad_requests_are_refused_by_field_and_write_nothing(ctx: NodeContext) -> None:
    desk, _ = await _serving_node(ctx)
    t = desk.tiers

    async def refused(body: dict[str, Any], field: str, kind: type = InvalidInput) -> None:
        with pytest.raises(kind) as e:
            await t.on_rpc(body)
        if kind is InvalidInput:
            assert [x.field for x in e.value.errors] == [field], e.value.errors

    await refused({"op": "create", "user": "x"}, "from")
    await refused({"op": "create", "from": TOWN_NODE}, "user")
    await refused(rpc("create", kiosk_code="33032801004010000999", item_code=PENSION), "kiosk_code")
    # the kiosk is a service room of the township, not of another node
    await refused(
        {**rpc("create", kiosk_code=KIOSK, item_code=PENSION), "from": OTHER_NODE}, "kiosk_code"
    )
    await refused(rpc("create", kiosk_code=VILLAGE, item_code=PENSION), "kiosk_code")
    await refused(rpc("create", kiosk_code=KIOSK, item_code="no-such-item"), "item_code")
    async with ctx.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Case)) == 0

    case = await t.on_rpc(rpc("create", kiosk_code=KIOSK, item_code=PENSION))
    await refused(rpc("teleport", case=case["id"]), "op")
    await refused(rpc("get", case="1"), "case")
    await refused({**rpc("get", case=case["id"]), "from": OTHER_NODE}, "", NotFound)
    await refused(rpc("identify", case=case["id"], card="张三"), "card")
    await refused(
        rpc("upload", case=case["id"], upload_id="u", kind="document", name="x", part=2, parts=2),
        "part",
    )
    await refused(
        rpc("upload", case=case["id"], upload_id="u", kind="document", name="x", part=0, parts=1,
            data="not base64!"),
        "data",
    )  # fmt: skip
    await refused(rpc("sign", case=case["id"], data="%%%"), "data")
    await refused(rpc("result", case=case["id"], offset=0), "", NotFound)  # no result yet
    full = await t.on_rpc(rpc("get", case=case["id"]))
    assert full["state"] == "created" and full["materials"] == [] and len(full["events"]) == 1
    await desk.stop()
