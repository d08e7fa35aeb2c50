"""The ``vmesh`` command: one group per capability, each defined beside its capability.

Errors that a user caused (bad configuration, bad input) end the command with exit status 2 and a
message naming what was wrong; no traceback.
"""

from __future__ import annotations

import sys

import click

from vmesh import __version__
from vmesh.audit.cli import audit
from vmesh.auth.cli import user
from vmesh.config import ConfigError
from vmesh.demo.cli import demo
from vmesh.directory.cli import directory
from vmesh.errors import VmeshError
from vmesh.federation.cli import ca
from vmesh.node.cli import node
from vmesh.node.doctor_cli import doctor


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmesh")
def cli() -> None:
    """vmesh: one video network for a province."""


cli.add_command(node)
cli.add_command(demo)
cli.add_command(directory)
cli.add_command(user)
cli.add_command(audit)
cli.add_command(doctor)
cli.add_command(ca)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except ConfigError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except VmeshError as e:
        click.echo(f"error: {e.detail}", err=True)
        for fe in e.errors:
            click.echo(f"  {fe}", err=True)
        sys.exit(2)
