"""Playback of a GB/T 28181 device's own recordings: ``s=Playback`` INVITE, INFO control, end.

A :class:`GbPlaybackSpec` names a channel and the range ``[start, end]`` (Unix seconds). The
media service starts a :class:`GbPlaybackSource` for it like a live source
(``GbService.open_source`` picks the class from the spec), under a switch input of its own (the
key ``<channel>~pb<n>``, so a playback never shares the live view's input): a UDP/TCP port of
``media_port_range``, an SSRC of the playback range (``1`` + domain digits + serial), ``INVITE``
with ``s=Playback``, ``u=<channel>:0`` and ``t=<start> <end>``, PS over RTP demuxed into the
switch exactly as live (``vmesh.gb28181.session``). Stopping it sends BYE and releases the SSRC.

Control goes in-dialog as ``INFO`` with a MANSRTSP body (``vmesh.gb28181.mansrtsp``):
:meth:`GbPlaybackSource.pause`, :meth:`~GbPlaybackSource.resume`, :meth:`~GbPlaybackSource.seek`
(seconds from the range's start, ``Range: npt=<s>-``) and :meth:`~GbPlaybackSource.speed`
(``Scale``). A device that refuses (a non-2xx answer, many NVRs do for Scale) raises
``Conflict`` with its status; nothing is changed on our side.

When the recording ends the device sends ``MESSAGE`` ``Notify CmdType=MediaStatus`` with
``NotifyType 121`` (in the dialog's Call-ID, or naming the channel): :func:`media_status` sends
BYE and ends the session (state ``stopped``, reason "end of recording"), releasing the SSRC.

Public: ``GbPlaybackSpec``, ``GbPlaybackSource``, ``media_status``, ``playback_key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmesh.errors import Conflict, InvalidInput
from vmesh.gb28181 import mansrtsp
from vmesh.gb28181.manscdp import UnknownMessage
from vmesh.gb28181.sdp import GbSdp
from vmesh.gb28181.session import GbLiveSource, GbSpec
from vmesh.ingest.status import Failure, FailureKind, IngestState

if TYPE_CHECKING:
    from vmesh.gb28181.service import GbService

log = logging.getLogger(__name__)

MAX_PLAYBACK_SECONDS = 24 * 3600
_keys = itertools.count(1)


def playback_key(channel: str) -> str:
    """A switch input key of its own for one playback of ``channel``."""
    return f"{channel}~pb{next(_keys)}"


@dataclass(frozen=True)
class GbPlaybackSpec(GbSpec):
    """A GB channel's recording between ``start`` and ``end`` (Unix seconds) as a media source."""

    start: int = 0
    end: int = 0

    @classmethod
    def for_range(
        cls, code: str, attrs: dict[str, Any], start: float, end: float
    ) -> GbPlaybackSpec:
        live = GbSpec.from_attrs(code, attrs)
        a, b = int(start), int(end)
        if a <= 0:
            raise InvalidInput.one("start", "must be Unix seconds", start)
        if b <= a:
            raise InvalidInput.one("end", "must be after start", end)
        if b - a > MAX_PLAYBACK_SECONDS:
            raise InvalidInput.one("end", "a playback is at most 24 hours", end)
        return cls(live.device, live.channel, live.media, a, b)


class GbPlaybackSource(GbLiveSource):
    """One ``s=Playback`` session (see the module docstring)."""

    PLAYBACK = True
    spec: GbPlaybackSpec

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.rtsp_cseq = 0
        self.paused = False
        self.scale = 1.0
        self.position: float | None = None  # the last seek, seconds from the range's start
        self.ended_by_device = False

    def _offer(self) -> GbSdp:
        sdp = super()._offer()
        sdp.session_name = "Playback"
        sdp.uri = f"{self.spec.channel}:0"
        sdp.start, sdp.stop = self.spec.start, self.spec.end
        return sdp

    # -- control

    async def pause(self) -> None:
        await self._control(mansrtsp.pause(self._next_cseq()))
        self.paused = True

    async def resume(self) -> None:
        await self._control(mansrtsp.resume(self._next_cseq()))
        self.paused = False

    async def seek(self, seconds: float) -> None:
        """Play from ``seconds`` after the range's start."""
        if not 0 <= seconds <= self.spec.end - self.spec.start:
            raise InvalidInput.one(
                "at", f"must be within the playback (0 to {self.spec.end - self.spec.start} s)"
            )
        await self._control(mansrtsp.seek(self._next_cseq(), seconds))
        self.position, self.paused = seconds, False

    async def speed(self, value: float) -> None:
        await self._control(mansrtsp.scale(self._next_cseq(), value))
        self.scale = value

    def _next_cseq(self) -> int:
        self.rtsp_cseq += 1
        return self.rtsp_cseq

    async def _control(self, req: mansrtsp.MansrtspRequest) -> None:
        svc = self.service
        dev = svc.devices.get(self.spec.device)
        if self._ended or self.to_tag is None:
            raise Conflict("the playback is not established (or has ended)")
        if dev is None or not dev.online:
            raise Conflict(f"device {self.spec.device} is offline")
        self.cseq += 1
        info = self._in_dialog("INFO", dev, mansrtsp.encode(req), mansrtsp.CONTENT_TYPE)
        try:
            async with asyncio.timeout(10.0):
                resp = await svc.endpoint_request(info, dev.addr)
        except TimeoutError:
            raise Conflict(f"device {self.spec.device} did not answer the INFO") from None
        if resp.status >= 300:
            raise Conflict(
                f"device refused {req.method} ({'scale' if req.scale else 'range'}): "
                f"{resp.status} {resp.reason}"
            )
        log.info("gb playback %s channel=%s cseq=%s", req.method, self.spec.channel, req.cseq)

    # -- end of the recording

    async def end_of_recording(self) -> None:
        """MediaStatus 121: BYE, then end (stopped, the SSRC released)."""
        if self._ended:
            return
        self.ended_by_device = True
        if self.to_tag is not None:
            with contextlib.suppress(Exception):
                await self._bye()
        self.end(IngestState.STOPPED, Failure(FailureKind.NO_SIGNAL, "end of recording"))


def media_status(svc: GbService, call_id: str, msg: UnknownMessage) -> bool:
    """A ``Notify CmdType=MediaStatus`` MESSAGE: NotifyType 121 ends the playback it belongs to
    (by the dialog's Call-ID, else the only playback of the channel it names). True if one did."""
    if msg.fields.get("NotifyType", "").strip() != "121":
        log.info("gb MediaStatus %r ignored", msg.fields.get("NotifyType"))
        return False
    s = svc.sessions.get(call_id)
    if not isinstance(s, GbPlaybackSource):
        ours = [
            x
            for x in svc.sessions.values()
            if isinstance(x, GbPlaybackSource) and x.spec.channel == msg.device_id
        ]
        s = ours[0] if len(ours) == 1 else None
    if s is None:
        log.info("gb MediaStatus 121 for no playback channel=%s", msg.device_id)
        return False
    log.info("gb playback ended by the device channel=%s", s.spec.channel)
    t = asyncio.ensure_future(s.end_of_recording())
    svc._tasks.add(t)
    t.add_done_callback(svc._tasks.discard)
    return True
