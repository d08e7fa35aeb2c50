"""Camera health: classes (一类/二类/三类点) and the online rate (完好率) per org unit over time.

A camera's class is its directory attribute ``attrs.class`` (``"I"``, ``"II"`` or ``"III"``;
anything else counts as unclassed ``""``); its tags are the directory's own. ``sample_health``
counts, for every region and department of this node's directory, the cameras in its subtree and
how many are ``online`` (the presence the media service and GB/T 28181 write), in total (class
``"*"``) and per class, and stores one row per (org, class) in ``camera_health_samples``.
``online_rate`` reads them back for a time range; ``as_csv`` exports them.

Public: ``CLASSES``, ``camera_class``, ``count_health``, ``sample_health``, ``online_rate``,
``as_csv``.
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from vmesh.directory.models import Entry
from vmesh.media.remote import attrs_of
from vmesh.recording.models import HealthSample
from vmesh.storage.db import Database

CLASSES = ("I", "II", "III")
ORG_KINDS = ("region", "department")


def camera_class(attrs: dict[str, Any]) -> str:
    c = attrs.get("class")
    return c if c in CLASSES else ""


def count_health(
    orgs: Iterable[tuple[int, str, str]], cameras: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], tuple[int, int]]:
    """``orgs``: (id, code, kind); ``cameras``: (path, status, class). Returns
    ``{(org code, org kind, class or "*"): (total, online)}`` (pure)."""
    by_id = {i: (code, kind) for i, code, kind in orgs}
    total: Counter[tuple[str, str, str]] = Counter()
    online: Counter[tuple[str, str, str]] = Counter()
    for path, status, cls in cameras:
        for part in path.strip("/").split("/"):
            org = by_id.get(int(part)) if part.isdigit() else None
            if org is None:
                continue
            for c in ("*", cls) if cls else ("*",):
                key = (org[0], org[1], c)
                total[key] += 1
                if status == "online":
                    online[key] += 1
    return {k: (v, online[k]) for k, v in total.items()}


async def sample_health(db: Database, now: float | None = None) -> int:
    """Store one sample of every org unit's camera counts; returns the rows written."""
    now = time.time() if now is None else now
    async with db.sessions() as s:
        orgs = (
            await s.execute(
                select(Entry.id, Entry.code, Entry.kind).where(Entry.kind.in_(ORG_KINDS))
            )
        ).all()
        cams = (
            await s.execute(
                select(Entry.path, Entry.status, Entry.attrs).where(Entry.kind == "camera")
            )
        ).all()
    counts = count_health(
        [(i, c, k) for i, c, k in orgs],
        [(p, st, camera_class(attrs_of(a))) for p, st, a in cams],
    )
    async with db.transaction() as s:
        for (code, kind, cls), (total, on) in counts.items():
            s.add(HealthSample(sampled_at=now, org_code=code, org_kind=kind, camera_class=cls,
                               total=total, online=on))  # fmt: skip
    return len(counts)


async def online_rate(
    db: Database,
    *,
    org_kind: str | None,
    org_codes: list[str] | None,
    camera_class: str,
    start: float,
    end: float,
) -> list[dict[str, Any]]:
    """Samples in ``[start, end]`` as report rows (rate = online / total, 0 with no cameras)."""
    q = (
        select(HealthSample, Entry.name)
        .join(Entry, Entry.code == HealthSample.org_code, isouter=True)
        .where(
            HealthSample.sampled_at >= start,
            HealthSample.sampled_at <= end,
            HealthSample.camera_class == camera_class,
        )
        .order_by(HealthSample.org_code, HealthSample.sampled_at)
    )
    if org_kind:
        q = q.where(HealthSample.org_kind == org_kind)
    if org_codes is not None:
        q = q.where(HealthSample.org_code.in_(org_codes))
    async with db.sessions() as s:
        rows = (await s.execute(q)).all()
    return [
        {
            "org_code": h.org_code,
            "org_name": name or "",
            "org_kind": h.org_kind,
            "camera_class": h.camera_class,
            "sampled_at": datetime.fromtimestamp(h.sampled_at, UTC).isoformat(),
            "total": h.total,
            "online": h.online,
            "rate": round(h.online / h.total, 4) if h.total else 0.0,
        }
        for h, name in rows
    ]


def as_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    fields = ["org_code", "org_name", "org_kind", "camera_class", "sampled_at", "total", "online",
              "rate"]  # fmt: skip
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return "\ufeff" + buf.getvalue()  # BOM: Excel opens the Chinese names as UTF-8
