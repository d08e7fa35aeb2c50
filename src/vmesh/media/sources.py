"""A camera's source as the media service sees it: its directory ``attrs`` read as an ingest spec,
and the link back to the directory (presence written, always-pulled cameras listed).

The sources themselves are ``vmesh.ingest`` (``SyntheticCamera``, ``RtspCamera``): this module
only decides which one a camera gets and with which settings. It owns:

- ``source_from_attrs(code, name, attrs)``: ``{"source": "synthetic", ...}`` is a
  ``vmesh.ingest.SyntheticSpec`` with the media defaults below (640×360 at 25 fps, a keyframe a
  second, **clip** mode: encoded once, looped with ``-c copy``, so watching a camera costs next to
  no CPU); ``{"rtsp_url": ...}`` (or ``"source": "rtsp"``) is a ``vmesh.ingest.RtspSettings``
  (``username``/``password``, ``transport``, ``pull`` = ``on_demand`` | ``always``). Anything else
  is refused with the field and the reason.
- ``pull_of(spec)``: when the media service runs the source (RTSP cameras may say ``always``;
  synthetic ones are always on demand).
- ``SourceDirectory``: writes a source's presence to its directory entry (``status`` online /
  offline and ``last_seen``; observations, not edits: no version bump, no audit row) and lists the
  cameras whose ``attrs.pull`` is ``always`` (started with the node).

Camera attributes (JSON ``attrs`` of a directory entry)::

    {"source": "synthetic", "width": 640, "height": 360, "fps": 25, "gop": 25,
     "color": "#e02020", "mode": "clip" | "live", "audio": true}    # all but "source" optional
    {"rtsp_url": "rtsp://10.1.2.3/main", "username": "admin", "password": "...",
     "transport": "tcp" | "udp", "pull": "on_demand" | "always"}    # all but "rtsp_url" optional

May call: ``vmesh.ingest`` (specs only), the database. Public: ``SourceSpec``,
``SYNTHETIC_DEFAULTS``, ``source_from_attrs``, ``pull_of``, ``SourceDirectory``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select, update

from vmesh.directory.models import Entry
from vmesh.errors import InvalidInput
from vmesh.ingest.rtsp import RtspSettings
from vmesh.ingest.synthetic import SyntheticSpec
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

SourceSpec = SyntheticSpec | RtspSettings  # | vmesh.gb28181.session.GbSpec (attrs.source gb28181)

# What a synthetic camera of the live wall is when its attrs say no more than "synthetic": small
# enough for 16 tiles on 2 cores, a keyframe a second (``gop`` defaults to ``fps``), clip mode.
SYNTHETIC_DEFAULTS: dict[str, Any] = {"width": 640, "height": 360, "fps": 25, "mode": "clip"}


def source_from_attrs(code: str, name: str, attrs: Mapping[str, Any]) -> SourceSpec:
    """The camera's source, or ``InvalidInput`` naming the attribute that is wrong or missing."""
    kind = attrs.get("source")
    if kind == "synthetic":
        given = {k: v for k, v in attrs.items() if v is not None}
        merged = {**SYNTHETIC_DEFAULTS, **given}
        if "gop" not in given and isinstance(merged["fps"], int):
            merged["gop"] = merged["fps"]
        return SyntheticSpec.from_attrs(code, name, merged)
    if kind == "gb28181":  # a GB/T 28181 channel, played by INVITE (vmesh.gb28181.session)
        from vmesh.gb28181.session import GbSpec

        return GbSpec.from_attrs(code, dict(attrs))
    if kind == "rtsp" or attrs.get("rtsp_url") is not None:
        return RtspSettings.from_attrs(attrs)
    if kind is not None:
        raise InvalidInput.one("attrs.source", "must be synthetic, rtsp or gb28181", kind)
    raise InvalidInput.one(
        "attrs",
        "this camera has no video source: set attrs.rtsp_url or attrs.source = synthetic",
        code,
    )


def pull_of(spec: SourceSpec) -> Literal["on_demand", "always"]:
    """``always``: run from node start; ``on_demand``: only while watched (plus the linger)."""
    return spec.pull if isinstance(spec, RtspSettings) else "on_demand"


class SourceDirectory:
    """The directory as the media service's sources need it (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def set_presence(self, code: str, online: bool, last_seen: datetime | None) -> None:
        values: dict[str, Any] = {"status": "online" if online else "offline"}
        if last_seen is not None:
            values["last_seen"] = last_seen
        async with self.db.transaction() as s:
            await s.execute(update(Entry).where(Entry.code == code).values(**values))
        log.debug("media presence camera=%s online=%s", code, online)

    async def always_pulled(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Cameras whose ``attrs.pull`` is ``always``: ``(code, name, attrs)``."""
        async with self.db.sessions() as s:
            rows = (
                await s.execute(
                    select(Entry.code, Entry.name, Entry.attrs).where(
                        Entry.kind == "camera", Entry.attrs.like('%"always"%')
                    )
                )
            ).all()
        out = []
        for code, name, raw in rows:
            try:
                attrs = json.loads(raw or "{}")
            except ValueError:
                continue
            if isinstance(attrs, dict) and attrs.get("pull") == "always":
                out.append((code, name, attrs))
        return out


def utc(ts: float | None) -> datetime | None:
    """A Unix time as an aware datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)
