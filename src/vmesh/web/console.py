"""Serves the web console (static ES modules) from ``vmesh/web/static``."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="console")
