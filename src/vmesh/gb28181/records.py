"""A GB/T 28181 device's own recordings: the ``RecordInfo`` query, its pages, and the timeline.

``RecordQueries`` (``GbService.records``) sends ``Query CmdType=RecordInfo`` (``StartTime``,
``EndTime``, ``Secrecy``, ``Type``) for one channel to the channel's device and collects the
``Response`` pages by (DeviceID, SN) until ``SumNum`` items arrived. Devices send 1–N items per
MESSAGE, in any order, sometimes twice (UDP retransmission): an item is keyed by its start, end
and file path, so a repeat never counts twice. When no page came for ``catalog_timeout_seconds``
the query ends with what arrived and says so (``complete = False`` and the shortfall).

Times on the wire are the device's local time without a zone (``2024-01-01T08:00:00``); they are
read and written as the node's local time. :func:`timeline_of` turns the items into the shape of
the recordings timeline (``vmesh.recording.timeline``: spans, gaps, recorded seconds per hour),
so the console draws a device's recordings with the same strips as the node's own.

Public: ``RecordQueries``, ``RecordResult``, ``wire_time``, ``parse_wire_time``,
``timeline_of``, ``RECORD_TYPES``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vmesh.errors import Conflict, InvalidInput, NotFound
from vmesh.gb28181.manscdp import RecordInfoQuery, RecordInfoResponse, RecordItem
from vmesh.node.wakeup import woken
from vmesh.recording import timeline

if TYPE_CHECKING:
    from vmesh.gb28181.service import GbService

log = logging.getLogger(__name__)

RECORD_TYPES = ("all", "time", "alarm", "manual")
MAX_RANGE_SECONDS = 31 * 86400


def wire_time(t: float) -> str:
    """Unix seconds → ``YYYY-MM-DDTHH:MM:SS`` in the node's local time (what devices expect)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))


def parse_wire_time(value: str | None) -> float | None:
    """A device's ``StartTime``/``EndTime`` (local, ``T`` or space) → Unix seconds; None if bad."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace(" ", "T")).timestamp()
    except ValueError:
        return None


@dataclass
class RecordResult:
    """A finished RecordInfo query: every item (``complete``) or what came before the timeout."""

    channel: str
    sn: int
    sum_num: int | None
    items: list[RecordItem]
    complete: bool
    pages: int
    error: str | None = None


@dataclass
class _Pending:
    page: asyncio.Event = field(default_factory=asyncio.Event)
    sum_num: int | None = None
    pages: int = 0
    items: dict[tuple[str, str, str], RecordItem] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.sum_num is not None and len(self.items) >= self.sum_num


class RecordQueries:
    """RecordInfo queries of one ``GbService`` (see the module docstring)."""

    def __init__(self, service: GbService) -> None:
        self.service = service
        self._pending: dict[tuple[str, int], _Pending] = {}

    def add(self, page: RecordInfoResponse) -> bool:
        """One response page (from ``GbService``'s MESSAGE handler); False if nobody asked."""
        p = self._pending.get((page.device_id, page.sn))
        if p is None:
            log.info(
                "gb RecordInfo page nobody asked for channel=%s sn=%s", page.device_id, page.sn
            )
            return False
        p.pages += 1
        p.sum_num = page.sum_num if p.sum_num is None else max(p.sum_num, page.sum_num)
        for it in page.items:
            p.items[(it.start_time or "", it.end_time or "", it.file_path or "")] = it
        p.page.set()
        return True

    async def query(
        self, channel: str, start: float, end: float, record_type: str = "all"
    ) -> RecordResult:
        """Ask the device of ``channel`` for its recordings of ``[start, end]``."""
        if record_type not in RECORD_TYPES:
            raise InvalidInput.one("type", f"must be one of {', '.join(RECORD_TYPES)}", record_type)
        if end <= start:
            raise InvalidInput.one("end", "must be after start", end)
        if end - start > MAX_RANGE_SECONDS:
            raise InvalidInput.one("end", "a range is at most 31 days", end - start)
        svc = self.service
        entry = await svc.directory.lookup(channel)
        if entry is None:
            raise NotFound(f"no directory entry with code {channel}")
        device_code = entry["attrs"].get("gb_device")
        if not device_code or entry["attrs"].get("source") != "gb28181":
            raise InvalidInput.one("code", "is not a GB/T 28181 channel", channel)
        dev = svc.devices.get(device_code)
        if dev is None or not dev.online:
            raise Conflict(f"device {device_code} is offline")
        gb_channel = entry["attrs"].get("gb_channel") or channel
        sn = svc.next_sn()
        key = (gb_channel, sn)
        p = self._pending[key] = _Pending()
        idle = svc.config.catalog_timeout_seconds
        try:
            q = RecordInfoQuery(gb_channel, sn, wire_time(start), wire_time(end), type=record_type)
            await svc._send_message(dev, q)
            while not p.done:
                p.page.clear()
                if not await woken(p.page, idle):
                    break
        finally:
            self._pending.pop(key, None)
        items = sorted(p.items.values(), key=lambda i: parse_wire_time(i.start_time) or 0.0)
        error = None
        if not p.done:
            want = "?" if p.sum_num is None else str(p.sum_num)
            error = f"RecordInfo timed out after {idle:g} s with {len(items)} of {want} items"
            log.info("gb records channel=%s: %s", channel, error)
        return RecordResult(gb_channel, sn, p.sum_num, items, p.done, p.pages, error)


def timeline_of(result: RecordResult, start: float, end: float) -> dict[str, Any]:
    """The items as the recordings timeline (spans, gaps, hours) plus the items themselves."""
    pairs: list[tuple[float, float]] = []
    items: list[dict[str, Any]] = []
    for it in result.items:
        a, b = parse_wire_time(it.start_time), parse_wire_time(it.end_time)
        items.append(
            {
                "start": a,
                "end": b,
                "name": it.name,
                "file_path": it.file_path,
                "type": it.type,
                "file_size": it.file_size,
            }
        )
        if a is not None and b is not None and b > a:
            pairs.append((a, b))
    return {
        "camera_code": result.channel,
        **timeline.body(timeline.spans(pairs), start, end),
        "items": items,
        "sum_num": result.sum_num,
        "pages": result.pages,
        "complete": result.complete,
        "error": result.error,
    }
