"""``vmesh audit verify``: check the hash chain of the audit log."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vmesh.node.cli_common import config_option, run_with_node
from vmesh.node.context import NodeContext


@click.group()
def audit() -> None:
    """Audit log."""


@audit.command("verify")
@config_option
def verify(config_path: Path) -> None:
    """Detect edited, deleted or inserted audit rows. Exit status 1 when the chain is broken."""

    async def go(ctx: NodeContext):  # type: ignore[no-untyped-def]
        return await ctx.audit.verify()

    report = run_with_node(config_path, go)
    if report.ok:
        click.echo(f"audit chain intact: {report.checked} rows")
        return
    click.echo(
        f"AUDIT CHAIN BROKEN: {report.problem} ({report.checked} rows checked before it)", err=True
    )
    sys.exit(1)
