"""The audit chain detects edited and deleted rows (SQLite here; PostgreSQL where started)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from vmesh.audit.log import Actor
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration


async def _write_three(ctx: NodeContext) -> None:
    for i in range(3):
        await ctx.audit.write(
            Actor("alice", "admin", "10.0.0.1"), "directory.view", f"3300000000132600000{i}"
        )


async def test_intact_chain_verifies(ctx: NodeContext) -> None:
    await _write_three(ctx)
    report = await ctx.audit.verify()
    assert report.ok and report.checked == 3


async def test_edited_row_breaks_chain(ctx: NodeContext) -> None:
    await _write_three(ctx)
    async with ctx.db.transaction() as s:
        await s.execute(text("UPDATE audit_log SET username='mallory' WHERE seq=2"))
    report = await ctx.audit.verify()
    assert not report.ok and report.seq == 2 and "edited" in report.problem


async def test_deleted_row_breaks_chain(ctx: NodeContext) -> None:
    await _write_three(ctx)
    async with ctx.db.transaction() as s:
        await s.execute(text("DELETE FROM audit_log WHERE seq=2"))
    report = await ctx.audit.verify()
    assert not report.ok and report.seq == 2 and "missing" in report.problem


async def test_edit_is_found_across_batches(ctx: NodeContext) -> None:
    for i in range(7):
        await ctx.audit.write(Actor("bob"), "x", str(i))
    async with ctx.db.transaction() as s:
        await s.execute(text("UPDATE audit_log SET detail='{\"forged\": 1}' WHERE seq=6"))
    report = await ctx.audit.verify(batch=2)
    assert not report.ok and report.seq == 6
