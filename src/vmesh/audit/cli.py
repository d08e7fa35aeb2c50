"""``vmesh audit verify``: check the hash chain of the audit log and its head anchor.

Exit status 0 when the log is intact, 1 (with the reason on standard error) when a row was edited,
deleted or inserted, rows were cut from its end, or its anchor is missing or damaged.
``--reanchor`` accepts the current head as the anchor after a deliberate restore of the data
folder or database; it refuses when the chain itself is broken, and it is audited.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vmesh.audit.chain import ChainReport
from vmesh.audit.log import Actor
from vmesh.node.cli_common import config_option, run_with_node
from vmesh.node.context import NodeContext


@click.group()
def audit() -> None:
    """Audit log."""


@audit.command("verify")
@click.option(
    "--reanchor",
    is_flag=True,
    help="after a deliberate restore: accept the current head as the anchor (audited)",
)
@config_option
def verify(reanchor: bool, config_path: Path) -> None:
    """Detect edited, deleted or inserted audit rows. Exit status 1 when the chain is broken."""

    async def go(ctx: NodeContext) -> ChainReport:
        if reanchor:
            return await ctx.audit.reanchor(Actor("cli", "", "local"))
        return await ctx.audit.verify()

    report = run_with_node(config_path, go)
    if report.ok:
        what = "re-anchored" if reanchor else "intact"
        click.echo(f"audit chain {what}: {report.checked} rows")
        return
    click.echo(
        f"AUDIT CHAIN BROKEN: {report.problem} ({report.checked} rows checked before it)", err=True
    )
    sys.exit(1)
