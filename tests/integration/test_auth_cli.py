"""``vmesh user add|passwd|list|unlock`` run as real commands against the node's database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from factories import add_region, region_code, vmesh, write_config
from vmesh.audit.models import AuditRecord
from vmesh.cli import cli
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration


@pytest.fixture
async def config(ctx: NodeContext, tmp_path: Path) -> Path:
    async with ctx.db.transaction() as s:
        await add_region(s, region_code("33000000"), "浙江省", "province")
        await add_region(s, region_code("33030000"), "温州市", "city", region_code("33000000"))
    return write_config(ctx, tmp_path)


async def login(client: httpx.AsyncClient, username: str, password: str) -> int:
    r = await client.post("/api/auth/login", json={"username": username, "password": password})
    return r.status_code


async def test_first_admin_from_the_cli_can_log_in(
    ctx: NodeContext, client: httpx.AsyncClient, config: Path
) -> None:
    province = region_code("33000000")
    code, out, err = await vmesh(
        "user", "add", "root", "--role", "admin", "--role", "operator", "--scope", province,
        "--display-name", "省管理员", "--password-stdin", "--config", str(config),
        stdin="first admin pw\n",
    )  # fmt: skip
    assert code == 0, err
    assert "user root created" in out and "admin operator" in out and "浙江省" in out
    assert await login(client, "root", "first admin pw") == 200
    me = (await client.get("/api/auth/me")).json()
    assert me["roles"] == ["admin", "operator"] and me["display_name"] == "省管理员"

    async with ctx.db.sessions() as s:
        (row,) = await s.scalars(select(AuditRecord).where(AuditRecord.action == "user.create"))
    assert row.username == "cli" and row.client_addr.startswith("local:")
    assert json.loads(row.detail)["user"] == "root" and row.target_code == province

    code, out, _ = await vmesh("user", "list", "--config", str(config))
    assert code == 0
    (line,) = [x for x in out.splitlines() if x.startswith("root ")]
    assert "admin,operator" in line and province in line and "active" in line and "省管理员" in line


async def test_passwd_replaces_the_password(
    ctx: NodeContext, client: httpx.AsyncClient, config: Path
) -> None:
    city = region_code("33030000")
    args = ("--config", str(config))
    code, _, err = await vmesh(
        "user", "add", "wz_op", "--role", "operator", "--scope", city, "--password-stdin", *args,
        stdin="old password 1\n",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = await vmesh("user", "passwd", "wz_op", "--password-stdin", *args,
                                 stdin="new password 2\n")  # fmt: skip
    assert code == 0 and "password of wz_op changed" in out, err
    assert await login(client, "wz_op", "old password 1") == 401
    assert await login(client, "wz_op", "new password 2") == 200

    code, out, _ = await vmesh("user", "list", "--json", *args)
    (u,) = json.loads(out)
    assert u["username"] == "wz_op" and u["scope_code"] == city and u["scope_name"] == "温州市"


async def test_bad_input_exits_2_naming_the_problem(ctx: NodeContext, config: Path) -> None:
    args = ("--config", str(config))
    code, _, err = await vmesh(
        "user", "add", "x1", "--role", "admin", "--scope", "33999900002166000001",
        "--password-stdin", *args, stdin="good password\n",
    )  # fmt: skip
    assert code == 2 and "scope_code" in err and "no org unit" in err
    code, _, err = await vmesh(
        "user", "add", "x1", "--role", "admin", "--scope", region_code("33000000"),
        "--password-stdin", *args, stdin="short\n",
    )  # fmt: skip
    assert code == 2 and "password" in err and "at least 8" in err
    code, _, err = await vmesh(
        "user", "add", "x1", "--role", "wizard", "--scope", region_code("33000000"),
        "--password-stdin", *args, stdin="good password\n",
    )  # fmt: skip
    assert code == 2 and "wizard" in err
    code, _, err = await vmesh("user", "passwd", "nobody", "--password-stdin", *args,
                               stdin="good password\n")  # fmt: skip
    assert code == 2 and "nobody" in err
    code, out, _ = await vmesh("user", "list", *args)
    assert code == 0 and out.strip() == "no users"


async def test_interactive_prompt_asks_twice(ctx: NodeContext, config: Path) -> None:
    """Without --password-stdin the password is prompted for and must be typed twice alike."""
    runner = CliRunner()
    base = ["user", "add", "typist", "--role", "viewer", "--scope", region_code("33000000"),
            "--config", str(config)]  # fmt: skip
    result = await asyncio.to_thread(
        runner.invoke, cli, base, input="typed pass 1\ntyped pass 2\ntyped pass 3\ntyped pass 3\n"
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output and "user typist created" in result.output
    code, out, _ = await vmesh("user", "list", "--config", str(config))
    assert code == 0 and "typist" in out
