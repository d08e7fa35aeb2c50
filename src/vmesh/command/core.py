"""The incident and its log, with no I/O: what an action may do and what the log folds to.

An incident is the fold of its append-only log (``fold``): every entry is one action, stamped
with when, who, and at which node it was written. The first entry is ``open`` (type, title,
location, severity); the others change the state or only record what happened (a feed watched,
a unit joined, a conference convened). ``check`` validates one action against the current state
and returns the entry's detail, or raises ``InvalidInput``/``Conflict`` naming what was wrong, so
nothing is written for a refused action. Entries carry a globally unique id: a copy of the log
elsewhere (the parent's) applies each entry once by id, in any order, and folds the same state.
Only the hosting node commands the room; a node holding a copy (the old host after a hand-over,
the parent of a child's room) follows it and may still write ``note`` entries (reports), which
reach the host with the log.

Public: ``TYPES``, ``SEVERITIES``, ``STATUSES``, ``ACTIONS``, ``Entry``, ``Incident``, ``fold``,
``check``, ``new_id``, ``distance_km``.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vmesh.errors import Conflict, FieldError, InvalidInput

TYPES = ("flood", "fire", "earthquake", "accident", "public_health", "security", "other")
SEVERITIES = ("I", "II", "III", "IV")  # 特别重大 / 重大 / 较大 / 一般
STATUSES = ("open", "contained", "closed")
# Which status may follow which (an explicit table: anything else is refused).
STATUS_NEXT = {"open": {"contained", "closed"}, "contained": {"open", "closed"}, "closed": {"open"}}
# Actions and whether only the hosting node may write them.
ACTIONS = (
    "open",
    "note",
    "severity",
    "status",
    "feed_on",
    "feed_off",
    "push",
    "unit_join",
    "unit_leave",
    "position",
    "convene",
    "hand_over",
    "reopen",
)
MAX_TEXT = 2000


def new_id() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Entry:
    id: str
    incident: str
    at: datetime
    node: str
    actor: str
    action: str
    detail: dict[str, Any]


@dataclass
class Unit:
    code: str
    name: str
    joined_at: datetime
    left_at: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    track: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Incident:
    id: str
    type: str = ""
    title: str = ""
    severity: str = ""
    status: str = "open"
    lat: float = 0.0
    lon: float = 0.0
    origin: str = ""
    host: str = ""
    opened_by: str = ""
    opened_at: datetime | None = None
    feeds: dict[str, datetime] = field(default_factory=dict)  # camera code -> since
    units: dict[str, Unit] = field(default_factory=dict)
    conferences: list[int] = field(default_factory=list)
    entries: int = 0


def _order(e: Entry) -> tuple[datetime, str]:
    return (e.at, e.id)


def fold(incident_id: str, entries: list[Entry]) -> Incident:
    """The state after ``entries`` (any order: sorted by time, then id)."""
    inc = Incident(id=incident_id)
    for e in sorted(entries, key=_order):
        _apply(inc, e)
    return inc


def _apply(inc: Incident, e: Entry) -> None:
    d = e.detail
    inc.entries += 1
    if e.action == "open":
        inc.type, inc.title, inc.severity = d["type"], d["title"], d["severity"]
        inc.lat, inc.lon = float(d["lat"]), float(d["lon"])
        inc.origin = inc.host = e.node
        inc.opened_by, inc.opened_at = e.actor, e.at
    elif e.action == "severity":
        inc.severity = d["severity"]
    elif e.action == "status":
        inc.status = d["status"]
    elif e.action == "feed_on":
        inc.feeds.setdefault(d["code"], e.at)
    elif e.action == "feed_off":
        inc.feeds.pop(d["code"], None)
    elif e.action == "unit_join":
        u = inc.units.get(d["code"])
        if u is None:
            inc.units[d["code"]] = Unit(d["code"], d.get("name", d["code"]), e.at)
        else:
            u.left_at = None
    elif e.action == "unit_leave":
        if d["code"] in inc.units:
            inc.units[d["code"]].left_at = e.at
    elif e.action == "position":
        u = inc.units.setdefault(d["code"], Unit(d["code"], d["code"], e.at))
        u.lat, u.lon = float(d["lat"]), float(d["lon"])
        u.track.append((u.lat, u.lon))
    elif e.action == "convene":
        inc.conferences.append(int(d["conference"]))
    elif e.action in ("hand_over", "reopen"):
        inc.host = d["to"]


def _text(errors: list[FieldError], body: dict[str, Any], name: str, *, required: bool) -> str:
    v = body.get(name, "")
    if not isinstance(v, str):
        errors.append(FieldError(name, "must be text", str(v)[:50]))
        return ""
    v = v.strip()
    if required and not v:
        errors.append(FieldError(name, "is required"))
    elif len(v) > MAX_TEXT:
        errors.append(FieldError(name, f"at most {MAX_TEXT} characters", v[:50]))
    return str(v)


def _point(errors: list[FieldError], body: dict[str, Any]) -> tuple[float, float]:
    out = []
    for name, lim in (("lat", 90.0), ("lon", 180.0)):
        v = body.get(name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            errors.append(FieldError(name, "must be a number", None if v is None else str(v)))
            out.append(0.0)
        elif not -lim <= v <= lim:
            errors.append(FieldError(name, f"must be between -{lim:g} and {lim:g}", str(v)))
            out.append(0.0)
        else:
            out.append(float(v))
    return out[0], out[1]


def _code(errors: list[FieldError], body: dict[str, Any], name: str = "code") -> str:
    v = body.get(name)
    if not isinstance(v, str) or len(v) != 20 or not v.isdigit():
        errors.append(FieldError(name, "must be a 20-digit code", None if v is None else str(v)))
        return ""
    return v


def _choice(
    errors: list[FieldError], body: dict[str, Any], name: str, allowed: tuple[str, ...]
) -> str:
    v = body.get(name)
    if v not in allowed:
        errors.append(FieldError(name, "must be one of " + ", ".join(allowed), str(v)))
        return ""
    return str(v)


def check(inc: Incident | None, action: str, body: dict[str, Any], *, here: str) -> dict[str, Any]:
    """The detail of the entry ``action`` with ``body`` would write at node ``here``; raises
    when the action is malformed or not allowed in the incident's state."""
    errors: list[FieldError] = []
    if action not in ACTIONS:
        raise InvalidInput.one("action", "must be one of " + ", ".join(ACTIONS), action)
    if action == "open":
        if inc is not None:
            raise Conflict(f"incident {inc.id} is already open")
        d: dict[str, Any] = {
            "type": _choice(errors, body, "type", TYPES),
            "title": _text(errors, body, "title", required=True),
            "severity": _choice(errors, body, "severity", SEVERITIES),
        }
        d["lat"], d["lon"] = _point(errors, body)
        if errors:
            raise InvalidInput("the incident was not opened", errors=errors)
        return d
    if inc is None:
        raise Conflict("the incident has no open entry")
    if action == "reopen":
        if inc.host == here:
            raise Conflict(f"incident {inc.id} is already hosted here")
        return {"to": here, "from": inc.host, "reason": _reason(body)}
    if inc.host != here and action != "note":  # a node following the room still reports
        raise Conflict(f"incident {inc.id} is hosted at node {inc.host}; act there")
    if inc.status == "closed" and action not in ("status", "note"):
        raise Conflict(f"incident {inc.id} is closed; reopen it (status open) first")
    if action == "note":
        d = {"text": _text(errors, body, "text", required=True)}
    elif action == "severity":
        d = {"severity": _choice(errors, body, "severity", SEVERITIES)}
    elif action == "status":
        status = _choice(errors, body, "status", STATUSES)
        if status and status not in STATUS_NEXT[inc.status]:
            errors.append(FieldError("status", f"cannot go from {inc.status} to {status}", status))
        d = {"status": status}
    elif action in ("feed_on", "feed_off"):
        d = {"code": _code(errors, body), "name": _text(errors, body, "name", required=False)}
        if not errors and action == "feed_off" and d["code"] not in inc.feeds:
            errors.append(FieldError("code", "this feed is not on the room's wall", d["code"]))
    elif action == "push":
        d = {
            "code": _code(errors, body),
            "to_kind": _choice(errors, body, "to_kind", ("room", "user")),
            "to": _text(errors, body, "to", required=True),
        }
    elif action in ("unit_join", "unit_leave"):
        d = {"code": _code(errors, body), "name": _text(errors, body, "name", required=False)}
        if not errors and action == "unit_leave" and d["code"] not in inc.units:
            errors.append(FieldError("code", "this unit has not joined", d["code"]))
    elif action == "position":
        d = {"code": _code(errors, body)}
        d["lat"], d["lon"] = _point(errors, body)
    elif action == "convene":
        d = {
            "conference": body.get("conference"),
            "venues": list(body.get("venues") or []),
            "title": body.get("title", ""),
        }
    else:  # hand_over
        to = body.get("to")
        if not isinstance(to, str) or len(to) != 20 or not to.isdigit():
            errors.append(FieldError("to", "must be a node's 20-digit code", str(to)))
        elif to == here:
            errors.append(FieldError("to", "the room is already hosted here", to))
        d = {
            "to": to,
            "from": here,
            "direction": body.get("direction", ""),
            "reason": _reason(body),
        }
    if errors:
        why = "; ".join(str(fe) for fe in errors)
        raise InvalidInput(f"{action} was not recorded: {why}", errors=errors)
    return d


def _reason(body: dict[str, Any]) -> str:
    v = body.get("reason", "")
    return v.strip()[:MAX_TEXT] if isinstance(v, str) else ""


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))
