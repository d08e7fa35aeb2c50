"""Test data shared by every capability's tests: org units and users with a ready session.

``add_region`` / ``add_entry`` insert ``directory_entries`` rows directly (ids allocated here,
``path`` built from the parent's), so tests need not go through the directory store.
``add_user`` creates a user through ``vmesh.auth.service`` (as the CLI would) and opens a console
session for it without a login round trip; the returned secret works both as the
``vmesh_session`` cookie and as ``Authorization: Bearer``. ``bearer(secret)`` builds the header.

``write_config(ctx, tmp_path)`` writes a TOML file for the same node (data folder and database),
and ``vmesh(*args, stdin=...)`` runs the real command line in a child process, for CLI tests.

Codes: ``region_code(center, serial)`` composes a valid GB/T 28181 code of type 216 for a region,
e.g. ``region_code("33032800")`` for Wencheng county.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vmesh.audit.log import Actor
from vmesh.auth import service
from vmesh.auth.models import LoginSession, User
from vmesh.auth.tokens import new_secret, secret_hash
from vmesh.directory.models import Entry
from vmesh.identity.codes import compose
from vmesh.node.context import NodeContext

TEST_ACTOR = Actor("test-setup", "admin", "127.0.0.1")


def region_code(center: str, serial: int = 1, type_code: str = "216") -> str:
    """A 20-digit code for an org unit whose 8-digit division centre is ``center``."""
    return compose(center, type_code, serial)


async def add_entry(
    session: AsyncSession,
    code: str,
    name: str,
    kind: str,
    tier: str | None = None,
    parent: str | None = None,
    status: str = "unknown",
) -> Entry:
    """Insert one directory entry under the entry with code ``parent`` (or as a root)."""
    next_id = (await session.scalar(select(func.max(Entry.id))) or 0) + 1
    if parent is None:
        parent_id, path = None, f"/{next_id}/"
    else:
        up = await session.scalar(select(Entry).where(Entry.code == parent))
        if up is None:
            raise LookupError(f"test set-up: no parent entry {parent}")
        parent_id, path = up.id, f"{up.path}{next_id}/"
    entry = Entry(
        id=next_id,
        code=code,
        parent_id=parent_id,
        path=path,
        kind=kind,
        tier=tier,
        name=name,
        lat=None,
        lon=None,
        tags="",
        status=status,
        last_seen=None,
        attrs="{}",
        version=1,
        updated_at=datetime.now(UTC),
    )
    session.add(entry)
    await session.flush()
    return entry


async def add_region(
    session: AsyncSession, code: str, name: str, tier: str, parent: str | None = None
) -> Entry:
    """Insert a region (an org unit at ``tier``) under ``parent`` (a code) or as a root."""
    return await add_entry(session, code, name, "region", tier, parent)


async def add_user(
    ctx: NodeContext,
    username: str,
    roles: list[str] | tuple[str, ...],
    scope_code: str,
    password: str = "s3cret-pass",
    department_code: str | None = None,
    display_name: str = "",
) -> str:
    """Create a user and return the secret of a fresh console session (cookie or bearer)."""
    await service.create_user(
        ctx,
        TEST_ACTOR,
        username=username,
        password=password,
        roles=list(roles),
        scope_code=scope_code,
        display_name=display_name,
        department_code=department_code,
    )
    return await open_session(ctx, username)


async def open_session(ctx: NodeContext, username: str, hours: float = 1) -> str:
    """A new console session for an existing user, as a successful login would make."""
    secret = new_secret()
    now = datetime.now(UTC)
    async with ctx.db.transaction() as s:
        user_id = await s.scalar(select(User.id).where(User.username == username))
        if user_id is None:
            raise LookupError(f"test set-up: no user {username}")
        s.add(
            LoginSession(
                token_hash=secret_hash(secret),
                kind="cookie",
                label="test",
                user_id=user_id,
                created_at=now,
                expires_at=now + timedelta(hours=hours),
                last_used_at=None,
                client_addr="127.0.0.1",
                revoked=False,
            )
        )
    return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def write_config(ctx: NodeContext, tmp_path: Path) -> Path:
    """A configuration file for the node ``ctx`` runs (same data folder, same database)."""
    node = ctx.config.node
    path = tmp_path / "vmesh.toml"
    path.write_text(
        "[node]\n"
        f'code = "{node.code}"\nname = "{node.name}"\ntier = "{node.tier}"\n'
        f'data_dir = "{node.data_dir}"\n'
        f'[database]\nurl = "{ctx.config.database.url}"\n',
        encoding="utf-8",
    )
    return path


async def vmesh(*args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run the real ``vmesh`` command line; returns (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from vmesh.cli import main; main()",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
