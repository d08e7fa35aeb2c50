"""HTTP routes of auth: login/logout, the caller's own account and tokens, user administration.

::

    POST   /api/auth/login            {username, password} -> 200 {user: Me} + cookie vmesh_session
                                      401 wrong credentials · 423 locked · 403 disabled
    POST   /api/auth/logout           -> 204; the session (or bearer token sent) ends
    GET    /api/auth/me               -> Me {id, username, display_name, roles[], scope_code,
                                             scope_name, department_code}
    POST   /api/auth/password         {current_password, new_password} -> 204
    POST   /api/auth/tokens           {label, days?} -> 201 {id, token, label, expires_at}
    GET    /api/auth/tokens           -> Page[Token]  (the caller's own)
    DELETE /api/auth/tokens/{id}      -> 204
    GET    /api/users?q=&offset=&limit=   -> Page[User]          (admin; users within the scope)
    POST   /api/users                 {username, display_name, password, roles[], scope_code,
                                       department_code?} -> 201 User
    GET    /api/users/{username}      -> User
    PATCH  /api/users/{username}      {display_name?, roles?, scope_code?, department_code?,
                                       disabled?, password?} -> User
    POST   /api/users/{username}/unlock -> User

The cookie is HttpOnly and SameSite=Strict, and Secure when ``http.secure_cookies`` is set. The
rules (scope, lockout, audit) live in ``vmesh.auth.service``; this module only translates HTTP.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from vmesh.api.pagination import Page, PageParams, page_params
from vmesh.auth import service
from vmesh.auth.deps import client_addr, current_principal, node_context, require_roles, secret_from
from vmesh.auth.principal import Principal
from vmesh.auth.tokens import COOKIE_NAME
from vmesh.node.context import NodeContext

router = APIRouter()

Ctx = Annotated[NodeContext, Depends(node_context)]
Caller = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(require_roles("admin"))]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"username": "admin", "password": "correct horse"}]},
    )


class Me(BaseModel):
    id: int
    username: str
    display_name: str
    roles: list[str]
    scope_code: str
    scope_name: str
    department_code: str | None


class LoginOut(BaseModel):
    user: Me
    expires_at: datetime


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    roles: list[str]
    scope_code: str
    scope_name: str
    department_code: str | None
    disabled: bool
    locked: bool
    locked_until: datetime | None
    failed_logins: int


class UserIn(_In):
    username: str
    display_name: str = ""
    password: str
    roles: list[str]
    scope_code: str
    department_code: str | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "username": "wencheng_op",
                    "display_name": "文成县值班员",
                    "password": "…",
                    "roles": ["operator"],
                    "scope_code": "33032800002166000001",
                }
            ]
        },
    )


class UserPatch(_In):
    display_name: str | None = None
    roles: list[str] | None = None
    scope_code: str | None = None
    department_code: str | None = None
    disabled: bool | None = None
    password: str | None = None


class PasswordIn(_In):
    current_password: str = Field(max_length=1024)
    new_password: str


class TokenIn(_In):
    label: str
    days: int | None = None


class TokenCreated(BaseModel):
    id: int
    token: str
    label: str
    expires_at: datetime | None


class TokenOut(BaseModel):
    id: int
    label: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool


def _me(u: service.UserInfo) -> Me:
    return Me(
        id=u.id,
        username=u.username,
        display_name=u.display_name,
        roles=u.roles,
        scope_code=u.scope_code,
        scope_name=u.scope_name,
        department_code=u.department_code,
    )


def _user(u: service.UserInfo) -> UserOut:
    return UserOut(
        id=u.id,
        username=u.username,
        display_name=u.display_name,
        roles=u.roles,
        scope_code=u.scope_code,
        scope_name=u.scope_name,
        department_code=u.department_code,
        disabled=u.disabled,
        locked=u.locked,
        locked_until=u.locked_until,
        failed_logins=u.failed_logins,
    )


# --------------------------------------------------------------------------------------------- auth


@router.post(
    "/auth/login",
    tags=["auth"],
    summary="Log in; sets the session cookie",
    responses={
        401: {"description": "wrong username or password"},
        403: {"description": "user disabled"},
        423: {"description": "locked after too many failures"},
    },
)
async def login_route(body: LoginIn, request: Request, response: Response, ctx: Ctx) -> LoginOut:
    result = await service.login(ctx, body.username, body.password, client_addr(request))
    response.set_cookie(
        COOKIE_NAME,
        result.secret,
        max_age=int(ctx.config.auth.session_hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=ctx.config.http.secure_cookies,
    )
    return LoginOut(user=_me(result.user), expires_at=result.expires_at)


@router.post("/auth/logout", tags=["auth"], status_code=204, summary="End this session")
async def logout_route(request: Request, ctx: Ctx) -> Response:
    await service.logout(ctx, secret_from(request), client_addr(request))
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        httponly=True,
        samesite="strict",
        secure=ctx.config.http.secure_cookies,
    )
    return response


@router.get("/auth/me", tags=["auth"], summary="Who am I")
async def me_route(p: Caller, ctx: Ctx) -> Me:
    return _me(await service.me(ctx, p))


@router.post(
    "/auth/password",
    tags=["auth"],
    status_code=204,
    summary="Change my password (my other console sessions end)",
)
async def password_route(body: PasswordIn, request: Request, p: Caller, ctx: Ctx) -> Response:
    await service.change_own_password(
        ctx, p, body.current_password, body.new_password, keep_secret=secret_from(request)
    )
    return Response(status_code=204)


@router.post(
    "/auth/tokens",
    tags=["auth"],
    status_code=201,
    summary="Create an API token (shown once; send as Authorization: Bearer)",
)
async def create_token_route(body: TokenIn, p: Caller, ctx: Ctx) -> TokenCreated:
    secret, info = await service.create_token(ctx, p, body.label, body.days)
    return TokenCreated(id=info.id, token=secret, label=info.label, expires_at=info.expires_at)


@router.get("/auth/tokens", tags=["auth"], summary="My API tokens")
async def list_tokens_route(
    p: Caller, ctx: Ctx, page: Annotated[PageParams, Depends(page_params)]
) -> Page[TokenOut]:
    tokens = await service.list_tokens(ctx, p)
    items = [TokenOut(**t.__dict__) for t in tokens[page.offset : page.offset + page.limit]]
    return Page[TokenOut](items=items, total=len(tokens), offset=page.offset, limit=page.limit)


@router.delete(
    "/auth/tokens/{token_id}", tags=["auth"], status_code=204, summary="Revoke one of my API tokens"
)
async def revoke_token_route(token_id: int, p: Caller, ctx: Ctx) -> Response:
    await service.revoke_token(ctx, p, token_id)
    return Response(status_code=204)


# -------------------------------------------------------------------------------------------- users


@router.get("/users", tags=["users"], summary="Users within my scope (admin)")
async def list_users_route(
    p: Admin,
    ctx: Ctx,
    page: Annotated[PageParams, Depends(page_params)],
    q: Annotated[str, Query(max_length=64, description="part of username or display name")] = "",
) -> Page[UserOut]:
    users, total = await service.list_users(ctx, p, q, page.offset, page.limit)
    return Page[UserOut](
        items=[_user(u) for u in users], total=total, offset=page.offset, limit=page.limit
    )


@router.post("/users", tags=["users"], status_code=201, summary="Create a user (admin)")
async def create_user_route(body: UserIn, p: Admin, ctx: Ctx) -> UserOut:
    info = await service.create_user(
        ctx,
        p,
        username=body.username,
        password=body.password,
        roles=body.roles,
        scope_code=body.scope_code,
        display_name=body.display_name,
        department_code=body.department_code,
    )
    return _user(info)


@router.get("/users/{username}", tags=["users"], summary="One user (admin)")
async def get_user_route(username: str, p: Admin, ctx: Ctx) -> UserOut:
    return _user(await service.get_user(ctx, p, username))


@router.patch("/users/{username}", tags=["users"], summary="Change a user (admin)")
async def update_user_route(
    username: str, p: Admin, ctx: Ctx, body: Annotated[UserPatch, Body()]
) -> UserOut:
    kwargs = {k: getattr(body, k) for k in body.model_fields_set}
    if "department_code" not in body.model_fields_set:
        kwargs.pop("department_code", None)
    info = await service.update_user(ctx, p, username, **kwargs)
    return _user(info)


@router.post("/users/{username}/unlock", tags=["users"], summary="Clear a lockout (admin)")
async def unlock_user_route(username: str, p: Admin, ctx: Ctx) -> UserOut:
    return _user(await service.unlock_user(ctx, p, username))
