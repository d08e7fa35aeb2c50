"""``vmesh user add|passwd|list|unlock``: manage users on the node's own database.

The CLI acts as ``Actor("cli")`` with no scope limit (whoever can read the node's configuration
and database owns the node); this is how the very first admin is made. Every change is audited.
Passwords come from standard input with ``--password-stdin`` (first line) or from an interactive
prompt asked twice; never from the command line, where other users could read them.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import click

from vmesh.audit.log import Actor
from vmesh.auth import service
from vmesh.auth.principal import ROLES
from vmesh.node.cli_common import as_json, config_option, run_with_node
from vmesh.node.context import NodeContext


def _cli_actor() -> Actor:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    return Actor("cli", "", f"local:{who}")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin: standard input held no password")
        return password
    return str(click.prompt("Password", hide_input=True, confirmation_prompt="Repeat password"))


password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="read the password from the first line of standard input instead of prompting",
)


@click.group()
def user() -> None:
    """Users: add, change password, list, unlock."""


@user.command("add")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(ROLES),
    help="a role (repeat for several)",
)
@click.option(
    "--scope", "scope_code", required=True, help="code of the org unit the user may act on"
)
@click.option("--department", "department_code", default=None, help="code of the user's department")
@click.option("--display-name", default="", help="name shown in the console")
@password_stdin_option
@config_option
def add(
    username: str,
    roles: tuple[str, ...],
    scope_code: str,
    department_code: str | None,
    display_name: str,
    password_stdin: bool,
    config_path: Path,
) -> None:
    """Create USERNAME with the given roles, scoped to an org unit."""
    password = _read_password(password_stdin)

    async def go(ctx: NodeContext) -> service.UserInfo:
        return await service.create_user(
            ctx,
            _cli_actor(),
            username=username,
            password=password,
            roles=list(roles),
            scope_code=scope_code,
            display_name=display_name,
            department_code=department_code,
        )

    info = run_with_node(config_path, go)
    click.echo(
        f"user {info.username} created: roles {' '.join(info.roles)}, "
        f"scope {info.scope_code} {info.scope_name}".rstrip()
    )


@user.command("passwd")
@click.argument("username")
@password_stdin_option
@config_option
def passwd(username: str, password_stdin: bool, config_path: Path) -> None:
    """Set USERNAME's password; the user's console sessions end."""
    password = _read_password(password_stdin)

    async def go(ctx: NodeContext) -> service.UserInfo:
        return await service.set_password(ctx, _cli_actor(), username, password)

    run_with_node(config_path, go)
    click.echo(f"password of {username} changed")


@user.command("unlock")
@click.argument("username")
@config_option
def unlock(username: str, config_path: Path) -> None:
    """Clear USERNAME's lockout after failed logins."""

    async def go(ctx: NodeContext) -> service.UserInfo:
        return await service.unlock_user(ctx, _cli_actor(), username)

    run_with_node(config_path, go)
    click.echo(f"{username} unlocked")


@user.command("list")
@click.option("-q", "query", default="", help="part of a username or display name")
@click.option("--json", "as_json_flag", is_flag=True, help="print JSON instead of a table")
@config_option
def list_(query: str, as_json_flag: bool, config_path: Path) -> None:
    """List users (all of them; the CLI is not limited to a scope)."""

    async def go(ctx: NodeContext) -> list[service.UserInfo]:
        users: list[service.UserInfo] = []
        offset = 0
        while True:
            page, total = await service.list_users(ctx, _cli_actor(), query, offset, 500)
            users.extend(page)
            offset += len(page)
            if not page or offset >= total:
                return users

    users = run_with_node(config_path, go)
    if as_json_flag:
        click.echo(as_json([u.__dict__ for u in users]))
        return
    if not users:
        click.echo("no users")
        return
    rows = [("USERNAME", "ROLES", "SCOPE", "STATE", "NAME")]
    for u in users:
        state = "disabled" if u.disabled else "locked" if u.locked else "active"
        rows.append((u.username, ",".join(u.roles), u.scope_code, state, u.display_name))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
