"""Cameras of other nodes, watched here through the fabric (``vmesh.fabric``).

A camera that is not in this node's directory but in its catalogue (``catalogue_entries``) with
another origin node is played with a ``RemoteSpec``: ``MediaService.play`` asks the fabric to
carry the stream here (``acquire``: leases hop by hop to the camera's node, ending in a local
switch input ``fabric/<camera>``) and routes the channel's video from that input, as for a local
camera (audio is not carried). Each channel is one fabric viewer (``channel-<index>``); giving the
channel back releases it, and the stream lingers on each link as the fabric decides.

The other direction: ``FabricCameras`` is the fabric's ``LocalCameras`` on the camera's node: it
starts the camera's source from this node's directory (the same sources as a local viewer's,
shared with them) and releases it when the fabric lets the stream go.

``remote_camera`` is the catalogue lookup; scope for catalogue entries is by administrative
division (the entry code's division inside the user's scope division), as ``/api/network`` does.

``FabricSources`` extends it to everything a conference sends through the fabric: a stream
``<code>`` or ``<code>/audio`` (``vmesh.fabric.service.audio_stream``) is first looked up among
this node's browser publications (``vmesh.media.publish``: a venue's page publishing here), then
among its cameras (a synthetic camera with audio has an audio input; others have none).

Public: ``RemoteSpec``, ``FabricHooks``, ``FabricCameras``, ``FabricSources``, ``remote_camera``,
``covers_remote``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select

from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import InvalidInput, NotFound
from vmesh.federation.models import CatalogueEntry
from vmesh.identity.codes import division_prefix
from vmesh.media.sources import source_from_attrs
from vmesh.storage.db import Database

if TYPE_CHECKING:
    from vmesh.media.service import MediaService

log = logging.getLogger(__name__)

FABRIC_HOLDER = -1
"""The pseudo channel index under which the fabric holds a local camera's source."""
FABRIC_AUDIO_HOLDER = -2
"""The same for the camera's audio stream (a lease of its own)."""


@dataclass(frozen=True)
class RemoteSpec:
    """A camera at another node: played through the fabric."""

    code: str
    node: str  # the camera's node (the catalogue entry's origin)
    audio: bool = False  # a browser publication: its audio (``<code>/audio``) carried too


class FabricHooks(Protocol):
    """What ``vmesh.fabric.service.FabricService`` answers for the media service."""

    async def acquire(
        self,
        stream: str,
        camera_node: str,
        viewer: str,
        user: str,
        on_input: Callable[[str], Awaitable[None]] | None = None,
    ) -> str: ...

    async def release(self, stream: str, viewer: str) -> None: ...

    def signal(self, stream: str) -> tuple[str | None, float | None] | None: ...


def covers_remote(principal: Principal, code: str) -> bool:
    """A catalogue entry is in scope when its code lies in the user's scope division."""
    return code.startswith(division_prefix(principal.scope_code[:8]))


async def remote_camera(db: Database, code: str, here: str) -> CatalogueEntry | None:
    """The live catalogue entry ``code`` when it comes from another node than ``here``."""
    async with db.sessions() as s:
        e = (
            await s.execute(select(CatalogueEntry).where(CatalogueEntry.code == code))
        ).scalar_one_or_none()
    if e is None or e.deleted or e.origin_node == here:
        return None
    return e


def attrs_of(raw: str | None) -> dict[str, Any]:
    try:
        attrs = json.loads(raw or "{}")
    except ValueError:
        return {}
    return attrs if isinstance(attrs, dict) else {}


class FabricCameras:
    """The fabric's ``LocalCameras``: this node's own cameras, started through ``MediaService``."""

    def __init__(self, media: MediaService, db: Database) -> None:
        self.media = media
        self.db = db

    async def acquire(self, code: str) -> str:
        async with self.db.sessions() as s:
            e = (await s.execute(select(Entry).where(Entry.code == code))).scalar_one_or_none()
        if e is None:
            raise NotFound(f"camera {code} is not in this node's directory")
        if e.kind != "camera":
            raise InvalidInput.one("stream", f"{e.name} ({code}) is a {e.kind}, not a camera", code)
        spec = source_from_attrs(code, e.name, attrs_of(e.attrs))
        return await self.media.hold(code, spec, FABRIC_HOLDER)

    def release(self, code: str) -> None:
        self.media.unhold(code, FABRIC_HOLDER)


class FabricSources(FabricCameras):
    """The fabric's ``LocalCameras`` for video and audio streams of cameras and browser
    publications (see the module docstring). ``rebind(stream, input_id)`` is the fabric's: called
    when a publication goes live again on new switch inputs."""

    def __init__(self, media: MediaService, db: Database) -> None:
        super().__init__(media, db)
        self.rebind: Any = None
        self._cameras: set[str] = set()
        from vmesh.media.publish import BrowserSources

        BrowserSources.of(media).on_live.append(self._on_live)

    def _browser(self) -> dict[str, Any]:
        from vmesh.media.publish import BrowserSources

        return BrowserSources.of(self.media).live

    async def acquire(self, code: str) -> str:
        base, audio = (code[:-6], True) if code.endswith("/audio") else (code, False)
        fw = self._browser().get(base)
        if fw is not None:
            input_id = fw.audio_input if audio else fw.video_input
            if input_id is None:
                raise NotFound(f"{base} publishes no audio at this node")
            return str(input_id)
        if not audio:
            video = await super().acquire(base)
            self._cameras.add(code)
            return video
        async with self.db.sessions() as s:
            e = (await s.execute(select(Entry).where(Entry.code == base))).scalar_one_or_none()
        if e is None:
            raise NotFound(f"{base} is neither publishing nor a camera at this node")
        if e.kind != "camera":
            raise NotFound(f"{e.name} ({base}) is not publishing at this node")
        spec = source_from_attrs(base, e.name, attrs_of(e.attrs))
        await self.media.hold(base, spec, FABRIC_AUDIO_HOLDER)
        src = self.media.sources.get(base)
        if src is None or src.audio_input is None:
            self.media.unhold(base, FABRIC_AUDIO_HOLDER)
            raise NotFound(f"camera {e.name} ({base}) has no audio")
        self._cameras.add(code)
        return src.audio_input

    def release(self, code: str) -> None:
        if code not in self._cameras:
            return  # a browser publication: it runs as long as its page does
        self._cameras.discard(code)
        if code.endswith("/audio"):
            self.media.unhold(code[:-6], FABRIC_AUDIO_HOLDER)
        else:
            super().release(code)

    def _on_live(self, fw: Any) -> None:
        if self.rebind is None:
            return
        self.rebind(fw.code, fw.video_input)
        if fw.audio_input is not None:
            self.rebind(fw.code + "/audio", fw.audio_input)
