"""CLI commands (being written)."""

import click


@click.group()
def user() -> None:
    """(being written)"""
