"""GET /api/audit (filters, paging, who sees what), CSV export and the verify endpoint."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text

from factories import add_entry, add_region, add_user, bearer, region_code
from vmesh.audit.log import Actor
from vmesh.identity.codes import compose
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration


@dataclass
class Setup:
    lucheng: str
    wencheng: str
    lc_cam: str
    wc_cam: str
    admin: str  # province admin "padmin"
    lc_op: str  # operator scoped to Lucheng
    viewer: str  # viewer at province level
    t_mid: datetime  # between the first and second batch of rows


@pytest.fixture
async def st(ctx: NodeContext) -> Setup:
    province, city = region_code("33000000"), region_code("33030000")
    lucheng, wencheng = region_code("33030200"), region_code("33032800")
    lc_cam, wc_cam = compose("33030200", "132", 1), compose("33032800", "132", 1)
    async with ctx.db.transaction() as s:
        await add_region(s, province, "浙江省", "province")
        await add_region(s, city, "温州市", "city", province)
        await add_region(s, lucheng, "鹿城区", "county", city)
        await add_region(s, wencheng, "文成县", "county", city)
        await add_entry(s, lc_cam, "鹿城广场", "camera", None, lucheng)
        await add_entry(s, wc_cam, "文成车站", "camera", None, wencheng)
    admin = await add_user(ctx, "padmin", ["admin"], province)
    lc_op = await add_user(ctx, "lc_op", ["operator"], lucheng)
    viewer = await add_user(ctx, "pviewer", ["viewer"], province)
    alice = Actor("alice", "operator", "10.0.0.1")
    bob = Actor("bob", "viewer", "10.0.0.2")
    # First batch.
    await ctx.audit.write(alice, "directory.view", lc_cam, "ok", {"name": "鹿城广场"})
    await ctx.audit.write(bob, "directory.view", wc_cam, "denied")
    await ctx.audit.write(Actor("lc_op", "operator"), "directory.view", wc_cam, "denied")
    t_mid = datetime.now(UTC)
    # Second batch.
    await ctx.audit.write(alice, "directory.update", lc_cam, "ok", {"changes": {"name": 1}})
    await ctx.audit.write(bob, "directory.view", lc_cam, "ok")
    await ctx.audit.write(Actor("ghost"), "auth.login", "", "failed", {"reason": "unknown user"})
    return Setup(lucheng, wencheng, lc_cam, wc_cam, admin, lc_op, viewer, t_mid)


async def get(client: httpx.AsyncClient, secret: str, **params: object) -> dict:  # type: ignore[type-arg]
    r = await client.get("/api/audit", params=params, headers=bearer(secret))
    assert r.status_code == 200, r.text
    return r.json()


def key(row: dict) -> tuple[str, str, str, str]:  # type: ignore[type-arg]
    return (row["username"], row["action"], row["target_code"], row["result"])


async def test_rows_newest_first_with_all_fields(client: httpx.AsyncClient, st: Setup) -> None:
    page = await get(client, st.admin, username="alice")
    assert page["total"] == 2 and page["total_capped"] is False
    newest, oldest = page["items"]
    assert newest["seq"] > oldest["seq"]
    assert newest["action"] == "directory.update" and newest["detail"] == {"changes": {"name": 1}}
    assert oldest["roles"] == ["operator"] and oldest["client_addr"] == "10.0.0.1"
    assert oldest["detail"] == {"name": "鹿城广场"}
    assert datetime.fromisoformat(oldest["at"]).tzinfo is not None


async def test_filters(client: httpx.AsyncClient, st: Setup) -> None:
    rows = (await get(client, st.admin, action="directory.view", result="denied"))["items"]
    assert sorted(key(r) for r in rows) == sorted(
        [("bob", "directory.view", st.wc_cam, "denied"),
         ("lc_op", "directory.view", st.wc_cam, "denied")]
    )  # fmt: skip
    # action matches itself and its sub-actions only
    rows = (await get(client, st.admin, action="directory"))["items"]
    assert len(rows) == 5
    assert (await get(client, st.admin, action="directory.vie"))["total"] == 0
    # target is a code prefix: the Lucheng division
    rows = (await get(client, st.admin, target="330302", action="directory"))["items"]
    assert {r["target_code"] for r in rows} == {st.lc_cam} and len(rows) == 3
    rows = (await get(client, st.admin, target="330302"))["items"]  # + users made in Lucheng
    assert {r["target_code"] for r in rows} == {st.lc_cam, st.lucheng}
    # time range
    rows = (await get(client, st.admin, since=st.t_mid.isoformat(), username="bob"))["items"]
    assert [key(r) for r in rows] == [("bob", "directory.view", st.lc_cam, "ok")]
    rows = (await get(client, st.admin, until=st.t_mid.isoformat(), username="bob"))["items"]
    assert [key(r) for r in rows] == [("bob", "directory.view", st.wc_cam, "denied")]
    # a naive time is taken as UTC
    naive = st.t_mid.replace(tzinfo=None).isoformat()
    assert (await get(client, st.admin, since=naive, username="bob"))["total"] == 1


async def test_paging(client: httpx.AsyncClient, st: Setup) -> None:
    everything = await get(client, st.admin, limit=500)
    total = everything["total"]
    seqs = [r["seq"] for r in everything["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == total
    first = await get(client, st.admin, limit=2)
    second = await get(client, st.admin, limit=2, offset=2)
    assert first["total"] == second["total"] == total
    assert [r["seq"] for r in first["items"] + second["items"]] == seqs[:4]


async def test_bad_filters_name_the_field(client: httpx.AsyncClient, st: Setup) -> None:
    h = bearer(st.admin)
    r = await client.get("/api/audit", params={"result": "maybe"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "result"
    r = await client.get("/api/audit", params={"since": "yesterday"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "since"
    r = await client.get(
        "/api/audit",
        params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "until"


async def test_operator_sees_own_scope_and_own_actions_only(
    client: httpx.AsyncClient, st: Setup
) -> None:
    rows = (await get(client, st.lc_op, limit=500))["items"]
    seen = {key(r) for r in rows}
    assert ("alice", "directory.view", st.lc_cam, "ok") in seen
    assert ("bob", "directory.view", st.lc_cam, "ok") in seen
    assert ("lc_op", "directory.view", st.wc_cam, "denied") in seen  # its own action
    assert ("bob", "directory.view", st.wc_cam, "denied") not in seen  # other county
    assert all(r["username"] != "ghost" for r in rows)  # no directory target, not its own
    assert all(r["target_code"].startswith("330302") or r["username"] == "lc_op" for r in rows)
    # Filters cannot widen it.
    assert (await get(client, st.lc_op, target=st.wc_cam, username="bob"))["total"] == 0
    # The province admin sees all of those, and rows without a directory target.
    admin_rows = {key(r) for r in (await get(client, st.admin, limit=500))["items"]}
    assert ("bob", "directory.view", st.wc_cam, "denied") in admin_rows
    assert ("ghost", "auth.login", "", "failed") in admin_rows


async def test_viewer_and_anonymous_are_refused(client: httpx.AsyncClient, st: Setup) -> None:
    r = await client.get("/api/audit", headers=bearer(st.viewer))
    assert r.status_code == 403
    assert (await client.get("/api/audit")).status_code == 401
    assert (await client.get("/api/audit/export", headers=bearer(st.viewer))).status_code == 403
    assert (await client.get("/api/audit/verify", headers=bearer(st.lc_op))).status_code == 403


async def test_csv_export_applies_filters_and_is_audited(
    ctx: NodeContext, client: httpx.AsyncClient, st: Setup
) -> None:
    r = await client.get(
        "/api/audit/export",
        params={"format": "csv", "target": "330302", "action": "directory"},
        headers=bearer(st.lc_op),
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [(x["username"], x["action"]) for x in rows] == [
        ("alice", "directory.view"), ("alice", "directory.update"), ("bob", "directory.view"),
    ]  # fmt: skip
    assert json.loads(rows[0]["detail"]) == {"name": "鹿城广场"}
    assert int(rows[0]["seq"]) < int(rows[1]["seq"])  # oldest first
    # The export is itself on record, by whom and with which filters.
    page = await get(client, st.admin, action="audit.export")
    (row,) = page["items"]
    assert row["username"] == "lc_op" and row["detail"]["target"] == "330302"
    r = await client.get("/api/audit/export", params={"format": "xml"}, headers=bearer(st.admin))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "format"


async def test_verify_endpoint_reports_a_tampered_row(
    ctx: NodeContext, client: httpx.AsyncClient, st: Setup
) -> None:
    r = await client.get("/api/audit/verify", headers=bearer(st.admin))
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["checked"] >= 6
    async with ctx.db.transaction() as s:
        await s.execute(text("UPDATE audit_log SET username='mallory' WHERE seq=3"))
    body = (await client.get("/api/audit/verify", headers=bearer(st.admin))).json()
    assert body["ok"] is False and body["seq"] == 3 and "edited" in body["problem"]
