"""Login, sessions, tokens, lockout, roles and scope through the HTTP API, with their audit rows.

Org units: Zhejiang (province) > Wenzhou (city) > Lucheng and Wencheng (counties), plus a
department in Wencheng and a camera in Lucheng. ``padmin`` is a province admin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import delete, select, update

from factories import add_entry, add_region, add_user, bearer, region_code
from vmesh.audit.models import AuditRecord
from vmesh.auth.models import LoginSession, User
from vmesh.auth.tokens import COOKIE_NAME
from vmesh.config import HttpConfig
from vmesh.directory.models import Entry
from vmesh.identity.codes import compose
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


@dataclass
class Org:
    province: str
    city: str
    lucheng: str
    wencheng: str
    wencheng_police: str
    lucheng_camera: str
    admin: str  # secret of the province admin "padmin"


@pytest.fixture
async def org(ctx: NodeContext) -> Org:
    o = Org(
        province=region_code("33000000"),
        city=region_code("33030000"),
        lucheng=region_code("33030200"),
        wencheng=region_code("33032800"),
        wencheng_police=compose("33032800", "215", 1),
        lucheng_camera=compose("33030200", "132", 7),
        admin="",
    )
    async with ctx.db.transaction() as s:
        await add_region(s, o.province, "浙江省", "province")
        await add_region(s, o.city, "温州市", "city", o.province)
        await add_region(s, o.lucheng, "鹿城区", "county", o.city)
        await add_region(s, o.wencheng, "文成县", "county", o.city)
        await add_entry(s, o.wencheng_police, "文成县公安局", "department", None, o.wencheng)
        await add_entry(s, o.lucheng_camera, "鹿城广场摄像机", "camera", None, o.lucheng)
    o.admin = await add_user(ctx, "padmin", ["admin"], o.province, PASSWORD)
    return o


async def audit_rows(ctx: NodeContext, action: str, **where: str) -> list[AuditRecord]:
    async with ctx.db.sessions() as s:
        q = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.id)
        for k, v in where.items():
            q = q.where(getattr(AuditRecord, k) == v)
        return list((await s.scalars(q)).all())


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"username": username, "password": password})


def fresh_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A second client on the same app with its own (empty) cookie jar."""
    return httpx.AsyncClient(transport=client._transport, base_url=client.base_url)


# ------------------------------------------------------------------------------------ login


async def test_login_sets_strict_httponly_cookie_and_me_works(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    r = await login(client, "padmin", PASSWORD)
    assert r.status_code == 200, r.text
    me = r.json()["user"]
    assert me["username"] == "padmin" and me["roles"] == ["admin"]
    assert me["scope_code"] == org.province and me["scope_name"] == "浙江省"
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace("Strict", "strict")
    assert "Secure" not in set_cookie

    r = await client.get("/api/auth/me")  # the cookie jar now holds the session
    assert r.status_code == 200 and r.json()["username"] == "padmin"

    rows = await audit_rows(ctx, "auth.login", username="padmin")
    assert [x.result for x in rows] == ["ok"]
    assert rows[0].client_addr == "10.1.2.3" and rows[0].target_code == org.province


async def test_secure_cookie_when_configured(ctx: NodeContext, org: Org) -> None:
    from vmesh.api.app import create_app

    cfg = ctx.config.model_copy(update={"http": HttpConfig(secure_cookies=True)})
    app = create_app(NodeContext(config=cfg, db=ctx.db, audit=ctx.audit))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://node.test"
    ) as c:
        r = await login(c, "padmin", PASSWORD)
    assert r.status_code == 200
    assert "Secure" in r.headers["set-cookie"]


async def test_wrong_password_and_unknown_user_are_401_and_audited(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    r = await login(client, "padmin", "not the password")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert COOKIE_NAME not in r.headers.get("set-cookie", "")
    r2 = await login(client, "nobody", "whatever123")
    assert r2.status_code == 401
    # The two refusals look the same to the caller.
    assert r.json()["detail"] == r2.json()["detail"]

    (bad,) = await audit_rows(ctx, "auth.login", username="padmin")
    assert bad.result == "failed" and json.loads(bad.detail)["reason"] == "wrong password"
    (unknown,) = await audit_rows(ctx, "auth.login", username="nobody")
    assert unknown.result == "failed" and json.loads(unknown.detail)["reason"] == "unknown user"


async def test_lockout_after_failures_then_unlock(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    await add_user(ctx, "clerk", ["viewer"], org.lucheng, PASSWORD)
    n = ctx.config.auth.lockout_failures
    codes = [(await login(client, "clerk", f"wrong-{i}-pass")).status_code for i in range(n)]
    assert codes == [401] * (n - 1) + [423]

    # Locked: even the right password is refused, and says so.
    r = await login(client, "clerk", PASSWORD)
    assert r.status_code == 423 and "locked" in r.json()["detail"]
    # Failures keep counting while locked.
    assert (await login(client, "clerk", "still-wrong")).status_code == 423

    admin = bearer(org.admin)
    u = (await client.get("/api/users/clerk", headers=admin)).json()
    assert u["locked"] is True and u["failed_logins"] == n + 1

    results = [x.result for x in await audit_rows(ctx, "auth.login", username="clerk")]
    assert results == ["failed"] * n + ["denied", "denied"]

    r = await client.post("/api/users/clerk/unlock", headers=admin)
    assert r.status_code == 200 and r.json()["locked"] is False
    assert (await audit_rows(ctx, "user.unlock"))[0].username == "padmin"
    assert (await login(client, "clerk", PASSWORD)).status_code == 200


async def test_expired_lock_relocks_on_next_failure(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    await add_user(ctx, "clerk", ["viewer"], org.lucheng, PASSWORD)
    n = ctx.config.auth.lockout_failures
    for i in range(n):
        await login(client, "clerk", f"wrong-{i}-pass")
    # Let the lock run out without waiting for it.
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with ctx.db.transaction() as s:
        await s.execute(update(User).where(User.username == "clerk").values(locked_until=past))
    # The count was not cleared: one more wrong password locks again at once.
    assert (await login(client, "clerk", "wrong-again")).status_code == 423
    async with ctx.db.transaction() as s:
        await s.execute(update(User).where(User.username == "clerk").values(locked_until=past))
    # A right password after expiry gets in and clears the count.
    assert (await login(client, "clerk", PASSWORD)).status_code == 200
    u = (await client.get("/api/users/clerk", headers=bearer(org.admin))).json()
    assert u["failed_logins"] == 0 and u["locked"] is False


async def test_disabled_user_is_refused(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    secret = await add_user(ctx, "clerk", ["viewer"], org.lucheng, PASSWORD)
    assert (await client.get("/api/auth/me", headers=bearer(secret))).status_code == 200
    r = await client.patch("/api/users/clerk", json={"disabled": True}, headers=bearer(org.admin))
    assert r.status_code == 200 and r.json()["disabled"] is True

    assert (await client.get("/api/auth/me", headers=bearer(secret))).status_code == 401
    r = await login(client, "clerk", PASSWORD)
    assert r.status_code == 403 and "disabled" in r.json()["detail"]
    (row,) = await audit_rows(ctx, "auth.login", username="clerk")
    assert row.result == "denied" and json.loads(row.detail)["reason"] == "disabled"
    (change,) = await audit_rows(ctx, "user.update")
    assert json.loads(change.detail)["changes"]["disabled"] == [False, True]


# -------------------------------------------------------------------------- sessions and tokens


async def test_logout_ends_the_session(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    r = await login(client, "padmin", PASSWORD)
    secret = r.cookies[COOKIE_NAME]
    r = await client.post("/api/auth/logout")
    assert r.status_code == 204
    assert 'vmesh_session=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    assert (await client.get("/api/auth/me", headers=bearer(secret))).status_code == 401
    (row,) = await audit_rows(ctx, "auth.logout")
    assert row.username == "padmin" and row.result == "ok"


async def test_bearer_token_works_until_revoked(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    r = await client.post(
        "/api/auth/tokens", json={"label": "nightly export", "days": 30}, headers=bearer(org.admin)
    )
    assert r.status_code == 201, r.text
    body = r.json()
    token = body["token"]
    assert token.startswith("vmt_") and body["label"] == "nightly export"
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)

    async with fresh_client(client) as c:
        r = await c.get("/api/auth/me", headers=bearer(token))
        assert r.status_code == 200 and r.json()["username"] == "padmin"
        # The secret is stored only as a hash.
        async with ctx.db.sessions() as s:
            stored = (await s.scalars(select(LoginSession.token_hash))).all()
        assert token not in stored

        listed = (await c.get("/api/auth/tokens", headers=bearer(token))).json()
        assert [t["label"] for t in listed["items"]] == ["nightly export"]
        assert listed["items"][0]["last_used_at"] is not None

        r = await c.delete(f"/api/auth/tokens/{body['id']}", headers=bearer(token))
        assert r.status_code == 204
        assert (await c.get("/api/auth/me", headers=bearer(token))).status_code == 401

    (created,) = await audit_rows(ctx, "auth.token.create")
    assert json.loads(created.detail)["label"] == "nightly export"
    assert len(await audit_rows(ctx, "auth.token.revoke")) == 1


async def test_expired_token_and_session_are_refused(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    r = await client.post("/api/auth/tokens", json={"label": "short"}, headers=bearer(org.admin))
    token = r.json()["token"]
    async with ctx.db.transaction() as s:
        await s.execute(
            update(LoginSession).values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    for secret in (token, org.admin):
        r = await client.get("/api/auth/me", headers=bearer(secret))
        assert r.status_code == 401 and "expired" in r.json()["detail"]
    async with fresh_client(client) as c:
        c.cookies.set(COOKIE_NAME, org.admin)
        assert (await c.get("/api/auth/me")).status_code == 401


async def test_bad_token_requests_name_the_field(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post("/api/auth/tokens", json={"label": " "}, headers=bearer(org.admin))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "label"
    r = await client.post(
        "/api/auth/tokens", json={"label": "x", "days": 5000}, headers=bearer(org.admin)
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "days"
    assert (await client.get("/api/auth/me")).status_code == 401


async def test_change_own_password(ctx: NodeContext, client: httpx.AsyncClient, org: Org) -> None:
    other = await add_user(ctx, "clerk", ["viewer"], org.lucheng, PASSWORD)
    r = await login(client, "clerk", PASSWORD)
    assert r.status_code == 200
    r = await client.post(
        "/api/auth/password", json={"current_password": "nope-nope", "new_password": "brand new pw"}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "current_password"
    r = await client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": "brand new pw"}
    )
    assert r.status_code == 204
    assert (await client.get("/api/auth/me")).status_code == 200  # this session stays
    assert (await client.get("/api/auth/me", headers=bearer(other))).status_code == 401
    async with fresh_client(client) as c:
        assert (await login(c, "clerk", PASSWORD)).status_code == 401
        assert (await login(c, "clerk", "brand new pw")).status_code == 200
    results = [x.result for x in await audit_rows(ctx, "user.password")]
    assert results == ["failed", "ok"]


# ------------------------------------------------------------------------------- users, roles


async def test_admin_creates_user_who_can_log_in(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    r = await client.post(
        "/api/users",
        json={
            "username": "wc_police",
            "display_name": "文成公安值班",
            "password": "police-pass-1",
            "roles": ["operator", "viewer"],
            "scope_code": org.wencheng,
            "department_code": org.wencheng_police,
        },
        headers=bearer(org.admin),
    )
    assert r.status_code == 201, r.text
    u = r.json()
    assert u["roles"] == ["operator", "viewer"] and u["department_code"] == org.wencheng_police
    assert u["scope_name"] == "文成县" and u["disabled"] is False and u["locked"] is False
    async with ctx.db.sessions() as s:
        stored = await s.scalar(select(User.password_hash).where(User.username == "wc_police"))
    assert stored is not None and stored.startswith("$argon2id$")

    async with fresh_client(client) as c:
        r = await login(c, "wc_police", "police-pass-1")
        assert r.status_code == 200 and r.json()["user"]["department_code"] == org.wencheng_police
    (row,) = await audit_rows(ctx, "user.create", username="padmin")
    assert row.target_code == org.wencheng and row.result == "ok"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"roles": ["admin", "wizard"]}, "roles[1]", "unknown role"),
        ({"roles": []}, "roles", "at least one role"),
        ({"password": "short"}, "password", "at least 8"),
        ({"password": "newclerk", "username": "newclerk"}, "password", "username"),
        ({"username": "bad name!"}, "username", "letters, digits"),
        ({"scope_code": "33999900002166000001"}, "scope_code", "no org unit"),
        ({"scope_code": "CAMERA"}, "scope_code", "is a camera"),
        ({"department_code": "WENCHENG"}, "department_code", "is a region"),
    ],
)
async def test_bad_new_user_is_refused_naming_the_field(
    ctx: NodeContext,
    client: httpx.AsyncClient,
    org: Org,
    change: dict[str, object],
    field: str,
    reason: str,
) -> None:
    body: dict[str, object] = {
        "username": "newclerk",
        "password": "good-pass-1",
        "roles": ["viewer"],
        "scope_code": org.lucheng,
    }
    body |= change
    subst = {"CAMERA": org.lucheng_camera, "WENCHENG": org.wencheng}
    body = {k: subst.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    r = await client.post("/api/users", json=body, headers=bearer(org.admin))
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["field"] == field and reason in err["reason"]
    users = (await client.get("/api/users", headers=bearer(org.admin))).json()
    assert [u["username"] for u in users["items"]] == ["padmin"]  # nothing half-written


async def test_duplicate_username_is_409(client: httpx.AsyncClient, org: Org) -> None:
    body = {
        "username": "padmin",
        "password": "good-pass-1",
        "roles": ["viewer"],
        "scope_code": org.lucheng,
    }
    r = await client.post("/api/users", json=body, headers=bearer(org.admin))
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "username"


async def test_viewer_and_operator_cannot_manage_users(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    for role in ("viewer", "operator"):
        secret = await add_user(ctx, f"a_{role}", [role], org.province, PASSWORD)
        body = {
            "username": f"made_by_{role}",
            "password": "good-pass-1",
            "roles": ["admin"],
            "scope_code": org.province,
        }
        r = await client.post("/api/users", json=body, headers=bearer(secret))
        assert r.status_code == 403 and "admin" in r.json()["detail"]
        assert (await client.get("/api/users", headers=bearer(secret))).status_code == 403
        r = await client.post("/api/users/padmin/unlock", headers=bearer(secret))
        assert r.status_code == 403
    names = [
        u["username"]
        for u in (await client.get("/api/users", headers=bearer(org.admin))).json()["items"]
    ]
    assert "made_by_viewer" not in names and "made_by_operator" not in names


async def test_admin_cannot_disable_self_or_drop_own_admin(
    client: httpx.AsyncClient, org: Org
) -> None:
    r = await client.patch("/api/users/padmin", json={"disabled": True}, headers=bearer(org.admin))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "disabled"
    r = await client.patch(
        "/api/users/padmin", json={"roles": ["viewer"]}, headers=bearer(org.admin)
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "roles"


# ------------------------------------------------------------------------------------- scope


async def test_county_admin_is_confined_to_its_county(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    lc_admin = await add_user(ctx, "lc_admin", ["admin"], org.lucheng, PASSWORD)
    await add_user(ctx, "wc_viewer", ["viewer"], org.wencheng, PASSWORD)
    await add_user(ctx, "lc_viewer", ["viewer"], org.lucheng, PASSWORD)
    h = bearer(lc_admin)

    # Cannot create a user scoped to the other county; the refusal names the field and is
    # worded as for a code that does not exist.
    body = {
        "username": "spy",
        "password": "good-pass-1",
        "roles": ["viewer"],
        "scope_code": org.wencheng,
    }
    r = await client.post("/api/users", json=body, headers=h)
    assert r.status_code == 422
    assert r.json()["errors"][0] == {
        "field": "scope_code",
        "value": org.wencheng,
        "reason": "no org unit with this code in your scope",
    }
    # Nor one scoped above itself.
    r = await client.post("/api/users", json=body | {"scope_code": org.city}, headers=h)
    assert r.status_code == 422
    denied = await audit_rows(ctx, "user.create", result="denied")
    assert [d.target_code for d in denied] == [org.wencheng, org.city]
    assert all(d.username == "lc_admin" for d in denied)

    # Lists only users in its own subtree.
    page = (await client.get("/api/users", headers=h)).json()
    assert sorted(u["username"] for u in page["items"]) == ["lc_admin", "lc_viewer"]
    assert page["total"] == 2
    # The other county's users do not exist for it.
    assert (await client.get("/api/users/wc_viewer", headers=h)).status_code == 404
    r = await client.patch("/api/users/wc_viewer", json={"disabled": True}, headers=h)
    assert r.status_code == 404
    assert (await client.post("/api/users/wc_viewer/unlock", headers=h)).status_code == 404
    # Nor can it move its own users out of its county.
    r = await client.patch("/api/users/lc_viewer", json={"scope_code": org.wencheng}, headers=h)
    assert r.status_code == 422
    assert (await audit_rows(ctx, "user.update", result="denied"))[0].target_code == org.wencheng

    # Creating inside its own county works.
    r = await client.post("/api/users", json=body | {"scope_code": org.lucheng}, headers=h)
    assert r.status_code == 201
    # The province admin sees everyone.
    page = (await client.get("/api/users?limit=2", headers=bearer(org.admin))).json()
    assert page["total"] == 5 and len(page["items"]) == 2


async def test_users_query_and_paging(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    for i in range(3):
        await add_user(
            ctx, f"op{i}", ["operator"], org.lucheng, PASSWORD, display_name=f"鹿城值班员{i}"
        )
    h = bearer(org.admin)
    page = (await client.get("/api/users", params={"q": "值班", "limit": 2}, headers=h)).json()
    assert page["total"] == 3 and [u["username"] for u in page["items"]] == ["op0", "op1"]
    page = (await client.get("/api/users", params={"q": "值班", "offset": 2}, headers=h)).json()
    assert [u["username"] for u in page["items"]] == ["op2"]
    r = await client.get("/api/users", params={"limit": 0}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limit"


async def test_patch_changes_fields_and_audits_old_and_new(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    await add_user(ctx, "clerk", ["viewer"], org.wencheng, PASSWORD,
                   department_code=org.wencheng_police)  # fmt: skip
    h = bearer(org.admin)
    r = await client.patch(
        "/api/users/clerk",
        json={"display_name": "文成值班", "roles": ["operator", "viewer"], "department_code": None},
        headers=h,
    )
    assert r.status_code == 200, r.text
    u = r.json()
    assert u["display_name"] == "文成值班" and u["roles"] == ["operator", "viewer"]
    assert u["department_code"] is None and u["scope_code"] == org.wencheng  # untouched
    (row,) = await audit_rows(ctx, "user.update")
    changes = json.loads(row.detail)["changes"]
    assert changes["roles"] == [["viewer"], ["operator", "viewer"]]
    assert changes["department_code"] == [org.wencheng_police, None]
    assert "scope_code" not in changes
    r = await client.patch("/api/users/clerk", json={"colour": "red"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "colour"


async def test_a_scope_gone_from_the_directory_grants_nothing(
    ctx: NodeContext, client: httpx.AsyncClient, org: Org
) -> None:
    """The session check reads the user's scope with the session (one statement): a user whose
    scope entry was removed is refused with the reason, not given the whole directory."""
    village = compose("33032800", "216", 9)
    async with ctx.db.transaction() as s:
        await add_entry(s, village, "文成县临时工作组", "virtual_org", None, org.wencheng)
    secret = await add_user(ctx, "temp_op", ["operator"], village)
    r = await client.get("/api/auth/me", headers=bearer(secret))
    assert r.status_code == 200 and r.json()["scope_code"] == village
    async with ctx.db.transaction() as s:
        await s.execute(delete(Entry).where(Entry.code == village))
    r = await client.get("/api/auth/me", headers=bearer(secret))
    assert r.status_code == 403
    assert f"scope {village} is not in the directory" in r.json()["detail"]
    r = await client.get(f"/api/directory/entries/{org.lucheng_camera}", headers=bearer(secret))
    assert r.status_code == 403
