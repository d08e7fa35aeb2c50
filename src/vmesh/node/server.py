"""The node process: opens its context, serves HTTP with uvicorn (uvloop), stops cleanly."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from vmesh.api.app import create_app
from vmesh.config import NodeConfig
from vmesh.node.context import NodeContext

log = logging.getLogger(__name__)


async def serve_async(config: NodeConfig) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles them), then close the database."""
    ctx = await NodeContext.open(config)
    app = create_app(ctx)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.http.host,
            port=config.http.port,
            log_level="warning",
            loop="none",
            lifespan="off",
            access_log=False,
        )
    )
    log.info("node=%s http=%s:%s serving", config.node.code, config.http.host, config.http.port)
    try:
        await server.serve()
    finally:
        await ctx.close()
        log.info("node=%s stopped", config.node.code)


def serve(config: NodeConfig) -> None:
    try:
        import uvloop

        uvloop.run(serve_async(config))
    except ImportError:  # pragma: no cover - uvloop is a dependency; only odd platforms lack it
        asyncio.run(serve_async(config))
