"""Tampering the audit log through SQL is found: edits, deletions in the middle and at the end,
a re-computed chain, and a lost anchor; ``vmesh audit verify`` exits 1 naming the break."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from factories import vmesh, write_config
from vmesh.audit.chain import row_hash
from vmesh.audit.log import ANCHOR_FILE, Actor
from vmesh.audit.models import AuditRecord
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

ROWS = 5


async def write_rows(ctx: NodeContext, n: int = ROWS) -> None:
    for i in range(n):
        await ctx.audit.write(Actor("alice", "operator", "10.0.0.1"), "directory.view", f"cam{i}")


def anchor_of(ctx: NodeContext) -> dict:  # type: ignore[type-arg]
    return json.loads((ctx.config.node.data_dir / ANCHOR_FILE).read_text())


async def sql(ctx: NodeContext, statement: str) -> None:
    async with ctx.db.transaction() as s:
        await s.execute(text(statement))


async def test_anchor_follows_the_head(ctx: NodeContext) -> None:
    await write_rows(ctx)
    anchor = anchor_of(ctx)
    async with ctx.db.sessions() as s:
        head = (await s.execute(select(AuditRecord.seq, AuditRecord.hash)
                                .order_by(AuditRecord.seq.desc()).limit(1))).one()  # fmt: skip
    assert (anchor["seq"], anchor["hash"]) == (head[0], head[1]) == (ROWS, head[1])
    report = await ctx.audit.verify()
    assert report.ok and report.checked == ROWS


async def test_edited_row_fails_naming_its_seq(ctx: NodeContext) -> None:
    await write_rows(ctx)
    await sql(ctx, "UPDATE audit_log SET target_code='forged' WHERE seq=2")
    report = await ctx.audit.verify()
    assert not report.ok and report.seq == 2 and "row 2" in report.problem


async def test_deleted_middle_row_fails(ctx: NodeContext) -> None:
    await write_rows(ctx)
    await sql(ctx, "DELETE FROM audit_log WHERE seq=3")
    report = await ctx.audit.verify()
    assert not report.ok and report.seq == 3 and "missing" in report.problem


async def test_deleted_last_rows_fail(ctx: NodeContext) -> None:
    await write_rows(ctx)
    await sql(ctx, f"DELETE FROM audit_log WHERE seq >= {ROWS - 1}")
    report = await ctx.audit.verify()
    assert not report.ok and report.seq == ROWS - 1
    assert f"rows {ROWS - 1}..{ROWS} were deleted from the end" in report.problem


async def test_deleted_last_row_then_new_rows_still_fail(ctx: NodeContext) -> None:
    """Writing on after a cut does not hide it: the anchor's row now has another hash."""
    await write_rows(ctx)
    await sql(ctx, f"DELETE FROM audit_log WHERE seq = {ROWS}")
    await write_rows(ctx, 2)  # re-uses seq ROWS for a different row
    report = await ctx.audit.verify()
    assert not report.ok and report.seq == ROWS and "differs from the anchor" in report.problem


async def test_recomputed_chain_fails_against_the_anchor(ctx: NodeContext) -> None:
    """Someone who knows the hashing rewrites the last row and fixes up its hash."""
    await write_rows(ctx)
    async with ctx.db.transaction() as s:
        row = await s.scalar(select(AuditRecord).where(AuditRecord.seq == ROWS))
        assert row is not None
        fields = {
            k: getattr(row, k)
            for k in (
                "seq",
                "at",
                "username",
                "roles",
                "action",
                "target_code",
                "client_addr",
                "result",
                "detail",
            )
        }
        fields["username"] = "mallory"
        forged = row_hash(str(row.prev_hash), fields)
        await s.execute(update(AuditRecord).where(AuditRecord.id == row.id)
                        .values(username="mallory", hash=forged))  # fmt: skip
    report = await ctx.audit.verify()
    assert not report.ok and report.seq == ROWS and "rewritten" in report.problem


async def test_lost_or_damaged_anchor_fails_until_reanchored(ctx: NodeContext) -> None:
    await write_rows(ctx)
    path = ctx.config.node.data_dir / ANCHOR_FILE
    path.write_text("{not json")
    report = await ctx.audit.verify()
    assert not report.ok and "damaged" in report.problem
    path.unlink()
    report = await ctx.audit.verify()
    assert not report.ok and "missing" in report.problem and "--reanchor" in report.problem

    report = await ctx.audit.reanchor(Actor("cli", "", "local"))
    assert report.ok and report.checked == ROWS + 1
    assert anchor_of(ctx)["seq"] == ROWS + 1
    assert (await ctx.audit.verify()).ok
    async with ctx.db.sessions() as s:
        (row,) = await s.scalars(select(AuditRecord).where(AuditRecord.action == "audit.reanchor"))
        assert row.username == "cli" and json.loads(row.detail)["old_anchor"] == {}


async def test_reanchor_refuses_a_broken_chain(ctx: NodeContext) -> None:
    await write_rows(ctx)
    await sql(ctx, "DELETE FROM audit_log WHERE seq=2")
    report = await ctx.audit.reanchor(Actor("cli"))
    assert not report.ok and report.seq == 2
    assert anchor_of(ctx)["seq"] == ROWS


# ------------------------------------------------------------------------------------------ CLI


async def test_cli_verify_exit_status(ctx: NodeContext, tmp_path: Path) -> None:
    await write_rows(ctx)
    config = write_config(ctx, tmp_path)
    code, out, _ = await vmesh("audit", "verify", "--config", str(config))
    assert code == 0 and f"intact: {ROWS} rows" in out

    await sql(ctx, f"DELETE FROM audit_log WHERE seq={ROWS}")
    code, out, err = await vmesh("audit", "verify", "--config", str(config))
    assert code == 1 and "AUDIT CHAIN BROKEN" in err and f"rows {ROWS}..{ROWS} were deleted" in err

    # An operator who restored the database on purpose accepts the new head, on record.
    code, out, _ = await vmesh("audit", "verify", "--reanchor", "--config", str(config))
    assert code == 0 and "re-anchored" in out
    code, out, _ = await vmesh("audit", "verify", "--config", str(config))
    assert code == 0

    await sql(ctx, "UPDATE audit_log SET detail='{\"x\": 1}' WHERE seq=1")
    code, _, err = await vmesh("audit", "verify", "--config", str(config))
    assert code == 1 and "row 1: contents do not match its hash (edited)" in err
