"""Serves the web console (static ES modules) from ``vmesh/web/static``.

The console needs no build step: ``index.html`` loads ``js/main.js`` as an ES module, which imports
the rest (pages under ``js/views/``, strings under ``i18n/``). Every console response carries
``Cache-Control: no-cache`` (browsers revalidate with the ETag, so an upgraded node is picked up at
once) and a Content-Security-Policy that allows only the node's own scripts, styles and API: the
console has no inline script or style and loads nothing from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)

CONSOLE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class ConsoleFiles(StaticFiles):
    """Static files with the console's caching and security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(CONSOLE_HEADERS)
        if path.endswith(".js") and response.status_code == 200:
            # Some systems' mime tables lack .js or map it oddly; modules need a JS type.
            response.headers["Content-Type"] = "text/javascript; charset=utf-8"
        return response


def mount(app: FastAPI) -> None:
    app.mount("/", ConsoleFiles(directory=STATIC, html=True), name="console")
