"""Conferences in the database: create (validated, audited, in one transaction), read, list,
status changes, the saved floor state and attendance rows.

Venues are directory endpoints of kind ``conference_terminal`` or ``service_room`` (``VENUE_KINDS``)
in the creating user's scope; chairs are users with role ``chair`` or ``admin``. Every refusal
names the field and the value (``InvalidInput``), and nothing is written when one is refused.

Public: ``ConferenceStore``, ``ConferenceSpec``, ``Conference``, ``VenueInfo``, ``VENUE_KINDS``,
``CHAIR_ROLES``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from vmesh.audit.log import AuditLog
from vmesh.auth.models import User
from vmesh.auth.principal import Principal
from vmesh.conference.models import Attendance, ConferenceChair, ConferenceRow, ConferenceVenue
from vmesh.directory.models import Entry
from vmesh.errors import Conflict, ErrorList, FieldError, NotFound
from vmesh.federation.models import CatalogueEntry
from vmesh.media.remote import covers_remote
from vmesh.storage.db import Database

VENUE_KINDS = frozenset({"conference_terminal", "service_room"})
CHAIR_ROLES = ("chair", "admin")
MAX_VENUES = 500
_CODE = re.compile(r"^\d{20}$")


@dataclass(frozen=True)
class VenueInfo:
    code: str
    name: str
    kind: str
    path: str
    role: str  # main | sub
    node: str = ""  # the node the venue publishes at ("" or the host: this node)


@dataclass
class ConferenceSpec:
    title: str
    main: str
    venues: list[str]
    chairs: list[str]
    starts_at: datetime | None = None
    recording: bool = False
    layout: str = "1+1"


@dataclass
class Conference:
    id: int
    title: str
    host_node: str
    status: str
    main: str
    venues: list[VenueInfo]
    chairs: list[str]
    starts_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    recording: bool
    created_by: str
    state: dict[str, Any] = field(default_factory=dict)

    def venue(self, code: str) -> VenueInfo | None:
        return next((v for v in self.venues if v.code == code), None)

    def is_chair(self, p: Principal) -> bool:
        return p.username in self.chairs or p.has("admin")


def _roles(text: str) -> set[str]:
    return set(text.split())


class ConferenceStore:
    def __init__(self, db: Database, audit: AuditLog, node_code: str) -> None:
        self.db = db
        self.audit = audit
        self.node_code = node_code

    async def create(self, who: Principal, spec: ConferenceSpec) -> Conference:
        errors = ErrorList()
        title = spec.title.strip()
        if not title or len(title) > 200:
            errors.add(FieldError("title", "must be 1-200 characters", spec.title[:50]))
        codes = [spec.main, *spec.venues]
        for i, c in enumerate(codes):
            if not isinstance(c, str) or not _CODE.match(c):
                name = "main" if i == 0 else f"venues[{i - 1}]"
                errors.add(FieldError(name, "must be a 20-digit endpoint code", str(c)))
        if len(set(codes)) != len(codes):
            errors.add(FieldError("venues", "a venue is listed twice (or is the main venue too)"))
        if not spec.venues:
            errors.add(FieldError("venues", "a conference needs at least one sub-venue"))
        if len(spec.venues) > MAX_VENUES:
            errors.add(FieldError("venues", f"at most {MAX_VENUES} sub-venues", str(len(codes))))
        if not spec.chairs:
            errors.add(FieldError("chairs", "a conference needs at least one chair"))
        from vmesh.conference.core import LAYOUTS

        if spec.layout not in LAYOUTS:
            errors.add(FieldError("layout", f"must be one of {', '.join(LAYOUTS)}", spec.layout))
        errors.raise_if_any("the conference was not created")
        now = datetime.now(UTC)
        async with self.audit.transaction() as s:
            rows = (await s.execute(select(Entry).where(Entry.code.in_(codes)))).scalars().all()
            found: dict[str, Any] = {e.code: e for e in rows}
            remote = await _remote_venues(s, [c for c in codes if c not in found], self.node_code)
            for i, c in enumerate(codes):
                name = "main" if i == 0 else f"venues[{i - 1}]"
                e: Any = found.get(c) or remote.get(c)
                if c in remote and e is not None:
                    if not covers_remote(who, c):
                        errors.add(FieldError(name, "no such endpoint in your scope", c))
                    elif e.kind not in VENUE_KINDS:
                        errors.add(FieldError(name, f"{e.name} is a {e.kind}, not a venue", c))
                    continue
                if e is None or not who.covers(e.path):
                    errors.add(FieldError(name, "no such endpoint in your scope", c))
                elif e.kind not in VENUE_KINDS:
                    errors.add(
                        FieldError(
                            name,
                            f"{e.name} is a {e.kind}; a venue is a "
                            + " or ".join(sorted(VENUE_KINDS)),
                            c,
                        )
                    )
            users = (
                (await s.execute(select(User).where(User.username.in_(spec.chairs))))
                .scalars()
                .all()
            )
            by_name = {u.username: u for u in users}
            for i, u in enumerate(spec.chairs):
                row = by_name.get(u)
                if row is None or row.disabled:
                    errors.add(FieldError(f"chairs[{i}]", "no such user", u))
                elif not _roles(row.roles) & set(CHAIR_ROLES):
                    errors.add(
                        FieldError(f"chairs[{i}]", "must have role chair or admin to chair", u)
                    )
            errors.raise_if_any("the conference was not created")
            status = (
                "scheduled" if spec.starts_at is not None and spec.starts_at > now else "active"
            )
            row = ConferenceRow(
                title=title,
                host_node=self.node_code,
                main_code=spec.main,
                status=status,
                starts_at=spec.starts_at,
                started_at=now if status == "active" else None,
                recording=spec.recording,
                state=json.dumps({"layout": spec.layout}),
                created_by=who.username,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            await s.flush()
            for pos, c in enumerate(codes):
                s.add(
                    ConferenceVenue(
                        conference_id=row.id,
                        code=c,
                        role="main" if pos == 0 else "sub",
                        position=pos,
                    )
                )
            for u in dict.fromkeys(spec.chairs):
                s.add(ConferenceChair(conference_id=row.id, username=u))
            self.audit.record(
                s,
                who,
                "conference.create",
                spec.main,
                "ok",
                {"conference": row.id, "title": title, "venues": len(codes), "status": status},
            )
            conf_id = row.id
        return await self.get(conf_id)

    async def get(self, conf_id: int) -> Conference:
        async with self.db.sessions() as s:
            row = await s.get(ConferenceRow, conf_id)
            if row is None:
                raise NotFound(f"conference {conf_id} not found")
            venues = (
                await s.execute(
                    select(ConferenceVenue, Entry)
                    .join(Entry, Entry.code == ConferenceVenue.code, isouter=True)
                    .where(ConferenceVenue.conference_id == conf_id)
                    .order_by(ConferenceVenue.position)
                )
            ).all()
            missing = [v.code for v, e in venues if e is None]
            remote = await _remote_venues(s, missing, row.host_node) if missing else {}
            chairs = (
                (
                    await s.execute(
                        select(ConferenceChair.username)
                        .where(ConferenceChair.conference_id == conf_id)
                        .order_by(ConferenceChair.username)
                    )
                )
                .scalars()
                .all()
            )
        return Conference(
            id=row.id,
            title=row.title,
            host_node=row.host_node,
            status=row.status,
            main=row.main_code,
            venues=[
                VenueInfo(v.code, e.name, e.kind, e.path, v.role)
                if e is not None
                else _remote_info(v.code, v.role, remote.get(v.code))
                for v, e in venues
            ],
            chairs=list(chairs),
            starts_at=row.starts_at,
            started_at=row.started_at,
            ended_at=row.ended_at,
            recording=row.recording,
            created_by=row.created_by,
            state=json.loads(row.state or "{}"),
        )

    async def visible(self, who: Principal, conf_id: int) -> Conference:
        """The conference if ``who`` chairs it or covers one of its venues, else ``NotFound``."""
        c = await self.get(conf_id)
        if c.is_chair(who) or any(v.path and who.covers(v.path) for v in c.venues):
            return c
        raise NotFound(f"conference {conf_id} not found")

    async def list(
        self, who: Principal, status: str | None, offset: int, limit: int
    ) -> tuple[list[Conference], int]:
        """Conferences ``who`` chairs or has a venue in, newest first."""
        async with self.db.sessions() as s:
            mine = select(ConferenceChair.conference_id).where(
                ConferenceChair.username == who.username
            )
            in_scope = (
                select(ConferenceVenue.conference_id)
                .join(Entry, Entry.code == ConferenceVenue.code)
                .where(Entry.path.startswith(who.scope_path))
            )
            q = select(ConferenceRow.id)
            if not who.has("admin"):
                q = q.where(ConferenceRow.id.in_(mine.union(in_scope)))
            if status is not None:
                q = q.where(ConferenceRow.status == status)
            total = (await s.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
            ids = (
                (await s.execute(q.order_by(ConferenceRow.id.desc()).offset(offset).limit(limit)))
                .scalars()
                .all()
            )
        return [await self.get(i) for i in ids], int(total)

    async def set_status(self, who: Principal, conf_id: int, status: str) -> Conference:
        """``active`` (start a scheduled conference) or ``ended``; audited."""
        now = datetime.now(UTC)
        async with self.audit.transaction() as s:
            row = await s.get(ConferenceRow, conf_id)
            if row is None:
                raise NotFound(f"conference {conf_id} not found")
            if row.status == "ended":
                raise Conflict(f"conference {conf_id} has ended")
            if row.status == status:
                raise Conflict(f"conference {conf_id} is {status} already")
            row.status = status
            row.updated_at = now
            if status == "active":
                row.started_at = now
            else:
                row.ended_at = now
                await s.execute(
                    update(Attendance)
                    .where(Attendance.conference_id == conf_id, Attendance.left_at.is_(None))
                    .values(left_at=now, reason="the conference ended")
                )
            action = "conference.start" if status == "active" else "conference.end"
            self.audit.record(s, who, action, row.main_code, "ok", {"conference": conf_id})
        return await self.get(conf_id)

    async def save_state(self, conf_id: int, state: dict[str, Any]) -> None:
        async with self.db.transaction() as s:
            await s.execute(
                update(ConferenceRow)
                .where(ConferenceRow.id == conf_id)
                .values(state=json.dumps(state, ensure_ascii=False), updated_at=datetime.now(UTC))
            )

    async def joined(self, conf_id: int, venue: str, at: datetime) -> None:
        async with self.db.transaction() as s:
            s.add(Attendance(conference_id=conf_id, venue_code=venue, joined_at=at, reason=""))

    async def left(self, conf_id: int, venue: str, at: datetime, reason: str) -> None:
        async with self.db.transaction() as s:
            await s.execute(
                update(Attendance)
                .where(
                    Attendance.conference_id == conf_id,
                    Attendance.venue_code == venue,
                    Attendance.left_at.is_(None),
                )
                .values(left_at=at, reason=reason[:200])
            )

    async def attendance(self, conf_id: int) -> list[Attendance]:
        async with self.db.sessions() as s:
            return list(
                (
                    await s.execute(
                        select(Attendance)
                        .where(Attendance.conference_id == conf_id)
                        .order_by(Attendance.id)
                    )
                )
                .scalars()
                .all()
            )

    async def active_ids(self) -> list[int]:
        async with self.db.sessions() as s:
            return list(
                (await s.execute(select(ConferenceRow.id).where(ConferenceRow.status == "active")))
                .scalars()
                .all()
            )


async def _remote_venues(s: Any, codes: list[str], here: str) -> dict[str, CatalogueEntry]:
    """Venues of other nodes: live catalogue entries (``vmesh.federation``) not from ``here``."""
    if not codes:
        return {}
    rows = (
        (await s.execute(select(CatalogueEntry).where(CatalogueEntry.code.in_(codes))))
        .scalars()
        .all()
    )
    return {e.code: e for e in rows if not e.deleted and e.origin_node != here}


def _remote_info(code: str, role: str, e: CatalogueEntry | None) -> VenueInfo:
    if e is None:
        return VenueInfo(code, code, "", "", role)
    return VenueInfo(code, e.name, e.kind, "", role, e.origin_node)
