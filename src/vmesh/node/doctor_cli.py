"""The ``vmesh doctor`` command (``vmesh.node.doctor``): exit status 1 if a required program
is missing or too old."""

from __future__ import annotations

import json
import sys

import click

from vmesh.node.doctor import check_all, exit_status, render_text


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="print the findings as JSON")
def doctor(as_json: bool) -> None:
    """Check the programs a node runs: janus, nats-server, ffmpeg (required); chromium,
    postgresql (optional). Says which Debian package to install when one is missing or too old."""
    findings = check_all()
    if as_json:
        click.echo(
            json.dumps(
                {"findings": [f.as_dict() for f in findings], "ok": exit_status(findings) == 0},
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        click.echo(render_text(findings))
    # sys.exit, not click's Exit: ``vmesh.cli.main`` runs click with standalone_mode=False.
    sys.exit(exit_status(findings))


if __name__ == "__main__":
    doctor()
