"""The registrar's write-behind (``store.WriteBehind``) on SQLite and PostgreSQL: a new
registration is stored (row, directory presence, one audit row) before its 200; refreshes and
keepalives are memory only and add no audit row; a clean stop writes what is queued; a batch of
many devices is one transaction."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select
from test_gb_device import IPC, REGION, audit_rows, device, start_gb, status_of

from vmesh.audit.log import Actor
from vmesh.audit.models import AuditRecord
from vmesh.directory.store import Directory
from vmesh.gb28181.store import DeviceState, GbDeviceRow, RegistrationStore, WriteBehind
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration


async def _region(ctx: NodeContext) -> None:
    await Directory(ctx.db, ctx.audit).create(
        Actor("test"), {"code": REGION, "name": "浙江省", "kind": "region", "tier": "province"}
    )


async def _gb_audit_count(ctx: NodeContext) -> int:
    async with ctx.db.sessions() as s:
        gb = AuditRecord.action.like("gb28181.%")
        q = select(func.count()).select_from(AuditRecord).where(gb)
        return int(await s.scalar(q) or 0)


async def test_state_changes_stored_refreshes_and_keepalives_written_behind(
    ctx: NodeContext,
) -> None:
    await _region(ctx)
    gb = await start_gb(ctx)
    ipc = await device(gb, IPC)
    try:
        assert await ipc.register(expires=100) == 200
        # Stored before the 200: row online, directory online, one audit row.
        rows = {r.code: r for r in await RegistrationStore(ctx.db).load()}
        assert rows[IPC].online
        assert await status_of(ctx, IPC) == "online"
        assert await audit_rows(ctx, "gb28181.register") == [(IPC, "ok")]
        before = await _gb_audit_count(ctx)
        # Refreshes (the last one moves the expiry to an hour) and keepalives: no audit row.
        for _ in range(3):
            assert await ipc.keepalive() == 200
        assert await ipc.register(expires=100) == 200
        assert await ipc.register(expires=3600) == 200
        assert await _gb_audit_count(ctx) == before
    finally:
        await ipc.close()
    # A clean stop writes the queued refresh: the stored expiry is the hour's.
    await gb.stop()
    ctx.gb28181 = None
    rows = {r.code: r for r in await RegistrationStore(ctx.db).load()}
    assert rows[IPC].expires_at.timestamp() > time.time() + 1800


async def test_a_batch_is_one_transaction(ctx: NodeContext) -> None:
    await _region(ctx)
    codes = [f"330000000013200{i:05d}" for i in range(120)]
    d = Directory(ctx.db, ctx.audit)
    for c in codes[:3]:
        await d.create(
            Actor("test"), {"code": c, "name": c, "kind": "camera", "parent_code": REGION}
        )
    w = WriteBehind(ctx.db, ctx.audit)  # not started: commit() writes at once
    for c in codes:
        w.put(DeviceState(c, "camera", ("127.0.0.1", 5060), "udp", True, "GB2312", 2e9))
    w.presence(codes[:3], True)
    w.record(Actor("gb:x", "device"), "gb28181.register", codes[0], "ok", {})
    await w.commit()
    assert w.batches == 1
    async with ctx.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(GbDeviceRow)) == 120
    assert [await status_of(ctx, c) for c in codes[:3]] == ["online"] * 3
    assert (codes[0], "ok") in await audit_rows(ctx, "gb28181.register")
    # The same devices again, now offline: updated in place, still one transaction.
    for c in codes:
        w.put(DeviceState(c, "camera", ("127.0.0.1", 5062), "udp", False, "GB2312", 2e9))
    w.presence(codes[:3], False)
    await w.stop()
    assert w.batches == 2
    rows = await RegistrationStore(ctx.db).load()
    assert len(rows) == 120 and not any(r.online for r in rows)
    assert {r.port for r in rows} == {5062}
    assert await status_of(ctx, codes[0]) == "offline"
