"""Grants through the HTTP API of one node (SQLite and PostgreSQL): a Hangzhou unit applies for
Wencheng county's cameras, Wencheng's operator decides, the grant lets the Hangzhou user watch
(``GrantService.authorise``, what the live WebSocket asks) until it is revoked; bad input is
refused with the field and the reason and leaves nothing behind (no grant, no outbox row, no audit
row); the access report reads the audit rows of uses. This node is the province, so it may also
decide grants of other nodes' cameras it holds in its catalogue.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from factories import add_entry, add_region, add_user, bearer, region_code
from vmesh.audit.models import AuditRecord
from vmesh.auth.principal import Principal
from vmesh.errors import Forbidden
from vmesh.federation.models import CatalogueEntry
from vmesh.grants.models import GrantOutbox, GrantRow
from vmesh.grants.service import GrantService
from vmesh.media.viewer import Camera
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

PROV = region_code("33000000")
HZ = region_code("33010000")
HZ_DEPT = region_code("33010000", 1, "215")
WC = region_code("33032800")
WC_TOWN = region_code("33032810")
CAM1 = "33032800001320000001"
CAM2 = "33032800001320000002"
CAM3 = "33032810001320000003"  # under the town, tagged "river"
FAR_A = "33048300001320000001"  # in the catalogue, owned by two other nodes
FAR_B = "33080300001320000001"
HZ_NODE = "33010000002006000001"


@pytest.fixture
async def node(ctx: NodeContext, client: httpx.AsyncClient) -> AsyncIterator[dict[str, Any]]:
    async with ctx.db.transaction() as s:
        await add_region(s, PROV, "浙江省", "province")
        await add_region(s, HZ, "杭州市", "city", PROV)
        await add_entry(s, HZ_DEPT, "杭州市教育局", "department", None, HZ)
        await add_region(s, WC, "文成县", "county", PROV)
        await add_region(s, WC_TOWN, "大峃镇", "township", WC)
        await add_entry(s, CAM1, "县府门口", "camera", None, WC)
        await add_entry(s, CAM2, "车站", "camera", None, WC)
        cam3 = await add_entry(s, CAM3, "河道", "camera", None, WC_TOWN)
        cam3.tags = "river"
        now = datetime.now(UTC)
        for code, origin in ((FAR_A, "33048300002006000001"), (FAR_B, "33080300002006000001")):
            s.add(
                CatalogueEntry(
                    code=code, origin_node=origin, parent_code=None, kind="camera", tier=None,
                    name=code, status="online", tags="", attrs="{}", version=1, deleted=False,
                    changed_at=now, applied_at=now,
                )
            )  # fmt: skip
    tokens = {
        "hz": await add_user(ctx, "hz-op", ["operator"], HZ_DEPT, department_code=HZ_DEPT),
        "hzv": await add_user(ctx, "hz-viewer", ["viewer"], HZ),
        "wc": await add_user(ctx, "wc-op", ["operator"], WC),
        "town": await add_user(ctx, "town-op", ["operator"], WC_TOWN),
    }
    ctx.grants = GrantService(ctx)
    yield tokens
    ctx.grants = None


def _when(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def _application(**over: Any) -> dict[str, Any]:
    body = {
        "grantee": "department",
        "org": WC,
        "purpose": "防汛值守 flood watch",
        "from": _when(-1),
        "until": _when(24),
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


async def _counts(ctx: NodeContext) -> tuple[int, int, int]:
    async with ctx.db.sessions() as s:
        grants = await s.scalar(select(func.count()).select_from(GrantRow)) or 0
        outbox = await s.scalar(select(func.count()).select_from(GrantOutbox)) or 0
        audit = await s.scalar(select(func.count()).select_from(AuditRecord)) or 0
    return grants, outbox, audit


async def _principal(ctx: NodeContext, client: httpx.AsyncClient, token: str) -> Principal:
    me = (await client.get("/api/auth/me", headers=bearer(token))).json()
    async with ctx.db.sessions() as s:
        from vmesh.directory.models import Entry

        path = await s.scalar(select(Entry.path).where(Entry.code == me["scope_code"]))
    return Principal(
        user_id=0,
        username=me["username"],
        roles=frozenset(me["roles"]),
        scope_code=me["scope_code"],
        scope_path=path,
        department_code=me.get("department_code"),
    )


def _fields(r: httpx.Response) -> dict[str, str]:
    return {e["field"]: e["reason"] for e in r.json().get("errors", [])}


async def test_apply_approve_watch_revoke(
    ctx: NodeContext, client: httpx.AsyncClient, node: dict[str, Any]
) -> None:
    hz = bearer(node["hz"])
    r = await client.post("/api/grants", json=_application(), headers=hz)
    assert r.status_code == 201, r.text
    g = r.json()
    assert (g["status"], g["state"], g["version"]) == ("applied", "applied", 1)
    assert g["grantee_code"] == HZ_DEPT and g["owner_node"] == ctx.config.node.code

    # The Wencheng operator sees it in the queue; the town operator may not decide it.
    queue = await client.get("/api/grants", params={"view": "queue"}, headers=bearer(node["wc"]))
    assert [x["id"] for x in queue.json()["items"]] == [g["id"]]
    before = await _counts(ctx)
    r = await client.post(
        f"/api/grants/{g['id']}/decision",
        json={"decision": "approve"},
        headers=bearer(node["town"]),
    )
    assert r.status_code == 403 and WC_TOWN in r.json()["detail"], r.text
    assert await _counts(ctx) == before

    until = _when(2)
    r = await client.post(
        f"/api/grants/{g['id']}/decision",
        json={"decision": "approve", "until": until},
        headers=bearer(node["wc"]),
    )
    assert r.status_code == 200, r.text
    ok = r.json()
    assert (ok["status"], ok["state"], ok["version"]) == ("approved", "active", 2)
    assert datetime.fromisoformat(ok["valid_until"]) == datetime.fromisoformat(until)

    # Deciding twice is a conflict naming the grant's status; nothing changes.
    before = await _counts(ctx)
    r = await client.post(
        f"/api/grants/{g['id']}/decision",
        json={"decision": "reject", "reason": "again"},
        headers=bearer(node["wc"]),
    )
    assert r.status_code == 409 and "is approved" in r.json()["detail"], r.text
    assert await _counts(ctx) == before

    svc = ctx.grants
    assert svc is not None
    hz_p = await _principal(ctx, client, node["hz"])
    cam1 = Camera(CAM1, "县府门口", "camera", "", {})
    use = await svc.authorise(hz_p, cam1)
    assert use is not None and use.grant == g["id"] and use.purpose == g["purpose"]
    # Another Hangzhou user outside the department holds no grant: not covered.
    hzv_p = await _principal(ctx, client, node["hzv"])
    assert await svc.authorise(hzv_p, cam1) is None

    # Revoking: only the owner's operators in scope; the applicant cannot.
    before = await _counts(ctx)
    r = await client.post(f"/api/grants/{g['id']}/revoke", json={"reason": "x"}, headers=hz)
    assert r.status_code == 403, r.text
    r = await client.post(f"/api/grants/{g['id']}/revoke", json={}, headers=bearer(node["wc"]))
    assert r.status_code == 422 and "reason" in _fields(r), r.text
    assert await _counts(ctx) == before
    r = await client.post(
        f"/api/grants/{g['id']}/revoke", json={"reason": "汛期结束"}, headers=bearer(node["wc"])
    )
    assert r.status_code == 200 and r.json()["state"] == "revoked", r.text
    assert svc.ended(g["id"]) is not None and "revoked" in svc.ended(g["id"])  # type: ignore[operator]
    with pytest.raises(Forbidden) as refused:
        await svc.authorise(hz_p, cam1)
    assert f"grant {g['id']} revoked at" in refused.value.detail
    assert "by wc-op: 汛期结束" in refused.value.detail

    # Every step in the audit, with the purpose.
    async with ctx.db.sessions() as s:
        rows = (
            await s.scalars(
                select(AuditRecord)
                .where(AuditRecord.action.startswith("grant."))
                .order_by(AuditRecord.id)
            )
        ).all()
    steps = [(r.action, r.username) for r in rows]
    assert steps == [
        ("grant.apply", "hz-op"),
        ("grant.approve", "wc-op"),
        ("grant.revoke", "wc-op"),
    ]
    assert all(json.loads(r.detail)["purpose"] == g["purpose"] for r in rows)


async def test_matching_by_tag_and_list(
    ctx: NodeContext, client: httpx.AsyncClient, node: dict[str, Any]
) -> None:
    hz = bearer(node["hz"])
    svc = ctx.grants
    assert svc is not None
    r = await client.post("/api/grants", json=_application(tags=["river"]), headers=hz)
    by_tag = r.json()["id"]
    r = await client.post(
        "/api/grants", json=_application(org=None, codes=[CAM2], grantee="unit"), headers=hz
    )
    by_list = r.json()["id"]
    for gid in (by_tag, by_list):
        r = await client.post(
            f"/api/grants/{gid}/decision", json={"decision": "approve"}, headers=bearer(node["wc"])
        )
        assert r.status_code == 200, r.text
    p = await _principal(ctx, client, node["hz"])
    uses = {
        code: await svc.authorise(p, Camera(code, code, "camera", "", {}))
        for code in (CAM1, CAM2, CAM3)
    }
    assert uses[CAM1] is None  # neither tagged river nor listed
    assert uses[CAM2] is not None and uses[CAM2].grant == by_list
    assert uses[CAM3] is not None and uses[CAM3].grant == by_tag


@pytest.mark.parametrize(
    ("over", "field", "reason"),
    [
        ({"purpose": None}, "purpose", "is required"),
        ({"purpose": "   "}, "purpose", "is required"),
        ({"from": _when(5), "until": _when(1)}, "until", "later than from"),
        ({"until": _when(-0.5)}, "until", "already past"),
        ({"from": "yesterday"}, "from", "ISO 8601"),
        ({"org": None}, "cameras", "give org"),
        ({"org": "123"}, "org", "20-digit"),
        ({"org": None, "codes": [FAR_A, FAR_B]}, "codes", "cameras outside the owner"),
        ({"org": None, "codes": [CAM1, FAR_A]}, "codes", "cameras outside the owner"),
        ({"org": None, "codes": ["33099900001320000009"]}, "codes", "in no node's catalogue"),
        ({"org": None, "codes": [WC]}, "codes", "not a camera"),
        ({"grantee": "someone"}, "grantee", "unit or department"),
    ],
)
async def test_bad_applications_are_refused_and_leave_nothing(
    ctx: NodeContext,
    client: httpx.AsyncClient,
    node: dict[str, Any],
    over: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    before = await _counts(ctx)
    r = await client.post("/api/grants", json=_application(**over), headers=bearer(node["hz"]))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert reason in _fields(r).get(field, ""), r.json()
    assert await _counts(ctx) == before


async def test_bad_decisions(
    ctx: NodeContext, client: httpx.AsyncClient, node: dict[str, Any]
) -> None:
    r = await client.post("/api/grants", json=_application(), headers=bearer(node["hz"]))
    gid = r.json()["id"]
    wc = bearer(node["wc"])
    before = await _counts(ctx)
    cases = [
        ({"decision": "maybe"}, "decision"),
        ({"decision": "reject"}, "reason"),  # a rejection says why
        ({"decision": "approve", "until": _when(48)}, "until"),  # widening the period
        ({"decision": "approve", "from": _when(3), "until": _when(2)}, "until"),
    ]
    for body, field in cases:
        r = await client.post(f"/api/grants/{gid}/decision", json=body, headers=wc)
        assert r.status_code == 422 and field in _fields(r), (body, r.text)
    r = await client.post(
        "/api/grants/G000000000000/decision", json={"decision": "approve"}, headers=wc
    )
    assert r.status_code == 404
    r = await client.post(f"/api/grants/{gid}/revoke", json={"reason": "early"}, headers=wc)
    assert r.status_code == 409 and "is applied" in r.json()["detail"]
    assert await _counts(ctx) == before
    r = await client.post(
        f"/api/grants/{gid}/decision",
        json={"decision": "reject", "reason": "不符合规定"},
        headers=wc,
    )
    assert r.json()["state"] == "rejected"
    svc = ctx.grants
    assert svc is not None
    p = await _principal(ctx, client, node["hz"])
    with pytest.raises(Forbidden, match="rejected: 不符合规定"):
        await svc.authorise(p, Camera(CAM1, "x", "camera", "", {}))


async def test_expiry_is_swept_and_audited(
    ctx: NodeContext, client: httpx.AsyncClient, node: dict[str, Any]
) -> None:
    r = await client.post("/api/grants", json=_application(), headers=bearer(node["hz"]))
    gid = r.json()["id"]
    await client.post(
        f"/api/grants/{gid}/decision", json={"decision": "approve"}, headers=bearer(node["wc"])
    )
    svc = ctx.grants
    assert svc is not None
    p = await _principal(ctx, client, node["hz"])
    assert await svc.authorise(p, Camera(CAM1, "x", "camera", "", {})) is not None
    later = datetime.now(UTC) + timedelta(hours=30)
    svc.clock = lambda: later
    assert svc.ended(gid) is not None and "expired" in svc.ended(gid)  # type: ignore[operator]
    assert [g.id for g in await svc.sweep_once()] == [gid]
    assert await svc.sweep_once() == []  # once
    r = await client.get(f"/api/grants/{gid}", headers=bearer(node["hz"]))
    assert r.json()["status"] == "expired"
    page = (
        await client.get(
            "/api/audit", params={"action": "grant.expire"}, headers=bearer(node["wc"])
        )
    ).json()
    assert [x["detail"]["grant"] for x in page["items"]] == [gid]


async def test_access_report_filters_and_csv(
    ctx: NodeContext, client: httpx.AsyncClient, node: dict[str, Any]
) -> None:
    from vmesh.audit.log import Actor

    hz_p = await _principal(ctx, client, node["hz"])
    await ctx.audit.write(
        hz_p, "live.view", CAM1, "ok",
        {"tile": "0", "grant": "G0123456789ab", "purpose": "防汛", "department": HZ_DEPT},
    )  # fmt: skip
    await ctx.audit.write(hz_p, "live.view", CAM2, "ok", {"tile": "1"})
    await ctx.audit.write(
        Actor("fabric"), "fabric.serve", CAM1, "ok",
        {"user": "someone", "viewer_node": "33010000002006000001", "grant": "G0123456789ab",
         "purpose": "防汛"},
    )  # fmt: skip
    wc = bearer(node["wc"])
    rep = (
        await client.get("/api/grants/report", params={"grant": "G0123456789ab"}, headers=wc)
    ).json()
    assert {(x["action"], x["user"]) for x in rep["items"]} == {
        ("live.view", "hz-op"),
        ("fabric.serve", "someone"),
    }
    assert all(x["purpose"] == "防汛" for x in rep["items"])
    rep = (
        await client.get("/api/grants/report", params={"department": HZ_DEPT}, headers=wc)
    ).json()
    assert [x["camera"] for x in rep["items"]] == [CAM1]
    rep = (
        await client.get("/api/grants/report", params={"username": "someone"}, headers=wc)
    ).json()
    assert [x["action"] for x in rep["items"]] == ["fabric.serve"]
    rep = (await client.get("/api/grants/report", params={"camera": CAM2}, headers=wc)).json()
    assert [x["camera"] for x in rep["items"]] == [CAM2]
    r = await client.get(
        "/api/grants/report", params={"since": _when(1), "until": _when(-1)}, headers=wc
    )
    assert r.status_code == 422 and "until" in _fields(r)
    r = await client.get("/api/grants/report/export", params={"grant": "G0123456789ab"}, headers=wc)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("at,user,action,camera")
    assert len(lines) == 3 and all("G0123456789ab" in line for line in lines[1:])
    page = (
        await client.get("/api/audit", params={"action": "grant.report.export"}, headers=wc)
    ).json()
    assert page["total"] == 1


async def test_camera_node_admission_and_the_playback_hook(
    ctx: NodeContext, client: httpx.AsyncClient, node: dict[str, Any]
) -> None:
    """What the camera's node checks on a fabric open/record (``admit``) and what the recording
    capability's one authorisation point (``authorise_playback``) answers, by grant."""
    from sqlalchemy import update

    from vmesh.recording.access import authorise_playback

    hz_node, other_node = "33010000002006000001", "33010200002006000001"
    r = await client.post(
        "/api/grants", json=_application(org=None, codes=[CAM2]), headers=bearer(node["hz"])
    )
    gid = r.json()["id"]
    wc = bearer(node["wc"])
    await client.post(f"/api/grants/{gid}/decision", json={"decision": "approve"}, headers=wc)
    async with ctx.db.transaction() as s:  # as if applied from the Hangzhou node
        await s.execute(update(GrantRow).where(GrantRow.id == gid).values(applicant_node=hz_node))
    svc = ctx.grants
    assert svc is not None

    assert await svc.admit(CAM2, "33032800002006000009", None) is None  # its division holds it
    with pytest.raises(Forbidden, match="holds no grant"):
        await svc.admit(CAM2, hz_node, None)
    with pytest.raises(Forbidden, match=f"grant {gid} is not a grant of node"):
        await svc.admit(CAM2, other_node, gid)
    with pytest.raises(Forbidden, match=f"grant {gid} does not cover camera {CAM1}"):
        await svc.admit(CAM1, hz_node, gid)
    use = await svc.admit(CAM2, hz_node, gid)
    assert use is not None and (use.grant, use.purpose) == (gid, "防汛值守 flood watch")

    hz_p = await _principal(ctx, client, node["hz"])
    async with ctx.db.transaction() as s:  # back to this node for the viewer-side checks
        await s.execute(
            update(GrantRow).where(GrantRow.id == gid).values(applicant_node=ctx.config.node.code)
        )
    played = await authorise_playback(ctx, hz_p, CAM2)
    assert (played.grant, played.purpose, played.origin_node) == (gid, use.purpose, None)

    r = await client.post(f"/api/grants/{gid}/revoke", json={"reason": "结束"}, headers=wc)
    assert r.status_code == 200, r.text
    with pytest.raises(Forbidden, match=f"grant {gid} revoked at"):
        await authorise_playback(ctx, hz_p, CAM2)
    async with ctx.db.transaction() as s:
        await s.execute(update(GrantRow).where(GrantRow.id == gid).values(applicant_node=hz_node))
    with pytest.raises(Forbidden, match=f"grant {gid} revoked at"):
        await svc.admit(CAM2, hz_node, gid)
    page = (
        await client.get("/api/audit", params={"action": "recording.playback"}, headers=wc)
    ).json()
    assert [(x["result"], "revoked" in x["detail"]["reason"]) for x in page["items"]] == [
        ("denied", True)
    ]


async def test_the_province_grants_another_nodes_camera_within_its_authority(
    ctx: NodeContext, client: httpx.AsyncClient, node: dict[str, Any]
) -> None:
    """This node is the province; FAR_A is a camera of node 330483 (its catalogue): the province's
    operator grants it to Hangzhou directly (decided here, sent to the owner), a Hangzhou operator
    may not (scope), an application may not name a decider that is not above the owner, and a
    decision forged by a node not above the owner is refused and audited where it arrives."""
    far_node = "33048300002006000001"
    prov = bearer(await add_user(ctx, "prov-op", ["operator"], PROV))
    direct = _application(grantee="unit", grantee_code=HZ, org=None, codes=[FAR_A])
    before = await _counts(ctx)
    r = await client.post("/api/grants/direct", json=direct, headers=bearer(node["hz"]))
    assert r.status_code == 403 and f"does not cover {FAR_A}" in r.json()["detail"], r.text
    for bad, field in (
        ({"grantee_code": "hz"}, "grantee_code"),
        ({"grantee_code": "33990000002166000001"}, "grantee_code"),  # in no catalogue
        ({"codes": [FAR_A, FAR_B]}, "codes"),  # two owners
        ({"purpose": " "}, "purpose"),
    ):
        r = await client.post("/api/grants/direct", json=direct | bad, headers=prov)
        assert r.status_code == 422 and field in _fields(r), (bad, r.text)
    r = await client.post(
        "/api/grants",
        json=_application(org=None, codes=[FAR_A], decider=HZ_NODE),
        headers=bearer(node["hz"]),
    )
    assert r.status_code == 422 and "is not above the owner" in _fields(r)["decider"], r.text
    assert await _counts(ctx) == before  # nothing half-written

    r = await client.post("/api/grants/direct", json=direct, headers=prov)
    assert r.status_code == 201, r.text
    g = r.json()
    assert (g["state"], g["version"], g["decider_node"], g["owner_node"]) == (
        "active", 2, ctx.config.node.code, far_node,
    )  # fmt: skip
    async with ctx.db.sessions() as s:
        targets = (await s.scalars(select(GrantOutbox.target_node))).all()
    assert targets == [far_node]  # the grantee (Hangzhou) is this node's own unit
    rows = (await client.get("/api/audit", params={"action": "grant.approve"}, headers=prov)).json()
    assert [(x["detail"]["grant"], x["detail"]["direct"]) for x in rows["items"]] == [
        (g["id"], True)
    ]
    hzv = await _principal(ctx, client, node["hzv"])
    svc = ctx.grants
    assert svc is not None
    found = await svc.authorise_code(hzv, FAR_A)
    assert found is not None and found[1].grant == g["id"]
    # Only the deciding node's operators with the cameras in scope revoke it.
    r = await client.post(
        f"/api/grants/{g['id']}/revoke", json={"reason": "x"}, headers=bearer(node["hz"])
    )
    assert r.status_code == 403, r.text
    r = await client.post(f"/api/grants/{g['id']}/revoke", json={"reason": "结束"}, headers=prov)
    assert r.status_code == 200 and r.json()["state"] == "revoked", r.text
    with pytest.raises(Forbidden, match=f"grant {g['id']} revoked at .* by prov-op: 结束"):
        await svc.authorise_code(hzv, FAR_A)

    # A decision forged at Hangzhou over node 330483's camera, arriving here.
    forged = dict(g, id="G00000000beef", decider_node=HZ_NODE, decider_scope=HZ, version=2)
    forged |= {"status": "approved", "revoked_by": "", "revoked_at": None, "revoke_reason": ""}
    with pytest.raises(Forbidden, match=f"node {HZ_NODE} is not above node {far_node}"):
        await svc._on_rpc({"op": "sync", "grant": forged, "from": HZ_NODE})
    assert (await client.get("/api/grants/G00000000beef", headers=prov)).status_code == 404
    admin = bearer(await add_user(ctx, "prov-admin", ["admin"], PROV))
    rows = (await client.get("/api/audit", params={"action": "grant.refuse"}, headers=admin)).json()
    assert [(x["result"], x["detail"]["grant"]) for x in rows["items"]] == [
        ("denied", "G00000000beef")
    ]
    # A later version of the province's grant claiming another decider is refused too.
    other = dict(forged, id=g["id"], version=4, decider_node="33040000002006000001")
    other["decider_scope"] = region_code("33040000")
    with pytest.raises(Forbidden, match=f"decided at node {ctx.config.node.code}, not"):
        await svc._on_rpc({"op": "sync", "grant": other, "from": "33040000002006000001"})
