"""Errors as ``application/problem+json`` (RFC 9457), mapped once for the whole API.

Bodies carry ``title``, ``status``, ``detail`` and, for input errors, ``errors``: a list of
``{field, reason, value?, row?}`` naming each thing that was wrong.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmesh.errors import VmeshError

PROBLEM = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(VmeshError)
    async def _vmesh(_req: Request, exc: VmeshError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return problem(
            exc.status, exc.title, exc.detail, [e.as_dict() for e in exc.errors], headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
            item: dict[str, Any] = {"field": ".".join(loc) or "body", "reason": e.get("msg", "")}
            if "input" in e and isinstance(e["input"], str | int | float):
                item["value"] = str(e["input"])
            errors.append(item)
        detail = "; ".join(f"{x['field']}: {x['reason']}" for x in errors)
        return problem(422, "Invalid input", detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail), headers=exc.headers)
