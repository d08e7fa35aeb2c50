"""Users, logins, console sessions and API tokens: the rules, applied to the database.

Owns: creating and changing users (roles from ``vmesh.auth.principal.ROLES``, scoped to an org unit
of the directory, optionally a department), listing them within the caller's scope, password
changes, login with lockout, console sessions, API tokens, logout and revocation. Every login
attempt, user change and token creation writes an audit row in the same transaction as the change;
refusals write one of their own (result ``denied``).

Who acts is a ``Principal`` (an API caller, limited to its scope, must hold role admin for user
management) or an ``Actor`` (the CLI: unlimited). Scope: a user is inside an admin's scope when the
user's scope org unit lies in the admin's subtree; users or org units outside it answer exactly like
ones that do not exist.

Lockout: each wrong password adds one to the user's consecutive failures, also while the account is
locked; reaching ``auth.lockout_failures`` locks it for ``auth.lockout_minutes``. A correct password
clears the count unless the account is locked. Because the count is not cleared when a lock expires,
the next wrong password locks again at once. An unknown username is checked against a dummy hash so
it costs the same time as a known one.

Public: ``UserInfo``, ``TokenInfo``, ``LoginResult``, ``create_user``, ``update_user``,
``set_password``, ``change_own_password``, ``unlock_user``, ``get_user``, ``list_users``,
``login``, ``logout``, ``create_token``, ``list_tokens``, ``revoke_token``, ``me``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vmesh.audit.log import Actor
from vmesh.auth import passwords
from vmesh.auth.models import LoginSession, User
from vmesh.auth.principal import ROLES, Principal
from vmesh.auth.tokens import TOKEN_PREFIX, new_secret, secret_hash
from vmesh.directory.models import Entry
from vmesh.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidInput,
    Locked,
    NotFound,
    Unauthorized,
    VmeshError,
)
from vmesh.node.context import NodeContext

log = logging.getLogger(__name__)

Who = Principal | Actor

ORG_KINDS = ("region", "department", "virtual_org")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_DISPLAY_NAME = 100
MAX_LABEL = 100
MAX_TOKEN_DAYS = 366
DEFAULT_TOKEN_DAYS = 90
_UNSET: Any = object()


@dataclass(frozen=True)
class UserInfo:
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


@dataclass(frozen=True)
class TokenInfo:
    id: int
    label: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool


@dataclass(frozen=True)
class LoginResult:
    user: UserInfo
    secret: str
    expires_at: datetime


def aware(dt: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; every stored time is UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


def _now() -> datetime:
    return datetime.now(UTC)


def _scope_path(who: Who) -> str | None:
    """The subtree ``who`` may manage; ``None`` for the CLI, which may manage everything."""
    return who.scope_path if isinstance(who, Principal) else None


def _require_admin(who: Who) -> None:
    if isinstance(who, Principal) and not who.has("admin"):
        raise Forbidden(f"managing users needs role admin; you have {who.roles_text or 'none'}")


def _roles(roles: list[str] | tuple[str, ...], field: str = "roles") -> str:
    if not roles:
        raise InvalidInput.one(
            field, "at least one role is needed; known roles: " + ", ".join(ROLES)
        )
    errors = [
        FieldError(f"{field}[{i}]", "unknown role; known roles: " + ", ".join(ROLES), str(r))
        for i, r in enumerate(roles)
        if r not in ROLES
    ]
    if errors:
        raise InvalidInput(f"{field}: unknown role", errors=errors)
    return " ".join(sorted(set(roles)))


def _check_username(username: str) -> None:
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise InvalidInput.one(
            "username",
            "must be 1-64 characters: letters, digits and _ . @ -, starting with a letter or digit",
            username,
        )


def _check_display_name(name: str) -> str:
    name = name.strip()
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidInput.one("display_name", f"must be at most {MAX_DISPLAY_NAME} characters")
    return name


async def _hash(password: str) -> str:
    return await asyncio.to_thread(passwords.hash_password, password)


async def _org_unit(
    s: AsyncSession, code: str, field: str, scope: str | None, kinds: tuple[str, ...]
) -> Entry | None:
    """The org unit ``code`` if it exists, is one of ``kinds`` and lies in ``scope``.

    Raises ``InvalidInput`` when it does not exist or is the wrong kind; returns ``None`` when it
    exists but is outside ``scope`` (the caller audits the refusal, then raises the same error
    as for a missing unit so that nothing outside the scope can be probed).
    """
    entry = await s.scalar(select(Entry).where(Entry.code == code))
    if entry is None:
        raise _no_such_unit(field, code, kinds)
    if scope is not None and not entry.path.startswith(scope):
        return None
    if entry.kind not in kinds:
        want = " or ".join(kinds)
        raise InvalidInput.one(field, f"is a {entry.kind}, not a {want}", code)
    return entry


def _no_such_unit(field: str, code: str, kinds: tuple[str, ...]) -> InvalidInput:
    what = "department" if kinds == ("department",) else "org unit"
    return InvalidInput.one(field, f"no {what} with this code in your scope", code)


async def _refuse(
    ctx: NodeContext, who: Who, action: str, target: str, error: VmeshError, detail: dict[str, Any]
) -> VmeshError:
    """Audit a refusal (in a transaction of its own) and hand back the error to raise."""
    await ctx.audit.write(who, action, target, "denied", detail | {"reason": error.detail})
    return error


def _info(user: User, scope_name: str | None, now: datetime | None = None) -> UserInfo:
    now = now or _now()
    locked_until = aware(user.locked_until)
    return UserInfo(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        roles=user.roles.split(),
        scope_code=user.scope_code,
        scope_name=scope_name or "",
        department_code=user.department_code,
        disabled=user.disabled,
        locked=locked_until is not None and locked_until > now,
        locked_until=locked_until,
        failed_logins=user.failed_logins,
    )


async def _user_in_scope(s: AsyncSession, username: str, scope: str | None) -> tuple[User, str]:
    """The user and its scope's name, or ``NotFound`` if absent or outside ``scope``."""
    q = select(User, Entry.name, Entry.path).outerjoin(Entry, Entry.code == User.scope_code)
    row = (await s.execute(q.where(User.username == username))).first()
    if row is None or (scope is not None and (row[2] is None or not row[2].startswith(scope))):
        raise NotFound(f"no user {username!r} in your scope")
    return row[0], row[1] or ""


# ---------------------------------------------------------------------------------------------
# User management


async def create_user(
    ctx: NodeContext,
    who: Who,
    *,
    username: str,
    password: str,
    roles: list[str],
    scope_code: str,
    display_name: str = "",
    department_code: str | None = None,
) -> UserInfo:
    """Create a user; ``who`` must be an admin whose scope contains ``scope_code``."""
    _require_admin(who)
    _check_username(username)
    display_name = _check_display_name(display_name)
    roles_text = _roles(roles)
    passwords.check_policy(password, username)
    scope = _scope_path(who)
    password_hash = await _hash(password)
    now = _now()
    detail = {
        "user": username,
        "roles": roles_text.split(),
        "scope_code": scope_code,
        "department_code": department_code,
    }
    refusal: VmeshError | None = None
    async with ctx.audit.transaction() as s:
        if await s.scalar(select(User.id).where(User.username == username)) is not None:
            raise Conflict(
                f"user {username!r} already exists",
                errors=[FieldError("username", "already exists", username)],
            )
        unit = await _org_unit(s, scope_code, "scope_code", scope, ORG_KINDS)
        if unit is None:
            refusal = _no_such_unit("scope_code", scope_code, ORG_KINDS)
        elif department_code is not None:
            dept = await _org_unit(s, department_code, "department_code", scope, ("department",))
            if dept is None:
                refusal = _no_such_unit("department_code", department_code, ("department",))
        if refusal is None:
            assert unit is not None
            user = User(
                username=username,
                display_name=display_name,
                password_hash=password_hash,
                roles=roles_text,
                scope_code=scope_code,
                department_code=department_code,
                disabled=False,
                failed_logins=0,
                locked_until=None,
                created_at=now,
                password_changed_at=now,
            )
            s.add(user)
            await s.flush()
            ctx.audit.record(s, who, "user.create", scope_code, "ok", detail)
            info = _info(user, unit.name, now)
    if refusal is not None:
        raise await _refuse(ctx, who, "user.create", scope_code, refusal, detail)
    log.info("user created user=%s roles=%s scope=%s", username, roles_text, scope_code)
    return info


async def update_user(
    ctx: NodeContext,
    who: Who,
    username: str,
    *,
    display_name: str | None = None,
    roles: list[str] | None = None,
    scope_code: str | None = None,
    department_code: str | None = _UNSET,
    disabled: bool | None = None,
    password: str | None = None,
) -> UserInfo:
    """Change the given fields of a user in ``who``'s scope. ``department_code=None`` clears it."""
    _require_admin(who)
    scope = _scope_path(who)
    roles_text = _roles(roles) if roles is not None else None
    if display_name is not None:
        display_name = _check_display_name(display_name)
    if isinstance(who, Principal) and who.username == username:
        if disabled:
            raise InvalidInput.one("disabled", "you cannot disable yourself")
        if roles_text is not None and "admin" not in roles_text.split():
            raise InvalidInput.one("roles", "you cannot remove your own admin role")
    if password is not None:
        passwords.check_policy(password, username)
    password_hash = await _hash(password) if password is not None else None
    now = _now()
    changes: dict[str, Any] = {}
    refusal: VmeshError | None = None
    refused_target = ""
    async with ctx.audit.transaction() as s:
        user, scope_name = await _user_in_scope(s, username, scope)
        if scope_code is not None and scope_code != user.scope_code:
            unit = await _org_unit(s, scope_code, "scope_code", scope, ORG_KINDS)
            if unit is None:
                refusal = _no_such_unit("scope_code", scope_code, ORG_KINDS)
                refused_target = scope_code
            else:
                changes["scope_code"] = [user.scope_code, scope_code]
                user.scope_code, scope_name = scope_code, unit.name
        if (
            refusal is None
            and department_code is not _UNSET
            and department_code != user.department_code
        ):
            if department_code is not None:
                dept = await _org_unit(
                    s, department_code, "department_code", scope, ("department",)
                )
                if dept is None:
                    refusal = _no_such_unit("department_code", department_code, ("department",))
                    refused_target = department_code
            if refusal is None:
                changes["department_code"] = [user.department_code, department_code]
                user.department_code = department_code
        if refusal is None:
            if display_name is not None and display_name != user.display_name:
                changes["display_name"] = [user.display_name, display_name]
                user.display_name = display_name
            if roles_text is not None and roles_text != user.roles:
                changes["roles"] = [user.roles.split(), roles_text.split()]
                user.roles = roles_text
            if disabled is not None and disabled != user.disabled:
                changes["disabled"] = [user.disabled, disabled]
                user.disabled = disabled
            if password_hash is not None:
                changes["password"] = "changed"
                user.password_hash = password_hash
                user.password_changed_at = now
                await _revoke_sessions(s, user.id, kinds=("cookie",))
            if changes.get("disabled") == [False, True]:
                await _revoke_sessions(s, user.id, kinds=("cookie",))
            ctx.audit.record(
                s, who, "user.update", user.scope_code, "ok", {"user": username, "changes": changes}
            )
            info = _info(user, scope_name, now)
    if refusal is not None:
        raise await _refuse(ctx, who, "user.update", refused_target, refusal, {"user": username})
    return info


async def set_password(ctx: NodeContext, who: Who, username: str, password: str) -> UserInfo:
    """Set a user's password (admin or CLI); the user's console sessions end."""
    return await update_user(ctx, who, username, password=password)


async def change_own_password(
    ctx: NodeContext,
    p: Principal,
    current_password: str,
    new_password: str,
    keep_secret: str | None,
) -> None:
    """A user changes their own password; their other console sessions end."""
    passwords.check_policy(new_password, p.username, "new_password")
    async with ctx.db.sessions() as s:
        stored = await s.scalar(select(User.password_hash).where(User.id == p.user_id))
    if stored is None or not await asyncio.to_thread(
        passwords.verify_password, stored, current_password
    ):
        await ctx.audit.write(
            p,
            "user.password",
            p.scope_code,
            "failed",
            {"user": p.username, "reason": "current password is wrong"},
        )
        raise InvalidInput.one("current_password", "is not correct")
    new_hash = await _hash(new_password)
    async with ctx.audit.transaction() as s:
        await s.execute(
            update(User)
            .where(User.id == p.user_id)
            .values(password_hash=new_hash, password_changed_at=_now())
        )
        await _revoke_sessions(s, p.user_id, kinds=("cookie",), keep=keep_secret)
        ctx.audit.record(s, p, "user.password", p.scope_code, "ok", {"user": p.username})


async def unlock_user(ctx: NodeContext, who: Who, username: str) -> UserInfo:
    """Clear a user's lock and failure count."""
    _require_admin(who)
    async with ctx.audit.transaction() as s:
        user, scope_name = await _user_in_scope(s, username, _scope_path(who))
        was = {"failed_logins": user.failed_logins, "locked_until": aware(user.locked_until)}
        user.failed_logins = 0
        user.locked_until = None
        ctx.audit.record(
            s,
            who,
            "user.unlock",
            user.scope_code,
            "ok",
            {
                "user": username,
                "failed_logins": was["failed_logins"],
                "locked_until": was["locked_until"].isoformat() if was["locked_until"] else None,
            },
        )
        info = _info(user, scope_name)
    return info


async def get_user(ctx: NodeContext, who: Who, username: str) -> UserInfo:
    _require_admin(who)
    async with ctx.db.sessions() as s:
        user, scope_name = await _user_in_scope(s, username, _scope_path(who))
        return _info(user, scope_name)


async def list_users(
    ctx: NodeContext, who: Who, q: str = "", offset: int = 0, limit: int = 50
) -> tuple[list[UserInfo], int]:
    """Users whose scope lies in ``who``'s scope, by username; ``q`` matches username or name."""
    _require_admin(who)
    scope = _scope_path(who)
    base = select(User, Entry.name).outerjoin(Entry, Entry.code == User.scope_code)
    if scope is not None:
        base = base.where(Entry.path.startswith(scope, autoescape=True))
    if q:
        base = base.where(
            or_(
                User.username.icontains(q, autoescape=True),
                User.display_name.icontains(q, autoescape=True),
            )
        )
    async with ctx.db.sessions() as s:
        total = await s.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = (await s.execute(base.order_by(User.username).offset(offset).limit(limit))).all()
    now = _now()
    return [_info(u, name, now) for u, name in rows], total


async def me(ctx: NodeContext, p: Principal) -> UserInfo:
    async with ctx.db.sessions() as s:
        row = (
            await s.execute(
                select(User, Entry.name)
                .outerjoin(Entry, Entry.code == User.scope_code)
                .where(User.id == p.user_id)
            )
        ).first()
    if row is None:
        raise Unauthorized("your user no longer exists")
    return _info(row[0], row[1])


# ---------------------------------------------------------------------------------------------
# Login, sessions and tokens


async def login(ctx: NodeContext, username: str, password: str, client_addr: str) -> LoginResult:
    """Check a password and open a console session; see the module docstring for lockout."""
    cfg = ctx.config.auth
    async with ctx.db.sessions() as s:
        user = await s.scalar(select(User).where(User.username == username))
    # Made on the first login of any kind, so that not even the first unknown name costs more.
    dummy = await asyncio.to_thread(passwords.dummy_hash)
    stored = user.password_hash if user is not None else dummy
    password_ok = await asyncio.to_thread(passwords.verify_password, stored, password)
    new_hash = None
    if user is not None and password_ok and passwords.needs_rehash(stored):
        new_hash = await _hash(password)
    now = _now()
    actor = Actor(username[:64], user.roles if user else "", client_addr)
    target = user.scope_code if user else ""
    outcome: VmeshError | None = None
    result: LoginResult | None = None
    async with ctx.audit.transaction() as s:
        if user is None:
            ctx.audit.record(s, actor, "auth.login", "", "failed", {"reason": "unknown user"})
            outcome = Unauthorized("wrong username or password")
        elif not password_ok:
            # Write first: on SQLite this takes the write lock before anything is read.
            failures, locked_until = (
                await s.execute(
                    update(User)
                    .where(User.id == user.id)
                    .values(failed_logins=User.failed_logins + 1)
                    .returning(User.failed_logins, User.locked_until)
                )
            ).one()
            locked_until = aware(locked_until)
            if locked_until is not None and locked_until > now:
                ctx.audit.record(
                    s,
                    actor,
                    "auth.login",
                    target,
                    "denied",
                    {
                        "reason": "locked",
                        "password": "wrong",
                        "failures": failures,
                        "locked_until": locked_until.isoformat(),
                    },
                )
                outcome = _locked(locked_until)
            elif failures >= cfg.lockout_failures:
                until = now + timedelta(minutes=cfg.lockout_minutes)
                await s.execute(update(User).where(User.id == user.id).values(locked_until=until))
                ctx.audit.record(
                    s,
                    actor,
                    "auth.login",
                    target,
                    "failed",
                    {
                        "reason": "wrong password",
                        "failures": failures,
                        "locked_until": until.isoformat(),
                    },
                )
                log.warning(
                    "user locked user=%s failures=%d addr=%s", username, failures, client_addr
                )
                outcome = _locked(until)
            else:
                ctx.audit.record(
                    s,
                    actor,
                    "auth.login",
                    target,
                    "failed",
                    {"reason": "wrong password", "failures": failures},
                )
                outcome = Unauthorized("wrong username or password")
        else:
            values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
            if new_hash is not None:
                values["password_hash"] = new_hash
            cleared = (
                await s.execute(
                    update(User)
                    .where(
                        User.id == user.id,
                        User.disabled.is_(False),
                        or_(User.locked_until.is_(None), User.locked_until <= now),
                    )
                    .values(**values)
                    .returning(User.id)
                )
            ).first()
            if cleared is None:
                fresh = await s.get(User, user.id, populate_existing=True)
                assert fresh is not None
                locked_until = aware(fresh.locked_until)
                if fresh.disabled:
                    ctx.audit.record(
                        s,
                        actor,
                        "auth.login",
                        target,
                        "denied",
                        {"reason": "disabled", "password": "correct"},
                    )
                    outcome = Forbidden(f"user {username} is disabled")
                else:
                    assert locked_until is not None
                    ctx.audit.record(
                        s,
                        actor,
                        "auth.login",
                        target,
                        "denied",
                        {
                            "reason": "locked",
                            "password": "correct",
                            "locked_until": locked_until.isoformat(),
                        },
                    )
                    outcome = _locked(locked_until)
            else:
                secret = new_secret()
                expires = now + timedelta(hours=cfg.session_hours)
                sess = LoginSession(
                    token_hash=secret_hash(secret),
                    kind="cookie",
                    label="console",
                    user_id=user.id,
                    created_at=now,
                    expires_at=expires,
                    last_used_at=now,
                    client_addr=client_addr,
                    revoked=False,
                )
                s.add(sess)
                await s.flush()
                ctx.audit.record(s, actor, "auth.login", target, "ok", {"session": sess.id})
                scope_name = await s.scalar(select(Entry.name).where(Entry.code == user.scope_code))
                user.failed_logins, user.locked_until = 0, None
                result = LoginResult(_info(user, scope_name, now), secret, expires)
    if outcome is not None:
        raise outcome
    assert result is not None
    return result


def _locked(until: datetime) -> Locked:
    return Locked(
        f"too many failed logins; the account is locked until {until.isoformat()} "
        "or until an admin unlocks it"
    )


async def _revoke_sessions(
    s: AsyncSession, user_id: int, kinds: tuple[str, ...], keep: str | None = None
) -> None:
    q = update(LoginSession).where(
        LoginSession.user_id == user_id,
        LoginSession.kind.in_(kinds),
        LoginSession.revoked.is_(False),
    )
    if keep:
        q = q.where(LoginSession.token_hash != secret_hash(keep))
    await s.execute(q.values(revoked=True))


async def logout(ctx: NodeContext, secret: str | None, client_addr: str) -> None:
    """End the session (or revoke the token) whose secret is given; unknown secrets do nothing."""
    if not secret:
        return
    async with ctx.audit.transaction() as s:
        row = (
            await s.execute(
                select(LoginSession, User)
                .join(User, User.id == LoginSession.user_id)
                .where(LoginSession.token_hash == secret_hash(secret))
            )
        ).first()
        if row is None or row[0].revoked:
            return
        sess, user = row
        sess.revoked = True
        ctx.audit.record(
            s,
            Actor(user.username, user.roles, client_addr),
            "auth.logout",
            user.scope_code,
            "ok",
            {"session": sess.id, "kind": sess.kind},
        )


async def create_token(
    ctx: NodeContext, p: Principal, label: str, days: int | None = None
) -> tuple[str, TokenInfo]:
    """A new API token for ``p``'s own user; the secret is returned once and stored hashed."""
    label = (label or "").strip()
    if not label:
        raise InvalidInput.one("label", "must not be empty: say what the token is for")
    if len(label) > MAX_LABEL:
        raise InvalidInput.one("label", f"must be at most {MAX_LABEL} characters")
    days = DEFAULT_TOKEN_DAYS if days is None else days
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise InvalidInput.one("days", f"must be between 1 and {MAX_TOKEN_DAYS}", days)
    secret = new_secret(TOKEN_PREFIX)
    now = _now()
    async with ctx.audit.transaction() as s:
        tok = LoginSession(
            token_hash=secret_hash(secret),
            kind="token",
            label=label,
            user_id=p.user_id,
            created_at=now,
            expires_at=now + timedelta(days=days),
            last_used_at=None,
            client_addr=p.client_addr,
            revoked=False,
        )
        s.add(tok)
        await s.flush()
        ctx.audit.record(
            s,
            p,
            "auth.token.create",
            p.scope_code,
            "ok",
            {"token": tok.id, "label": label, "expires_at": tok.expires_at.isoformat()},
        )
        info = _token_info(tok)
    return secret, info


def _token_info(t: LoginSession) -> TokenInfo:
    return TokenInfo(
        t.id,
        t.label,
        aware(t.created_at) or _now(),
        aware(t.expires_at),
        aware(t.last_used_at),
        t.revoked,
    )


async def list_tokens(ctx: NodeContext, p: Principal) -> list[TokenInfo]:
    async with ctx.db.sessions() as s:
        rows = (
            await s.scalars(
                select(LoginSession)
                .where(LoginSession.user_id == p.user_id, LoginSession.kind == "token")
                .order_by(LoginSession.id.desc())
            )
        ).all()
    return [_token_info(t) for t in rows]


async def revoke_token(ctx: NodeContext, p: Principal, token_id: int) -> None:
    async with ctx.audit.transaction() as s:
        tok = await s.scalar(
            select(LoginSession).where(
                LoginSession.id == token_id,
                LoginSession.user_id == p.user_id,
                LoginSession.kind == "token",
            )
        )
        if tok is None:
            raise NotFound(f"you have no token {token_id}")
        if not tok.revoked:
            tok.revoked = True
            ctx.audit.record(
                s, p, "auth.token.revoke", p.scope_code, "ok", {"token": tok.id, "label": tok.label}
            )
