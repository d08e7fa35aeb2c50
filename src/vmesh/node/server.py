"""The node process: opens its context, serves HTTP with uvicorn (uvloop), stops cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

import uvicorn

from vmesh.api.app import create_app
from vmesh.config import NodeConfig
from vmesh.node.context import NodeContext
from vmesh.node.gc_tuning import settle_gc

log = logging.getLogger(__name__)


async def serve_async(config: NodeConfig) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles them), then close the database."""
    ctx = await NodeContext.open(config)
    if config.federation.enabled:
        from vmesh.federation.node import Federation

        federation = Federation(ctx)
        try:
            await federation.start()
        except BaseException:
            await ctx.close()
            raise
        ctx.federation = federation
    if config.media.enabled:
        from vmesh.media.service import MediaService
        from vmesh.media.sources import SourceDirectory

        media = MediaService(
            config.media, config.node.data_dir, ctx.metrics, directory=SourceDirectory(ctx.db)
        )
        try:
            await media.start()
        except BaseException:
            if ctx.federation is not None:
                await ctx.federation.stop()
            await ctx.close()
            raise
        ctx.media = media
    if config.gb28181.enabled:
        from vmesh.gb28181.service import GbService

        gb = GbService(config.gb28181, config.node.code, ctx.db, ctx.audit, ctx.metrics)
        try:
            await gb.start()
        except BaseException:
            if ctx.media is not None:
                await ctx.media.stop()
            if ctx.federation is not None:
                await ctx.federation.stop()
            await ctx.close()
            raise
        ctx.gb28181 = gb
        if ctx.media is not None:
            ctx.media.gb = gb
            if gb.cascade is not None:
                gb.cascade.media = ctx.media  # upper platforms' INVITEs play from the switch
    if config.fabric.enabled:
        from vmesh.fabric.node import start_fabric

        try:
            ctx.fabric = await start_fabric(ctx)
        except BaseException:
            await _stop_services(ctx)
            await ctx.close()
            raise
    if config.recording.enabled:
        from vmesh.recording.service import RecordingService

        recording = RecordingService(
            config.recording, config.node.data_dir, ctx.db, ctx.audit, ctx.media
        )
        try:
            await recording.start()
        except BaseException:
            await _stop_services(ctx)
            await ctx.close()
            raise
        ctx.recording = recording
    from vmesh.grants.node import start_grants

    try:
        ctx.grants = await start_grants(ctx)
        from vmesh.command.service import start_command

        ctx.command = await start_command(ctx)
        from vmesh.gb28181.alarms import wire_alarms

        wire_alarms(ctx)  # GB/T 28181 alarms → alarm recording plans, incidents
        from vmesh.recording.remote import serve_recordings

        await serve_recordings(ctx)  # other nodes play back this node's recordings
    except BaseException:
        await _stop_services(ctx)
        await ctx.close()
        raise
    app = create_app(ctx)
    # Started: freeze what start-up built (modules, config, caches) so that the collector's full
    # collections no longer walk it, and collect the young generation less often (gc_tuning).
    settle_gc()
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
    _absorb_reraised_signals()
    try:
        await server.serve()
    finally:
        await _stop_services(ctx)
        await ctx.close()
        log.info("node=%s stopped", config.node.code)


async def _stop_services(ctx: NodeContext) -> None:
    """Stop what the node started, in reverse order: recording, fabric, media, GB/T 28181,
    federation."""
    if ctx.command is not None:
        await ctx.command.stop()
    if ctx.grants is not None:
        await ctx.grants.stop()
    if ctx.recording is not None:
        await ctx.recording.stop()
    if ctx.conferences is not None:  # its routes use the media service: first
        await ctx.conferences.stop()
    if ctx.fabric is not None:
        await ctx.fabric.stop()
    if ctx.media is not None:
        await ctx.media.stop()
    if ctx.gb28181 is not None:
        await ctx.gb28181.stop()
    if ctx.federation is not None:
        await ctx.federation.stop()


def _absorb_reraised_signals() -> None:
    """Let the node finish its own shutdown after uvicorn stops on SIGINT/SIGTERM.

    uvicorn handles the signal, then restores the handlers it found and raises the signal again;
    with the default handlers that kills the process (exit 143) or raises KeyboardInterrupt before
    the database is closed. With these, the re-raised signal is only logged.
    """

    def note(sig: int, _frame: object) -> None:
        log.info("signal=%s stopping", signal.Signals(sig).name)

    if threading.current_thread() is not threading.main_thread():
        return  # uvicorn does not touch signals there either
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, note)


def serve(config: NodeConfig) -> None:
    try:
        import uvloop

        uvloop.run(serve_async(config))
    except ImportError:  # pragma: no cover - uvloop is a dependency; only odd platforms lack it
        asyncio.run(serve_async(config))
