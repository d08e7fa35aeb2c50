"""CLI commands (being written)."""

import click


@click.group()
def demo() -> None:
    """(being written)"""
