"""``RequestMetrics``: every request counted by route template and status and timed, including
the ones no route matched and the ones whose handler raised."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram

from vmesh.api.app import RequestMetrics

pytestmark = pytest.mark.unit


def app_and_registry() -> tuple[FastAPI, CollectorRegistry]:
    reg = CollectorRegistry()
    app = FastAPI()
    app.add_middleware(
        RequestMetrics,
        requests=Counter("t_requests_total", "t", ["route", "status"], registry=reg),
        latency=Histogram("t_request_seconds", "t", ["route"], registry=reg),
    )

    @app.get("/items/{code}")
    async def item(code: str) -> dict[str, str]:
        if code == "bad":
            raise ValueError("the handler failed")
        return {"code": code}

    return app, reg


async def test_requests_are_counted_by_template_status_and_timed() -> None:
    app, reg = app_and_registry()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/items/1")).status_code == 200
        assert (await c.get("/items/2")).status_code == 200
        assert (await c.get("/nowhere")).status_code == 404
        assert (await c.get("/items/bad")).status_code == 500

    def count(route: str, status: str) -> float | None:
        return reg.get_sample_value("t_requests_total", {"route": route, "status": status})

    assert count("/items/{code}", "200") == 2  # the template, not each path
    assert count("other", "404") == 1
    assert count("/items/{code}", "500") == 1  # raised before answering
    assert reg.get_sample_value("t_request_seconds_count", {"route": "/items/{code}"}) == 3
    assert reg.get_sample_value("t_request_seconds_sum", {"route": "/items/{code}"}) > 0
