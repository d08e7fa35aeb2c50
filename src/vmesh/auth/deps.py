"""FastAPI dependencies: who is calling (cookie or bearer token) and may they do this.

``current_principal`` resolves the ``vmesh_session`` cookie or an ``Authorization: Bearer`` token
to a ``Principal``; ``require_roles(...)`` additionally demands one of the roles. Unknown, expired
or revoked secrets, and disabled users, get 401.

``last_used_at`` of the session or token is refreshed at most once a minute per secret, so that a
busy console does not turn every read into a write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from fastapi import Depends, Request
from sqlalchemy import select, update

from vmesh.auth.models import LoginSession, User
from vmesh.auth.principal import Principal
from vmesh.auth.tokens import COOKIE_NAME, secret_hash
from vmesh.directory.models import Entry
from vmesh.errors import Forbidden, Unauthorized
from vmesh.node.context import NodeContext

LAST_USED_GRANULARITY = timedelta(minutes=1)


def node_context(request: Request) -> NodeContext:
    """The opened node the app serves (a dependency, so routes need no globals)."""
    ctx: NodeContext = request.app.state.ctx
    return ctx


def client_addr(request: Request) -> str:
    return request.client.host if request.client else ""


def secret_from(request: Request) -> str | None:
    """The bearer token if one is sent, else the session cookie."""
    return _secret_from(request)


def _secret_from(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.cookies.get(COOKIE_NAME)


async def current_principal(request: Request) -> Principal:
    secret = _secret_from(request)
    if not secret:
        raise Unauthorized("log in, or send an API token as 'Authorization: Bearer …'")
    ctx: NodeContext = request.app.state.ctx
    now = datetime.now(UTC)
    async with ctx.db.sessions() as s:
        # One statement per request: the secret's session, its user and the user's scope.
        row = (
            await s.execute(
                select(LoginSession, User, Entry.path)
                .join(User, User.id == LoginSession.user_id)
                .outerjoin(Entry, Entry.code == User.scope_code)
                .where(LoginSession.token_hash == secret_hash(secret))
            )
        ).first()
        if row is None:
            raise Unauthorized("session or token is not valid; log in again")
        sess, user, scope_path = row
        expires = sess.expires_at
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        if sess.revoked or (expires is not None and expires <= now):
            raise Unauthorized("session or token has expired; log in again")
        if user.disabled:
            raise Unauthorized(f"user {user.username} is disabled")
        last_used = sess.last_used_at
        if last_used is not None and last_used.tzinfo is None:
            last_used = last_used.replace(tzinfo=UTC)
        if last_used is None or now - last_used >= LAST_USED_GRANULARITY:
            await s.execute(
                update(LoginSession).where(LoginSession.id == sess.id).values(last_used_at=now)
            )
            await s.commit()
    if scope_path is None:
        # A scope that no longer exists grants nothing rather than everything.
        raise Forbidden(f"user {user.username}'s scope {user.scope_code} is not in the directory")
    return Principal(
        user_id=user.id,
        username=user.username,
        roles=frozenset(user.roles.split()),
        scope_code=user.scope_code,
        scope_path=scope_path,
        department_code=user.department_code,
        client_addr=client_addr(request),
    )


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits only users holding one of ``roles`` (admin always passes)."""

    async def _dep(p: Principal = Depends(current_principal)) -> Principal:  # noqa: B008
        if not p.has("admin", *roles):
            raise Forbidden(f"needs role {' or '.join(roles)}; you have {p.roles_text or 'none'}")
        return p

    return _dep
