"""The node's HTTP application: API routers of every capability, the console, health and metrics.

``create_app(ctx)`` builds it around an opened ``NodeContext``; the node process serves it with
uvicorn. OpenAPI is at ``/api/openapi.json`` and the docs at ``/api/docs``.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmesh import __version__
from vmesh.api import health, problems
from vmesh.audit import api as audit_api
from vmesh.auth import api as auth_api
from vmesh.command import api as command_api
from vmesh.conference import api as conference_api
from vmesh.directory import api as directory_api
from vmesh.federation import api as network_api
from vmesh.gb28181 import alarm_api as gb_alarm_api
from vmesh.gb28181 import api as gb_api
from vmesh.gb28181 import cascade_api as gb_cascade_api
from vmesh.gb28181 import records_api as gb_records_api
from vmesh.grants import api as grants_api
from vmesh.media import api as live_api
from vmesh.node.context import NodeContext
from vmesh.petition import api as petition_api
from vmesh.recording import api as recording_api
from vmesh.servicedesk import api as servicedesk_api
from vmesh.web import console


def create_app(ctx: NodeContext) -> FastAPI:
    app = FastAPI(
        title="vmesh node API",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    problems.install(app)
    _install_request_metrics(app, ctx)
    app.include_router(health.router)
    app.include_router(auth_api.router, prefix="/api")
    app.include_router(directory_api.router, prefix="/api")
    app.include_router(audit_api.router, prefix="/api")
    app.include_router(live_api.router, prefix="/api")
    app.include_router(network_api.router, prefix="/api")
    app.include_router(gb_api.router, prefix="/api")
    app.include_router(gb_alarm_api.router, prefix="/api")
    app.include_router(gb_cascade_api.router, prefix="/api")
    app.include_router(gb_records_api.router, prefix="/api")
    app.include_router(conference_api.router, prefix="/api")
    servicedesk_api.install(app, ctx)
    petition_api.install(app, ctx)
    app.include_router(recording_api.router, prefix="/api")
    app.include_router(grants_api.router, prefix="/api")
    command_api.install(app)
    console.mount(app)
    return app


def _install_request_metrics(app: FastAPI, ctx: NodeContext) -> None:
    requests = Counter(
        "vmesh_http_requests_total",
        "HTTP requests by route and status",
        ["route", "status"],
        registry=ctx.metrics,
    )
    latency = Histogram(
        "vmesh_http_request_seconds",
        "HTTP request latency by route",
        ["route"],
        registry=ctx.metrics,
    )
    app.add_middleware(RequestMetrics, requests=requests, latency=latency)


class RequestMetrics:
    """Counts every HTTP request by route template and status, and times it to its last byte.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) runs each
    request's app in a task group of its own and passes the response through memory streams,
    which cost every request about a millisecond here. The route is the template the router
    matched (``scope["route"]``), "other" when none did; a request whose app raised before it
    answered counts as 500.
    """

    def __init__(self, app: ASGIApp, *, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            name = getattr(scope.get("route"), "path", "other")
            self.requests.labels(name, str(status)).inc()
            self.latency.labels(name).observe(time.perf_counter() - start)
