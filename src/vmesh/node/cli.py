"""``vmesh node run``: start a node from its configuration and serve until stopped."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from vmesh.config import load_config


@click.group()
def node() -> None:
    """Run a vmesh node."""


@node.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="node configuration (TOML)",
)
def run(config_path: Path) -> None:
    """Validate the configuration, migrate the database and serve the API and console."""
    from vmesh.node.server import serve

    config = load_config(config_path)
    logging.basicConfig(
        level=config.log.level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    serve(config)
