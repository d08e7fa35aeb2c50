"""Apply Alembic migrations programmatically (the node and the CLI upgrade on start).

Public: ``upgrade``, ``alembic_config``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade_sync(url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at ``url`` to ``revision`` (every branch head by default: capabilities
    add their tables in migrations of their own off a common base); safe to call on every start."""
    await asyncio.to_thread(upgrade_sync, url, revision)
