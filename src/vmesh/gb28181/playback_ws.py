"""GB/T 28181 playback on the console's live WebSocket (``/api/live/ws``): one page's playbacks.

``GbPlaybackPage`` takes the messages of the page's socket that are about device recordings
(``vmesh.media.api`` asks :meth:`GbPlaybackPage.wants` first) and shows each playback through the
page's ``LiveSession.open_channel`` — the same channel, Janus mountpoint and WebRTC offer as a
live view, so the tile's states and stats are a live tile's:

    -> {"type": "gb_playback", "tile": "pb", "code": CHANNEL, "start": UNIX, "end": UNIX}
    <- the live tile messages (status, offer, candidates; the tile's code is ``<channel>~pb<n>``)
    -> {"type": "gb_control", "tile": "pb", "action": "pause" | "resume" | "seek" | "speed",
        "at": SECONDS_FROM_START (seek), "scale": 0.25..4 (speed)}
    <- {"type": "gb_control", "tile": "pb", "action": ..., "ok": true}
    <- {"type": "gb_playback_ended", "tile": "pb", "reason": "end of recording"}
    <- {"type": "error", "field": ..., "reason": ...}       (bad input, refused, device refusal)
    -> {"type": "stop", "tile": "pb"}                     (the live session's: BYE after linger)

Authorisation is the recordings' (``vmesh.recording.access.authorise_playback``: scope, or a
grant); each playback is audited ``gb28181.playback`` with the range (``denied`` when refused, as
not found), each control ``gb28181.playback_control``.

Public: ``GbPlaybackPage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from vmesh.auth.principal import Principal
from vmesh.errors import InvalidInput, VmeshError
from vmesh.gb28181.message import ascii_digits
from vmesh.gb28181.playback import GbPlaybackSource, GbPlaybackSpec, playback_key
from vmesh.ingest.status import IngestState
from vmesh.recording.access import authorise_playback

log = logging.getLogger(__name__)

Json = dict[str, Any]
ACTIONS = ("pause", "resume", "seek", "speed")


class GbPlaybackPage:
    """See the module docstring."""

    def __init__(
        self,
        ctx: Any,
        principal: Principal,
        media: Any,
        live: Any,
        send: Callable[[Json], Awaitable[None]],
    ) -> None:
        self.ctx = ctx
        self.principal = principal
        self.media = media
        self.live = live
        self.send = send
        self.keys: dict[str, tuple[str, str]] = {}  # tile → (playback key, channel code)
        self._watch: dict[str, asyncio.Task[None]] = {}

    def wants(self, msg: Json) -> bool:
        return msg.get("type") in ("gb_playback", "gb_control")

    async def handle(self, msg: Json) -> None:
        tile = str(msg.get("tile") or "")
        try:
            if msg.get("type") == "gb_playback":
                await self._open(tile, msg)
            else:
                await self._control(tile, msg)
        except VmeshError as e:
            err = e.errors[0] if e.errors else None
            await self.send(
                {
                    "type": "error",
                    "tile": tile,
                    "field": err.field if err else "",
                    "reason": err.reason if err else e.detail,
                }
            )
        except Exception as e:
            log.exception("gb playback tile=%s failed", tile)
            await self.send({"type": "error", "tile": tile, "field": "", "reason": str(e)})

    async def _open(self, tile: str, msg: Json) -> None:
        gb = self.ctx.gb28181
        if gb is None:
            raise InvalidInput.one("code", "GB/T 28181 is not running on this node")
        code = msg.get("code")
        if not isinstance(code, str) or len(code) != 20 or not ascii_digits(code):
            raise InvalidInput.one("code", "must be a 20-digit channel code", code)
        start, end = _number(msg, "start"), _number(msg, "end")
        cam = await authorise_playback(self.ctx, self.principal, code, "gb28181.playback")
        try:
            attrs = json.loads(cam.attrs or "{}")
        except ValueError:
            attrs = {}
        if cam.origin_node is not None or attrs.get("source") != "gb28181":
            raise InvalidInput.one("code", f"{cam.name} is not a GB/T 28181 channel of this node")
        spec = GbPlaybackSpec.for_range(code, attrs, start, end)
        key = playback_key(code)
        detail = {"tile": tile, "start": spec.start, "end": spec.end}
        if cam.grant is not None:
            detail |= {"grant": cam.grant, "purpose": cam.purpose}
        await self.ctx.audit.write(self.principal, "gb28181.playback", code, "ok", detail)
        ch = self.media.lend(self.live.owner)
        try:
            await self.media.play(ch, key, spec, user=self.principal.username)
        except BaseException:
            self.media.give_back(ch)
            raise
        self.keys[tile] = (key, code)
        await self.live.open_channel(tile, ch, key, cam.name)
        old = self._watch.pop(tile, None)
        if old is not None:
            old.cancel()
        self._watch[tile] = asyncio.create_task(self._ended(tile, key), name=f"gb-pb-{tile}")

    def source(self, tile: str) -> GbPlaybackSource:
        key, _ = self.keys.get(tile, ("", ""))
        src = self.media.sources.get(key) if key else None
        cam = src.camera if src is not None else None
        if not isinstance(cam, GbPlaybackSource) or tile not in self.live.tiles:
            raise InvalidInput.one("tile", "no GB/T 28181 playback on this tile", tile)
        return cam

    async def _control(self, tile: str, msg: Json) -> None:
        action = msg.get("action")
        if action not in ACTIONS:
            raise InvalidInput.one("action", f"must be one of {', '.join(ACTIONS)}", action)
        src = self.source(tile)
        detail: Json = {"tile": tile, "action": action}
        if action == "pause":
            await src.pause()
        elif action == "resume":
            await src.resume()
        elif action == "seek":
            detail["at"] = at = _number(msg, "at")
            await src.seek(at)
        else:
            detail["scale"] = scale = _number(msg, "scale")
            await src.speed(scale)
        await self.ctx.audit.write(
            self.principal, "gb28181.playback_control", src.spec.channel, "ok", detail
        )
        await self.send({"type": "gb_control", "tile": tile, "action": action, "ok": True})

    async def _ended(self, tile: str, key: str) -> None:
        """Tell the page when the device ended the recording (MediaStatus 121)."""
        while True:
            await asyncio.sleep(0.25)
            src = self.media.sources.get(key)
            cam = src.camera if src is not None else None
            if not isinstance(cam, GbPlaybackSource) or self.keys.get(tile, ("",))[0] != key:
                return
            if cam.ended_by_device and cam.status.state is IngestState.STOPPED:
                await self.send(
                    {"type": "gb_playback_ended", "tile": tile, "reason": "end of recording"}
                )
                return

    async def close(self) -> None:
        for t in self._watch.values():
            t.cancel()
        for t in self._watch.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._watch.clear()


def _number(msg: Json, name: str) -> float:
    v = msg.get(name)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise InvalidInput.one(name, "must be a number", v)
    return float(v)
