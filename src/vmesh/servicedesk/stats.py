"""Statistics of the service desk per item, department or serving centre: sessions, waiting
time p50/p90 (ticket to first accept), handling time p50/p90 (first accept to result issued),
abandonment rate (cases abandoned at least once ÷ cases that took a number), ratings (mean and
count per grade 1–5) and trips saved (results issued: each a trip to the centre not made).

Only cases of kiosks in the caller's scope count. ``percentile`` is the nearest-rank percentile
(pure, unit-tested). ``to_csv`` writes the rows with a header, UTF-8 with BOM (so spreadsheet
programs show the Chinese names).

Public: ``percentile``, ``compute``, ``to_csv``, ``COLUMNS``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from vmesh.auth.principal import Principal
from vmesh.servicedesk.models import Case, CaseEvent, Department, Item
from vmesh.storage.db import Database

COLUMNS = (
    "key",
    "name",
    "sessions",
    "waiting_p50_s",
    "waiting_p90_s",
    "handling_p50_s",
    "handling_p90_s",
    "abandoned",
    "abandonment_rate",
    "ratings",
    "rating_mean",
    "grade_1",
    "grade_2",
    "grade_3",
    "grade_4",
    "grade_5",
    "trips_saved",
)
CENTRE_NAMES = {"county": "县级行政服务中心", "township": "乡镇便民服务中心"}


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile ``p`` (0–100] of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _secs(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    a = a if a.tzinfo else a.replace(tzinfo=UTC)
    b = b if b.tzinfo else b.replace(tzinfo=UTC)
    return (b - a).total_seconds()


async def compute(db: Database, who: Principal, by: str) -> list[dict[str, Any]]:
    async with db.sessions() as s:
        items = {i.code: i for i in (await s.scalars(select(Item))).all()}
        deps = {d.code: d.name for d in (await s.scalars(select(Department))).all()}
        cases = (
            await s.scalars(
                select(Case).where(
                    Case.kiosk_path.startswith(who.scope_path), Case.served_by.is_(None)
                )
            )
        ).all()
        abandoned_ids = set(
            (
                await s.scalars(
                    select(CaseEvent.case_id).where(CaseEvent.event == "abandon").distinct()
                )
            ).all()
        )
    groups: dict[str, list[Case]] = {}
    names: dict[str, str] = {}
    for c in cases:
        item = items.get(c.item_code)
        if item is None:
            continue
        if by == "item":
            key, name = item.code, item.name
        elif by == "department":
            key, name = item.department_code, deps.get(item.department_code, item.department_code)
        else:
            key, name = item.centre_tier, CENTRE_NAMES.get(item.centre_tier, item.centre_tier)
        groups.setdefault(key, []).append(c)
        names[key] = name
    rows = []
    for key in sorted(groups):
        cs = [c for c in groups[key] if c.enqueued_at is not None]
        waits = [w for c in cs if (w := _secs(c.enqueued_at, c.first_accepted_at)) is not None]
        handles = [h for c in cs if (h := _secs(c.first_accepted_at, c.submitted_at)) is not None]
        grades = [c.rating for c in cs if c.rating]
        abandoned = sum(1 for c in cs if c.id in abandoned_ids)
        row: dict[str, Any] = {
            "key": key,
            "name": names[key],
            "sessions": len(cs),
            "waiting_p50_s": percentile(waits, 50),
            "waiting_p90_s": percentile(waits, 90),
            "handling_p50_s": percentile(handles, 50),
            "handling_p90_s": percentile(handles, 90),
            "abandoned": abandoned,
            "abandonment_rate": round(abandoned / len(cs), 3) if cs else None,
            "ratings": len(grades),
            "rating_mean": round(sum(grades) / len(grades), 2) if grades else None,
            **{f"grade_{g}": grades.count(g) for g in range(1, 6)},
            "trips_saved": sum(1 for c in cs if c.submitted_at is not None),
        }
        rows.append(row)
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    out.write("\ufeff")
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})
    return out.getvalue()
