"""``/healthz`` (is the node and its database answering) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from vmesh import __version__
from vmesh.node.context import NodeContext

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness and database check")
async def healthz(request: Request) -> Response:
    ctx: NodeContext = request.app.state.ctx
    try:
        async with ctx.db.sessions() as s:
            await s.execute(text("SELECT 1"))
        db_ok = True
    except Exception:
        db_ok = False
    body = {
        "status": "ok" if db_ok else "degraded",
        "version": __version__,
        "node": ctx.config.node.code,
        "database": "ok" if db_ok else "unreachable",
    }
    return JSONResponse(body, status_code=200 if db_ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    ctx: NodeContext = request.app.state.ctx
    return Response(generate_latest(ctx.metrics), media_type=CONTENT_TYPE_LATEST)
