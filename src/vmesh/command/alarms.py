"""GB/T 28181 alarms that open incidents: the command side of the node's alarm event.

``AlarmIncidents`` is a listener of ``vmesh.gb28181.alarms.AlarmDesk`` (connected by
``wire_alarms``). An alarm whose priority is in ``[command] alarm_priorities`` (and, when
``alarm_methods`` is not empty, whose AlarmMethod is in it) opens an incident at this node — the
node the device registered to, i.e. the camera's node — through the command service's public
calls (``open_from_alarm``, ``act``), so the log, audit rows and replication up are the usual ones:

- ``open``: type ``other`` for device-fault alarms (AlarmMethod 6), ``security`` for the others;
  title ``GB alarm: <camera name>`` + the description; severity from the priority (1 → I … 4 →
  IV); the point is the camera's location in the directory, else the alarm's own
  Longitude/Latitude (an alarm with neither opens nothing, logged);
- ``note``: the alarm (its id here, device, channel, priority, method, type, AlarmTime,
  description);
- ``feed_on``: the camera pulled onto the room's wall (when the channel is a camera of the
  directory).

Every entry's actor is ``alarm:gb28181:<device>``. The incident's id is written on the alarm's
row (``AlarmDesk.link_incident``), so the alarm list links to the room.

Public: ``AlarmIncidents``, ``SEVERITY``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from vmesh.audit.log import Actor
from vmesh.command.api import open_from_alarm, service_of
from vmesh.directory.models import Entry
from vmesh.gb28181.alarms import METHODS, AlarmDesk, AlarmEvent

if TYPE_CHECKING:
    from vmesh.node.context import NodeContext

log = logging.getLogger(__name__)

SEVERITY = {1: "I", 2: "II", 3: "III", 4: "IV"}
_FAULT = 6


class AlarmIncidents:
    """See the module docstring."""

    def __init__(self, ctx: NodeContext, desk: AlarmDesk) -> None:
        self.ctx = ctx
        self.desk = desk

    def wanted(self, event: AlarmEvent) -> bool:
        cfg = self.ctx.config.command
        a = event.alarm
        return a.priority in cfg.alarm_priorities and (
            not cfg.alarm_methods or a.method in cfg.alarm_methods
        )

    async def __call__(self, event: AlarmEvent) -> str | None:
        """Open the alarm's incident when configured; its id (None: not wanted, or no point)."""
        if not self.wanted(event):
            return None
        a = event.alarm
        async with self.ctx.db.sessions() as s:
            cam = await s.scalar(select(Entry).where(Entry.code == a.channel))
        name = cam.name if cam is not None else a.channel
        if cam is not None and cam.lat is not None and cam.lon is not None:
            lat, lon = float(cam.lat), float(cam.lon)
        elif a.lat is not None and a.lon is not None:
            lat, lon = a.lat, a.lon
        else:
            log.warning(
                "command alarm=%s camera=%s: no location (directory or alarm): no incident",
                event.id, a.channel,
            )  # fmt: skip
            return None
        source = f"gb28181:{a.device}"
        title = f"GB alarm: {name}" + (f" — {a.description}" if a.description else "")
        iid = await open_from_alarm(
            self.ctx,
            source=source,
            type="other" if a.method == _FAULT else "security",
            title=title[:200],
            severity=SEVERITY[a.priority],
            lat=lat,
            lon=lon,
        )
        who = Actor(f"alarm:{source}"[:64], "system")
        svc = service_of(self.ctx)
        method = METHODS.get(a.method, str(a.method))
        text = (
            f"GB/T 28181 alarm #{event.id}: device {a.device}, channel {a.channel} ({name}), "
            f"priority {a.priority}, method {a.method} ({method}), type {a.alarm_type or '-'}, "
            f"at {a.alarm_time}" + (f": {a.description}" if a.description else "")
        )
        await svc.act(who, iid, "note", {"text": text})
        if cam is not None and cam.kind == "camera":
            body: dict[str, Any] = {"code": a.channel, "name": name}
            await svc.act(who, iid, "feed_on", body)
        await self.desk.link_incident(event.id, iid)
        log.info("command alarm=%s opened incident=%s", event.id, iid)
        return iid
