"""SIPp (Debian sip-tester) as an independent GB/T 28181 device against the node's real registrar
(``GbService``): digest REGISTER then keepalive succeed and the device is online in the
directory; a wrong password gets 403 and leaves no entry behind."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import make_config
from vmesh.audit.log import Actor
from vmesh.config import Gb28181Config
from vmesh.directory.models import Entry
from vmesh.directory.store import Directory
from vmesh.gb28181.service import GbService
from vmesh.node.context import NodeContext

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="SIPp (Debian sip-tester) missing"),
]

SCENARIOS = Path(__file__).resolve().parents[1] / "peers" / "sipp"
REGION = "33000000002160000001"
DEVICE = "33000000001320000009"
PASSWORD = "12345678"


@pytest.fixture
async def gb(tmp_path: Path) -> AsyncIterator[GbService]:
    ctx = await NodeContext.open(make_config(tmp_path))
    await Directory(ctx.db, ctx.audit).create(
        Actor("test"), {"code": REGION, "name": "浙江省", "kind": "region", "tier": "province"}
    )
    svc = GbService(
        Gb28181Config(
            enabled=True, sip_host="127.0.0.1", sip_port=0, password=PASSWORD, parent_code=REGION
        ),
        ctx.config.node.code,
        ctx.db,
        ctx.audit,
    )
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
        await ctx.close()


async def _sipp(scenario: str, gb: GbService, password: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "sipp", f"127.0.0.1:{gb.port}", "-sf", str(SCENARIOS / scenario), "-s", gb.server_id,
        "-key", "dev", DEVICE, "-au", DEVICE, "-ap", password, "-m", "1", "-t", "u1",
        "-i", "127.0.0.1", "-p", "0", "-nostdin", "-timeout", "30s", "-timeout_error",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def _status(gb: GbService) -> str | None:
    async with gb.directory.db.sessions() as s:
        return await s.scalar(select(Entry.status).where(Entry.code == DEVICE))


async def test_sipp_registers_with_digest_and_keeps_alive(gb: GbService) -> None:
    rc, out = await _sipp("gb_register_keepalive.xml", gb, PASSWORD)
    assert rc == 0, out[-3000:]
    assert gb.devices[DEVICE].online
    assert await _status(gb) == "online"


async def test_sipp_wrong_password_is_refused(gb: GbService) -> None:
    rc, out = await _sipp("gb_register_wrong_password.xml", gb, "not-the-password")
    assert rc == 0, out[-3000:]
    assert DEVICE not in gb.devices
    assert await _status(gb) is None
