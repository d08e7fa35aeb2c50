"""CLI commands (being written)."""

import click


@click.group()
def directory() -> None:
    """(being written)"""
