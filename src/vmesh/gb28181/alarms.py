"""GB/T 28181 alarms: a device's ``Notify CmdType=Alarm`` checked, stored once, audited, counted
and handed to the node's listeners (alarm recording, alarm → incident).

- ``alarm_from_notify`` (pure) turns a decoded :class:`~vmesh.gb28181.manscdp.AlarmNotify` into an
  :class:`Alarm`, or raises ``ManscdpError`` naming the element that is wrong: ``AlarmPriority``
  (1–4, 1 = highest), ``AlarmMethod`` (1–7: telephone, device, SMS, GPS, video, device fault,
  other), ``AlarmTime`` (``YYYY-MM-DDTHH:MM:SS``), ``DeviceID`` (a 20-digit code),
  ``AlarmDescription`` (at most ``MAX_DESCRIPTION`` characters). Longitude/Latitude 0/0 (what
  devices without GPS send) count as no position.
- ``AlarmDesk`` (one per ``GbService``) stores an alarm as a row of ``gb_alarms`` (migration
  0012) with its audit row ``gb28181.alarm`` in one transaction. A device that repeats an alarm
  (a new transaction with the same channel, SN and AlarmTime: it did not get our answer) is
  answered again but stored, audited and published once: the key is unique in the table.
  ``vmesh_gb28181_alarms_total{result=new|duplicate|invalid}`` counts them on ``/metrics``.
- Listeners (``AlarmDesk.listeners``, the node's in-process event hooks like the grants'
  ``on_end``) are called with each new :class:`AlarmEvent`; coroutines run as tasks; a failing
  listener is logged and does not stop the others. ``wire_alarms(ctx)`` connects the node's
  recording (alarm plans: ``RecordingService.on_alarm``) and command (``vmesh.command.alarms``)
  to them; what they did is written back on the row (``link_recording``, ``link_incident``) so
  the alarm list links to the recording and the incident.

Public: ``Alarm``, ``AlarmEvent``, ``AlarmRow``, ``AlarmDesk``, ``alarm_from_notify``,
``wire_alarms``, ``METHODS``, ``MAX_DESCRIPTION``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from vmesh.audit.log import Actor, AuditLog
from vmesh.gb28181.manscdp import AlarmNotify, ManscdpError
from vmesh.gb28181.message import ascii_digits
from vmesh.storage.db import Base, Database

if TYPE_CHECKING:
    from vmesh.node.context import NodeContext

log = logging.getLogger(__name__)

METHODS = {
    1: "telephone",
    2: "device",
    3: "sms",
    4: "gps",
    5: "video",
    6: "device_fault",
    7: "other",
}
MAX_DESCRIPTION = 500


@dataclass(frozen=True)
class Alarm:
    """A checked alarm as the device sent it (``channel``: its DeviceID; ``device``: the sender)."""

    device: str
    channel: str
    sn: int
    priority: int
    method: int
    alarm_type: str
    alarm_time: str  # as sent, the device's local time (ISO, seconds)
    description: str
    lon: float | None
    lat: float | None


@dataclass(frozen=True)
class AlarmEvent:
    """A new alarm stored at this node: what listeners get."""

    id: int
    alarm: Alarm
    received_at: float  # UNIX seconds at this node

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self.alarm), "received_at": self.received_at}


def _int_in(msg_value: str | None, tag: str, lo: int, hi: int, meaning: str) -> int:
    if msg_value is None:
        raise ManscdpError(tag, "is missing")
    try:
        v = int(msg_value)
    except ValueError:
        raise ManscdpError(
            tag, f"must be a whole number {lo} to {hi} ({meaning})", msg_value
        ) from None
    if not lo <= v <= hi:
        raise ManscdpError(tag, f"must be {lo} to {hi} ({meaning})", msg_value)
    return v


def alarm_from_notify(msg: AlarmNotify, sender: str) -> Alarm:
    """The checked alarm of ``msg`` sent by device ``sender``; ``ManscdpError`` names what is
    wrong."""
    if not (len(msg.device_id) == 20 and ascii_digits(msg.device_id)):
        raise ManscdpError("DeviceID", "must be the channel's 20-digit code", msg.device_id)
    priority = _int_in(msg.priority, "AlarmPriority", 1, 4, "1 = highest")
    methods = ", ".join(f"{k} {v}" for k, v in METHODS.items())
    method = _int_in(msg.method, "AlarmMethod", 1, 7, methods)
    if msg.time is None:
        raise ManscdpError("AlarmTime", "is missing")
    try:
        at = datetime.fromisoformat(msg.time.replace(" ", "T"))
    except ValueError:
        raise ManscdpError("AlarmTime", "must be YYYY-MM-DDTHH:MM:SS", msg.time) from None
    alarm_type = (msg.alarm_type or "").strip()
    if alarm_type and not (ascii_digits(alarm_type) and len(alarm_type) <= 4):
        raise ManscdpError("Info.AlarmType", "must be a number of at most 4 digits", alarm_type)
    desc = (msg.description or "").strip()
    if len(desc) > MAX_DESCRIPTION:
        raise ManscdpError("AlarmDescription", f"at most {MAX_DESCRIPTION} characters", desc[:50])
    lon, lat = msg.longitude, msg.latitude
    if lon is None or lat is None or (lon == 0 and lat == 0):
        lon = lat = None
    return Alarm(
        device=sender or msg.device_id,
        channel=msg.device_id,
        sn=msg.sn,
        priority=priority,
        method=method,
        alarm_type=alarm_type,
        alarm_time=at.isoformat(timespec="seconds"),
        description=desc,
        lon=lon,
        lat=lat,
    )


class AlarmRow(Base):
    """One alarm received from a GB/T 28181 device (migration 0012)."""

    __tablename__ = "gb_alarms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_code: Mapped[str] = mapped_column(String(20))
    channel_code: Mapped[str] = mapped_column(String(20))
    sn: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer)
    method: Mapped[int] = mapped_column(Integer)
    alarm_type: Mapped[str] = mapped_column(String(8), default="")
    alarm_time: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    received_at: Mapped[float] = mapped_column(Float)
    # The span of the camera's recording this alarm asked for (alarm plans), UNIX seconds.
    record_from: Mapped[float | None] = mapped_column(Float, nullable=True)
    record_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    incident_id: Mapped[str | None] = mapped_column(String(32), nullable=True)

    __table_args__ = (
        UniqueConstraint(
            "device_code", "channel_code", "sn", "alarm_time", name="uq_gb_alarms_key"
        ),
        Index("ix_gb_alarms_received", "received_at"),
        Index("ix_gb_alarms_channel_received", "channel_code", "received_at"),
    )


Listener = Callable[[AlarmEvent], Any]


class AlarmDesk:
    """See the module docstring."""

    def __init__(
        self, db: Database, audit: AuditLog, metrics: CollectorRegistry | None = None
    ) -> None:
        self.db = db
        self.audit = audit
        self.listeners: list[Listener] = []
        self.counts = {"new": 0, "duplicate": 0, "invalid": 0}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._metrics = metrics
        self._collector = _AlarmCollector(self)
        if metrics is not None:
            metrics.register(self._collector)

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._metrics is not None:
            with contextlib.suppress(KeyError):
                self._metrics.unregister(self._collector)

    def invalid(self, source: tuple[str, int], err: ManscdpError) -> None:
        self.counts["invalid"] += 1
        log.warning("gb alarm refused from=%s:%s: %s", source[0], source[1], err)

    async def receive(self, alarm: Alarm, addr: str) -> tuple[AlarmEvent, bool]:
        """Store ``alarm`` (with its audit row) unless it is a repeat; (event, new?). New alarms
        go to the listeners."""
        async with self._lock:
            found = await self._find(alarm)
            if found is not None:
                self.counts["duplicate"] += 1
                log.info(
                    "gb alarm repeated id=%s channel=%s sn=%s", found.id, alarm.channel, alarm.sn
                )
                return found, False
            now = time.time()
            row = AlarmRow(
                device_code=alarm.device, channel_code=alarm.channel, sn=alarm.sn,
                priority=alarm.priority, method=alarm.method, alarm_type=alarm.alarm_type,
                alarm_time=alarm.alarm_time, description=alarm.description, lon=alarm.lon,
                lat=alarm.lat, received_at=now,
            )  # fmt: skip
            who = Actor(f"gb:{alarm.device}", "device", addr)
            try:
                async with self.audit.transaction() as s:
                    s.add(row)
                    await s.flush()
                    detail = {"id": row.id, **asdict(alarm)}
                    self.audit.record(s, who, "gb28181.alarm", alarm.channel, "ok", detail)
            except IntegrityError:  # stored meanwhile by another node process on the same db
                found = await self._find(alarm)
                if found is None:
                    raise
                self.counts["duplicate"] += 1
                return found, False
            event = AlarmEvent(row.id, alarm, now)
        self.counts["new"] += 1
        log.info(
            "gb alarm id=%s device=%s channel=%s priority=%s method=%s type=%s",
            event.id, alarm.device, alarm.channel, alarm.priority, alarm.method, alarm.alarm_type,
        )  # fmt: skip
        self.publish(event)
        return event, True

    async def _find(self, alarm: Alarm) -> AlarmEvent | None:
        async with self.db.sessions() as s:
            row = await s.scalar(
                select(AlarmRow).where(
                    AlarmRow.device_code == alarm.device,
                    AlarmRow.channel_code == alarm.channel,
                    AlarmRow.sn == alarm.sn,
                    AlarmRow.alarm_time == alarm.alarm_time,
                )
            )
        return None if row is None else AlarmEvent(row.id, alarm, row.received_at)

    def publish(self, event: AlarmEvent) -> None:
        for fn in self.listeners:
            try:
                out = fn(event)
            except Exception:
                log.exception("gb alarm listener %r failed alarm=%s", fn, event.id)
                continue
            if inspect.isawaitable(out):
                t = asyncio.ensure_future(self._guard(fn, out, event))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)

    async def _guard(self, fn: Listener, aw: Any, event: AlarmEvent) -> None:
        try:
            await aw
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("gb alarm listener %r failed alarm=%s", fn, event.id)

    async def idle(self) -> None:
        """Wait until the listeners started so far are done (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def link_recording(self, alarm_id: int, start: float, until: float) -> None:
        async with self.db.transaction() as s:
            await s.execute(
                update(AlarmRow)
                .where(AlarmRow.id == alarm_id)
                .values(record_from=start, record_until=until)
            )

    async def link_incident(self, alarm_id: int, incident_id: str) -> None:
        async with self.db.transaction() as s:
            await s.execute(
                update(AlarmRow).where(AlarmRow.id == alarm_id).values(incident_id=incident_id)
            )


class _AlarmCollector(Collector):
    def __init__(self, desk: AlarmDesk) -> None:
        self.desk = desk

    def collect(self) -> Iterator[Metric]:
        c = CounterMetricFamily(
            "vmesh_gb28181_alarms", "GB/T 28181 alarms received", labels=["result"]
        )
        for result, n in self.desk.counts.items():
            c.add_metric([result], n)
        yield c


def wire_alarms(ctx: NodeContext) -> None:
    """Connect the node's alarm listeners: alarm recording plans and alarm → incident."""
    gb = ctx.gb28181
    if gb is None:
        return
    desk = gb.alarms
    recording = ctx.recording
    if recording is not None:

        async def record(event: AlarmEvent) -> None:
            window = await recording.on_alarm(event.alarm.channel, event.received_at)
            if window is not None:
                await desk.link_recording(event.id, *window)

        desk.listeners.append(record)
    from vmesh.command.alarms import AlarmIncidents

    desk.listeners.append(AlarmIncidents(ctx, desk))
