"""What every CLI command that touches a node's data shares: ``--config`` and opening the node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from vmesh.config import load_config
from vmesh.node.context import NodeContext

T = TypeVar("T")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="VMESH_CONFIG",
    default="vmesh.toml",
    show_default=True,
    help="node configuration (TOML); also $VMESH_CONFIG",
)


@asynccontextmanager
async def opened(config_path: Path) -> AsyncIterator[NodeContext]:
    ctx = await NodeContext.open(load_config(config_path))
    try:
        yield ctx
    finally:
        await ctx.close()


def run_with_node(config_path: Path, fn: Callable[[NodeContext], Awaitable[T]]) -> T:
    """Open the node's context, run ``fn`` in it, close it."""

    async def _go() -> T:
        async with opened(config_path) as ctx:
            return await fn(ctx)

    return asyncio.run(_go())


def as_json(obj: Any) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False, indent=2, default=str)
