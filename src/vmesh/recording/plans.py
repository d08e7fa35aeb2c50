"""Recording plans (pure): what a camera records and when, parsed from API input with errors
that name the field.

A plan is ``mode`` = ``always`` | ``schedule`` | ``alarm`` | ``off``, a weekly ``schedule`` (a list
of windows ``{"days": [0..6], "start": "HH:MM", "end": "HH:MM"}``, Monday = 0, local time of the
node, ``end`` may be ``24:00``; a window whose end is before its start runs over midnight) and
``retention_days`` (1–3650). An ``alarm`` plan records only after a GB/T 28181 alarm on the camera,
for ``post_alarm_seconds`` (1–3600, default ``DEFAULT_POST_ALARM_SECONDS``) after it, a further
alarm extending the window (``alarm_window``); the recording starts from the switch's GOP cache,
so it holds the seconds before the alarm when the camera was live (``vmesh.recording.service``).

Public: ``Plan``, ``Window``, ``MODES``, ``DEFAULT_POST_ALARM_SECONDS``, ``parse_plan``,
``plan_from_row``, ``alarm_window``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from vmesh.errors import ErrorList, FieldError, InvalidInput

MODES = ("always", "schedule", "alarm", "off")
DEFAULT_POST_ALARM_SECONDS = 30
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


@dataclass(frozen=True)
class Window:
    days: tuple[int, ...]
    start: str
    end: str

    @staticmethod
    def _minutes(hhmm: str) -> int:
        h, m = hhmm.split(":")
        return int(h) * 60 + int(m)

    def covers(self, at: datetime) -> bool:
        minute = at.hour * 60 + at.minute
        s, e = self._minutes(self.start), self._minutes(self.end)
        day = at.weekday()
        if s <= e:
            return day in self.days and s <= minute < e
        # over midnight: the evening part on the listed day, the morning part on the next day
        return (day in self.days and minute >= s) or ((day - 1) % 7 in self.days and minute < e)


@dataclass(frozen=True)
class Plan:
    camera_code: str
    mode: str
    retention_days: int
    schedule: tuple[Window, ...] = field(default_factory=tuple)
    post_alarm_seconds: int = DEFAULT_POST_ALARM_SECONDS

    def records_at(self, at: datetime) -> bool:
        """Whether the camera should be recording at local time ``at``."""
        if self.mode == "always":
            return True
        if self.mode == "schedule":
            return any(w.covers(at) for w in self.schedule)
        return False  # off; alarm: only in an alarm's window (alarm_window)

    def schedule_json(self) -> list[dict[str, Any]]:
        return [{**asdict(w), "days": list(w.days)} for w in self.schedule]

    def as_dict(self) -> dict[str, Any]:
        return {
            "camera_code": self.camera_code,
            "mode": self.mode,
            "retention_days": self.retention_days,
            "schedule": self.schedule_json(),
            "post_alarm_seconds": self.post_alarm_seconds,
        }


def parse_plan(code: str, body: Mapping[str, Any], default_days: int) -> Plan:
    """A plan from an API body, or ``InvalidInput`` listing every wrong field."""
    errs = ErrorList()
    mode = body.get("mode")
    if mode not in MODES:
        errs.add(FieldError("mode", f"must be one of {', '.join(MODES)}", mode))
    days = body.get("retention_days", default_days)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        errs.add(FieldError("retention_days", "must be a whole number of days, 1 to 3650", days))
    raw = body.get("schedule", [])
    windows: list[Window] = []
    if not isinstance(raw, list):
        errs.add(FieldError("schedule", "must be a list of windows", raw))
        raw = []
    for i, w in enumerate(raw):
        where = f"schedule[{i}]"
        if not isinstance(w, Mapping):
            errs.add(FieldError(where, "must be an object with days, start and end", w))
            continue
        wdays = w.get("days")
        if (
            not isinstance(wdays, list)
            or not wdays
            or not all(
                isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in wdays
            )
        ):
            errs.add(
                FieldError(f"{where}.days", "must be a non-empty list of 0 (Monday) to 6", wdays)
            )
            continue
        start, end = w.get("start"), w.get("end")
        bad = False
        for name, v in (("start", start), ("end", end)):
            if not isinstance(v, str) or not _HHMM.match(v) or (name == "start" and v == "24:00"):
                errs.add(FieldError(f"{where}.{name}", "must be HH:MM (00:00 to 24:00)", v))
                bad = True
        if not bad and start == end:
            errs.add(FieldError(f"{where}.end", "must differ from start", end))
            bad = True
        if not bad:
            windows.append(Window(tuple(sorted(set(wdays))), str(start), str(end)))
    post = body.get("post_alarm_seconds", DEFAULT_POST_ALARM_SECONDS)
    if post is None:
        post = DEFAULT_POST_ALARM_SECONDS
    if isinstance(post, bool) or not isinstance(post, int) or not 1 <= post <= 3600:
        why = "must be a whole number of seconds, 1 to 3600"
        errs.add(FieldError("post_alarm_seconds", why, post))
    if mode == "schedule" and not raw:
        errs.add(FieldError("schedule", "a schedule plan needs at least one window", raw))
    errs.raise_if_any(f"the recording plan of camera {code} is not valid")
    assert isinstance(mode, str) and isinstance(days, int) and isinstance(post, int)
    return Plan(code, mode, days, tuple(windows), post)


def plan_from_row(
    code: str, mode: str, schedule_json: list[Any], days: int, post_alarm: int | None = None
) -> Plan:
    """A stored plan (already valid) back as a ``Plan``."""
    body = {"mode": mode, "retention_days": days, "schedule": schedule_json}
    try:
        return parse_plan(code, {**body, "post_alarm_seconds": post_alarm}, days)
    except InvalidInput:
        return Plan(code, "off", days)


def alarm_window(plan: Plan | None, at: float, until: float | None) -> float | None:
    """Until when an alarm at ``at`` (UNIX seconds) makes a camera with ``plan`` record, given
    the end of its current alarm window (``until``, None: none): ``at`` + the plan's
    post-alarm seconds, never shortening a window; None when the plan is not an alarm plan."""
    if plan is None or plan.mode != "alarm":
        return None
    return max(until or 0.0, at + plan.post_alarm_seconds)
