"""Directory HTTP API through the app: roles, scope (refusals audited), detail views audited,
problem+json errors naming the field, paging, import and export."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from directory_sample import PROVINCE, build_sample
from factories import add_user, bearer
from vmesh.audit.models import AuditRecord
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

XIHU = "33010600002166000001"


@pytest.fixture
async def sample(ctx: NodeContext) -> dict[str, str]:
    return await build_sample(ctx)


async def audit_rows(ctx: NodeContext, action: str) -> list[AuditRecord]:
    await ctx.audit.seal()
    async with ctx.db.sessions() as s:
        return list(
            (
                await s.scalars(
                    select(AuditRecord)
                    .where(AuditRecord.action == action)
                    .order_by(AuditRecord.seq)
                )
            ).all()
        )


async def test_browsing_the_tree_level_by_level(
    ctx: NodeContext, client: httpx.AsyncClient, sample: dict[str, str]
) -> None:
    h = bearer(await add_user(ctx, "viewer1", ["viewer"], PROVINCE))
    roots = (await client.get("/api/directory/roots", headers=h)).json()
    assert [(r["name"], r["child_count"], r["has_children"]) for r in roots] == [
        ("浙江省", 2, True)
    ]
    page = (await client.get(f"/api/directory/entries/{sample['zt']}/children", headers=h)).json()
    assert page["total"] == 1
    [village] = page["items"]
    assert (village["name"], village["child_count"], village["online_count"]) == ("龙坞村", 3, 2)
    page = (
        await client.get(f"/api/directory/entries/{sample['longwu']}/children?limit=2", headers=h)
    ).json()
    assert (page["total"], len(page["items"]), page["limit"]) == (3, 2, 2)


async def test_viewing_an_entry_is_audited(
    ctx: NodeContext, client: httpx.AsyncClient, sample: dict[str, str]
) -> None:
    h = bearer(await add_user(ctx, "viewer1", ["viewer"], PROVINCE))
    r = await client.get(f"/api/directory/entries/{sample['cam_gate']}", headers=h)
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "龙坞村口摄像机" and body["type_name"] == "IPC"
    assert [p["name"] for p in body["path"]] == [
        "浙江省",
        "杭州市",
        "西湖区",
        "转塘街道",
        "龙坞村",
        "龙坞村口摄像机",
    ]
    [row] = await audit_rows(ctx, "directory.view")
    assert (row.username, row.target_code, row.result, row.client_addr) == (
        "viewer1",
        sample["cam_gate"],
        "ok",
        "10.1.2.3",
    )


async def test_a_county_user_neither_sees_nor_changes_another_county(
    ctx: NodeContext, client: httpx.AsyncClient, sample: dict[str, str]
) -> None:
    h = bearer(await add_user(ctx, "xihu_op", ["operator"], XIHU))
    roots = (await client.get("/api/directory/roots", headers=h)).json()
    assert [r["name"] for r in roots] == ["西湖区"]
    other = sample["cam_xk"]  # Wencheng county's camera
    for method, url, body in [
        ("GET", f"/api/directory/entries/{other}", None),
        ("GET", f"/api/directory/entries/{sample['wc']}/children", None),
        ("PATCH", f"/api/directory/entries/{other}", {"name": "改名"}),
        ("DELETE", f"/api/directory/entries/{other}", None),
        (
            "POST",
            "/api/directory/entries",
            {"parent_code": sample["xikeng"], "kind": "camera", "name": "越界"},
        ),
        ("GET", f"/api/directory/search?under={sample['wc']}", None),
    ]:
        r = await client.request(method, url, json=body, headers=h)
        assert r.status_code == 404, (method, url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    denied = [r for r in await audit_rows_all(ctx) if r.result == "denied"]
    assert {(r.username, r.action) for r in denied} == {
        ("xihu_op", "directory.view"),
        ("xihu_op", "directory.update"),
        ("xihu_op", "directory.delete"),
        ("xihu_op", "directory.create"),
        ("xihu_op", "directory.search"),
    }
    assert {r.target_code for r in denied} == {other, sample["wc"], sample["xikeng"]}
    # Search only ever returns the user's own subtree.
    res = (await client.get("/api/directory/search?q=村口", headers=h)).json()
    assert [i["name"] for i in res["items"]] == ["龙坞村口摄像机"]
    r = await client.get(f"/api/directory/entries/{sample['cam_gate']}", headers=h)
    assert r.json()["path"][0]["name"] == "西湖区"


async def audit_rows_all(ctx: NodeContext) -> list[AuditRecord]:
    await ctx.audit.seal()
    async with ctx.db.sessions() as s:
        return list((await s.scalars(select(AuditRecord).order_by(AuditRecord.seq))).all())


async def test_writes_need_operator_or_admin(
    ctx: NodeContext, client: httpx.AsyncClient, sample: dict[str, str]
) -> None:
    viewer = bearer(await add_user(ctx, "viewer1", ["viewer"], PROVINCE))
    r = await client.post(
        "/api/directory/entries",
        headers=viewer,
        json={"parent_code": sample["longwu"], "kind": "camera", "name": "新"},
    )
    assert r.status_code == 403
    r = await client.get("/api/directory/roots")
    assert r.status_code == 401


async def test_create_change_delete_through_the_api(
    ctx: NodeContext, client: httpx.AsyncClient, sample: dict[str, str]
) -> None:
    h = bearer(await add_user(ctx, "op", ["operator"], XIHU))
    r = await client.post(
        "/api/directory/entries",
        headers=h,
        json={
            "parent_code": sample["longwu"],
            "kind": "camera",
            "type_code": "131",
            "name": "龙坞新村东",
            "lat": 30.1,
            "lon": 120.1,
            "tags": ["新"],
            "attrs": {"rtsp": "rtsp://cam/1"},
        },
    )
    assert r.status_code == 201, r.text
    cam = r.json()
    assert cam["code"] == "33010601001316000001" and cam["attrs"] == {"rtsp": "rtsp://cam/1"}
    r = await client.patch(
        f"/api/directory/entries/{cam['code']}", headers=h, json={"status": "online", "version": 1}
    )
    assert (r.status_code, r.json()["version"], r.json()["status"]) == (200, 2, "online")
    r = await client.patch(
        f"/api/directory/entries/{cam['code']}", headers=h, json={"name": "x", "version": 1}
    )
    assert r.status_code == 409
    found = (await client.get("/api/directory/search?q=新村", headers=h)).json()
    assert [i["code"] for i in found["items"]] == [cam["code"]]
    assert (
        await client.delete(f"/api/directory/entries/{cam['code']}", headers=h)
    ).status_code == 204
    assert (await client.get(f"/api/directory/entries/{cam['code']}", headers=h)).status_code == 404
    actions = [(r.action, r.target_code) for r in await audit_rows_all(ctx) if r.username == "op"]
    assert [a for a in actions if a[0] != "directory.view"] == [
        ("directory.create", cam["code"]),
        ("directory.update", cam["code"]),
        ("directory.delete", cam["code"]),
    ]


async def test_bad_input_names_the_field(
    ctx: NodeContext, client: httpx.AsyncClient, sample: dict[str, str]
) -> None:
    h = bearer(await add_user(ctx, "op", ["operator"], PROVINCE))
    r = await client.post(
        "/api/directory/entries",
        headers=h,
        json={"parent_code": sample["longwu"], "kind": "camera", "name": "", "lat": 200, "lon": 1},
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"name", "lat"}
    r = await client.get("/api/directory/search?code_prefix=33x&sort=size", headers=h)
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"code_prefix", "sort"}


async def test_import_and_export_over_http(
    ctx: NodeContext, client: httpx.AsyncClient, sample: dict[str, str]
) -> None:
    h = bearer(await add_user(ctx, "op", ["operator"], XIHU))
    good = (
        "code,parent_code,kind,name,status\n"
        f"33010601001326000050,{sample['longwu']},camera,茶山北坡,online\n"
        f"33010601001326000051,{sample['longwu']},camera,茶山南坡,offline\n"
    ).encode()
    r = await client.post(
        "/api/directory/import?dry_run=true",
        headers=h,
        files={"file": ("cams.csv", good, "text/csv")},
    )
    assert r.json() == {"rows": 2, "created": 2, "updated": 0, "dry_run": True}
    r = await client.post(
        "/api/directory/import", headers=h, files={"file": ("cams.csv", good, "text/csv")}
    )
    assert r.json() == {"rows": 2, "created": 2, "updated": 0, "dry_run": False}
    outside = (
        f"code,parent_code,kind,name\n33032801001326000050,{sample['xikeng']},camera,越界\n"
    ).encode()
    r = await client.post(
        "/api/directory/import", headers=h, files={"file": ("x.csv", outside, "text/csv")}
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {
            "field": "parent_code",
            "reason": "is outside your scope",
            "value": sample["xikeng"],
            "row": 1,
        }
    ]
    r = await client.get("/api/directory/export?format=csv", headers=h)
    assert r.status_code == 200
    lines = r.text.splitlines()
    assert lines[1].startswith(XIHU) and len(lines) == 1 + 8
    assert "茶山南坡" in r.text and "西坑" not in r.text
