"""Grants in this node's database: the rows, their audit, their outbox, and camera facts.

Every change of a grant is one transaction with its audit row (``grant.apply``,
``grant.approve``, ``grant.reject``, ``grant.revoke``, ``grant.expire``, with the purpose) and,
where other nodes must learn it, its ``grant_outbox`` rows (``vmesh.grants.service`` delivers
them). Versions: the applicant writes version 1 (``applied``); only the owner node writes later
ones (decision 2, revocation 3); ``expired`` is stored by each node on its own clock without a new
version. ``receive`` applies another node's version only when it is newer (idempotent).

Deciding node: ``decider_node`` writes versions 2 and 3 — the owner, or an ancestor of it named by
the application or granting directly (``grant_direct``: one transaction storing version 2,
approved). ``receive`` refuses a decided version whose decider has no authority over the cameras
(``rules.decider_refusal``), audits ``grant.refuse`` ``denied`` with the reason and stores nothing.

``camera_facts`` reads a camera's facts (ancestors, tags) from this node's directory, else from
its catalogue (walking ``parent_code``).

Public: ``GrantStore``, ``to_wire``, ``selection_of``, ``period_of``, ``ACTOR``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from vmesh.audit.log import Actor, AuditLog
from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import Forbidden, InvalidInput, NotFound
from vmesh.federation.models import CatalogueEntry
from vmesh.grants.models import GrantOutbox, GrantRow
from vmesh.grants.rules import (
    Application,
    CameraFacts,
    Decision,
    Period,
    Selection,
    Status,
    decider_refusal,
    transition,
    valid_grant_id,
)
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

ACTOR = Actor("grants")
_TIMES = (
    "requested_from", "requested_until", "valid_from", "valid_until", "decided_at", "revoked_at",
    "created_at", "updated_at",
)  # fmt: skip
_FIELDS = (
    "id", "version", "status", "applicant_node", "grantee_kind", "grantee_code", "applicant_user",
    "owner_node", "decider_node", "decider_scope", "sel_org", "sel_tags", "sel_codes", "purpose",
    "decided_by", "decision_reason", "revoked_by", "revoke_reason", *_TIMES,
)  # fmt: skip


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def to_wire(g: GrantRow) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in _FIELDS:
        v = getattr(g, f)
        out[f] = _utc(v).isoformat() if f in _TIMES and v is not None else v  # type: ignore[union-attr]
    return out


def from_wire(d: dict[str, Any]) -> GrantRow:
    """A row from another node's wire dict; ``InvalidInput`` naming a missing or bad field."""
    try:
        valid_grant_id(d.get("id"))
        kw: dict[str, Any] = {}
        for f in _FIELDS:
            v = d.get(f)
            if f in _TIMES:
                kw[f] = None if v is None else _utc(datetime.fromisoformat(str(v)))
            else:
                kw[f] = v
        if not isinstance(kw["version"], int) or kw["status"] not in set(Status):
            raise ValueError("version or status")
        for f in ("sel_tags", "sel_codes", "decided_by", "decision_reason", "revoked_by"):
            kw[f] = kw[f] or ""
        kw["revoke_reason"] = kw["revoke_reason"] or ""
        kw["decider_node"] = kw["decider_node"] or kw["owner_node"]  # before 0011: the owner
        kw["decider_scope"] = kw["decider_scope"] or ""
    except (ValueError, TypeError) as e:
        raise InvalidInput.one("grant", f"not a grant record: {e}") from None
    return GrantRow(**kw)


def selection_of(g: GrantRow) -> Selection:
    return Selection(
        org=g.sel_org, tags=tuple(g.sel_tags.split()), codes=tuple(g.sel_codes.split())
    )


def period_of(g: GrantRow) -> Period:
    return Period(_utc(g.requested_from), _utc(g.requested_until))  # type: ignore[arg-type]


def audit_detail(g: GrantRow, **more: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "grant": g.id,
        "purpose": g.purpose,
        "grantee": g.grantee_code,
        "applicant_node": g.applicant_node,
        "owner_node": g.owner_node,
        "decider_node": g.decider_node,
        "cameras": selection_of(g).describe(),
    }
    d.update(more)
    return d


class GrantStore:
    def __init__(self, db: Database, audit: AuditLog, node_code: str) -> None:
        self.db = db
        self.audit = audit
        self.node = node_code

    # --- reads ----------------------------------------------------------------------------------

    async def get(self, grant_id: str) -> GrantRow:
        valid_grant_id(grant_id)
        async with self.db.sessions() as s:
            g = await s.get(GrantRow, grant_id)
        if g is None:
            raise NotFound(f"grant {grant_id} is not known at node {self.node}")
        return g

    async def find(self, grant_id: str) -> GrantRow | None:
        async with self.db.sessions() as s:
            return await s.get(GrantRow, grant_id)

    async def page(
        self, *, where: Sequence[Any] = (), offset: int = 0, limit: int = 50
    ) -> tuple[list[GrantRow], int]:
        from sqlalchemy import func

        async with self.db.sessions() as s:
            total = await s.scalar(select(func.count()).select_from(GrantRow).where(*where)) or 0
            rows = (
                await s.scalars(
                    select(GrantRow)
                    .where(*where)
                    .order_by(GrantRow.created_at.desc(), GrantRow.id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        return list(rows), total

    async def of_grantee(self, codes: Sequence[str]) -> list[GrantRow]:
        """Grants applied for from this node whose grantee is one of ``codes``."""
        async with self.db.sessions() as s:
            rows = await s.scalars(
                select(GrantRow).where(
                    GrantRow.applicant_node == self.node, GrantRow.grantee_code.in_(codes)
                )
            )
            return list(rows)

    async def unit_path(self, code: str) -> str | None:
        async with self.db.sessions() as s:
            return await s.scalar(select(Entry.path).where(Entry.code == code))

    async def camera_facts(self, code: str) -> CameraFacts | None:
        """``code``'s facts from this node's directory, else its catalogue; ``None``: unknown."""
        async with self.db.sessions() as s:
            e = (await s.execute(select(Entry).where(Entry.code == code))).scalar_one_or_none()
            if e is not None:
                ids = [int(x) for x in e.path.strip("/").split("/") if x][:-1]
                codes = dict(
                    (await s.execute(select(Entry.id, Entry.code).where(Entry.id.in_(ids)))).all()
                )
                ancestors = tuple(codes[i] for i in ids if i in codes)
                return CameraFacts(
                    e.code, e.name, e.kind, frozenset(e.tags.split()), ancestors, self.node
                )
            c = await s.get(CatalogueEntry, code)
            if c is None or c.deleted:
                return None
            chain: list[str] = []
            parent = c.parent_code
            while parent and parent not in chain and len(chain) < 32:
                chain.append(parent)
                parent = await s.scalar(
                    select(CatalogueEntry.parent_code).where(CatalogueEntry.code == parent)
                )
            return CameraFacts(
                c.code, c.name, c.kind, frozenset(c.tags.split()), tuple(reversed(chain)),
                c.origin_node,
            )  # fmt: skip

    async def owner_of(self, codes: Sequence[str]) -> dict[str, str]:
        """The node owning each of ``codes`` as this node knows it (directory, else catalogue)."""
        out: dict[str, str] = {}
        async with self.db.sessions() as s:
            own = await s.scalars(select(Entry.code).where(Entry.code.in_(codes)))
            out.update({c: self.node for c in own})
            rest = [c for c in codes if c not in out]
            if rest:
                rows = await s.execute(
                    select(CatalogueEntry.code, CatalogueEntry.origin_node).where(
                        CatalogueEntry.code.in_(rest), CatalogueEntry.deleted.is_(False)
                    )
                )
                out.update({c: n for c, n in rows.all()})
        return out

    # --- writes ---------------------------------------------------------------------------------

    def _outbox(self, s: AsyncSession, g: GrantRow, targets: Sequence[str]) -> None:
        now = datetime.now(UTC)
        for t in dict.fromkeys(targets):
            if t and t != self.node:
                s.add(GrantOutbox(grant_id=g.id, version=g.version, target_node=t, next_at=now))

    async def check_owned(self, sel: Selection, who: str) -> None:
        """At the owner: every root of ``sel`` is in this node's directory (and cameras are
        cameras); ``InvalidInput`` naming the code otherwise."""
        async with self.db.sessions() as s:
            q = select(Entry.code, Entry.kind).where(Entry.code.in_(sel.roots()))
            rows: dict[str, str] = {c: k for c, k in (await s.execute(q)).all()}
        field = "codes" if sel.codes else "org"
        for code in sel.roots():
            if code not in rows:
                raise InvalidInput.one(
                    field, f"{code} is not in the directory of owner node {self.node}", code
                )
            if sel.codes and rows[code] != "camera":
                raise InvalidInput.one(field, f"{code} is a {rows[code]}, not a camera", code)
        log.debug("grants node=%s selection checked for %s", self.node, who)

    async def check_catalogued(self, sel: Selection, owner: str) -> None:
        """At an ancestor deciding for ``owner``: every root of ``sel`` is in this node's
        catalogue as ``owner``'s (and listed codes are cameras); ``InvalidInput`` otherwise."""
        async with self.db.sessions() as s:
            q = select(CatalogueEntry.code, CatalogueEntry.origin_node, CatalogueEntry.kind).where(
                CatalogueEntry.code.in_(sel.roots()), CatalogueEntry.deleted.is_(False)
            )
            rows = {c: (n, k) for c, n, k in (await s.execute(q)).all()}
        field = "codes" if sel.codes else "org"
        for code in sel.roots():
            if code not in rows or rows[code][0] != owner:
                raise InvalidInput.one(
                    field, f"{code} is not in the catalogue of node {self.node} as node {owner}'s",
                    code,
                )  # fmt: skip
            if sel.codes and rows[code][1] != "camera":
                raise InvalidInput.one(field, f"{code} is a {rows[code][1]}, not a camera", code)

    def new_row(
        self, grant_id: str, app: Application, user: str, owner: str, decider: str = ""
    ) -> GrantRow:
        now = datetime.now(UTC)
        return GrantRow(
            id=grant_id,
            version=1,
            status=Status.applied.value,
            applicant_node=self.node,
            grantee_kind=app.grantee_kind,
            grantee_code=app.grantee_code,
            applicant_user=user,
            owner_node=owner,
            decider_node=decider or owner,
            decider_scope="",
            sel_org=app.selection.org,
            sel_tags=" ".join(app.selection.tags),
            sel_codes=" ".join(app.selection.codes),
            purpose=app.purpose,
            requested_from=app.period.start,
            requested_until=app.period.end,
            decided_by="",
            decision_reason="",
            revoked_by="",
            revoke_reason="",
            created_at=now,
            updated_at=now,
        )

    async def store_application(self, g: GrantRow, who: Principal | Actor) -> bool:
        """Store version 1 (at the applicant, then at the owner); False if it was already here."""
        async with self.audit.transaction() as s:
            held = await s.get(GrantRow, g.id)
            if held is not None:
                if held.applicant_node != g.applicant_node:
                    raise InvalidInput.one("grant", f"grant id {g.id} is taken", g.id)
                return False
            s.add(g)
            self.audit.record(
                s, who, "grant.apply", g.sel_org or "", "ok",
                audit_detail(g, user=g.applicant_user),
            )  # fmt: skip
        return True

    async def decide(
        self, grant_id: str, p: Principal, decision: Decision, targets: Sequence[str]
    ) -> GrantRow:
        async with self.audit.transaction() as s:
            g = await self._owned(s, grant_id, p)
            g.status = transition(g.id, g.status, decision.event).value
            now = datetime.now(UTC)
            g.version += 1
            g.decided_by, g.decided_at, g.decision_reason = p.username, now, decision.reason
            g.decider_scope = p.scope_code
            if decision.period is not None:
                g.valid_from, g.valid_until = decision.period.start, decision.period.end
            g.updated_at = now
            detail = audit_detail(g, reason=decision.reason, applicant_user=g.applicant_user)
            if decision.period is not None:
                detail |= {
                    "from": decision.period.start.isoformat(),
                    "until": decision.period.end.isoformat(),
                }
            self.audit.record(s, p, f"grant.{decision.event}", g.sel_org or "", "ok", detail)
            self._outbox(s, g, targets)
        return g

    async def revoke(
        self, grant_id: str, p: Principal, reason: str, targets: Sequence[str]
    ) -> GrantRow:
        async with self.audit.transaction() as s:
            g = await self._owned(s, grant_id, p)
            g.status = transition(g.id, g.status, "revoke").value
            now = datetime.now(UTC)
            g.version += 1
            g.revoked_by, g.revoked_at, g.revoke_reason, g.updated_at = p.username, now, reason, now
            g.decider_scope = p.scope_code
            self.audit.record(
                s, p, "grant.revoke", g.sel_org or "", "ok", audit_detail(g, reason=reason)
            )
            self._outbox(s, g, targets)
        return g

    async def _owned(self, s: AsyncSession, grant_id: str, p: Principal) -> GrantRow:
        valid_grant_id(grant_id)
        g = await s.get(GrantRow, grant_id, with_for_update=True)
        if g is None:
            raise NotFound(f"grant {grant_id} is not known at node {self.node}")
        if g.decider_node != self.node:
            raise Forbidden(
                f"grant {grant_id} is decided at node {g.decider_node}; "
                "only an administrator or operator there decides or revokes it"
            )
        await self.check_authority(s, g.owner_node, selection_of(g), p)
        return g

    async def check_authority(
        self, s: AsyncSession, owner: str, sel: Selection, p: Principal
    ) -> None:
        """May ``p`` decide a grant of ``owner``'s cameras ``sel`` here? At the owner: its
        directory holds them inside ``p``'s scope; at an ancestor: ``rules.decider_refusal``."""
        if owner == self.node:
            await self.check_scope(s, sel, p)
            return
        why = decider_refusal(
            decider_node=self.node, decider_user=p.username, decider_scope=p.scope_code,
            owner_node=owner, roots=sel.roots(),
        )  # fmt: skip
        if why is not None:
            raise Forbidden(why)

    async def check_scope(self, s: AsyncSession, sel: Selection, p: Principal) -> None:
        paths = (await s.scalars(select(Entry.path).where(Entry.code.in_(sel.roots())))).all()
        if not paths or not all(path.startswith(p.scope_path) for path in paths):
            raise Forbidden(
                f"{sel.describe()} are not all inside your scope {p.scope_code}; "
                "an administrator or operator whose scope holds them decides"
            )

    async def grant_direct(self, g: GrantRow, p: Principal, targets: Sequence[str]) -> GrantRow:
        """Store ``g`` (built by ``new_row`` for the grantee's node) as decided here: version 2,
        approved for its requested period, with its audit row and outbox, in one transaction."""
        async with self.audit.transaction() as s:
            await self.check_authority(s, g.owner_node, selection_of(g), p)
            if await s.get(GrantRow, g.id) is not None:
                raise InvalidInput.one("grant", f"grant id {g.id} is taken", g.id)
            now = datetime.now(UTC)
            g.version, g.status = 2, Status.approved.value
            g.decided_by, g.decided_at, g.decider_scope = p.username, now, p.scope_code
            g.valid_from, g.valid_until = g.requested_from, g.requested_until
            s.add(g)
            detail = audit_detail(
                g,
                direct=True,
                **{"from": g.valid_from.isoformat(), "until": g.valid_until.isoformat()},
            )
            self.audit.record(s, p, "grant.approve", g.sel_org or "", "ok", detail)
            self._outbox(s, g, targets)
        return g

    async def refusal(self, g: GrantRow, from_node: str) -> str | None:
        """Why a decided version received from ``from_node`` must not be stored here (audited as
        ``grant.refuse`` ``denied``); ``None`` when its decider has authority over the cameras."""
        if g.version < 2:
            return None
        why = decider_refusal(
            decider_node=g.decider_node, decider_user=g.revoked_by or g.decided_by,
            decider_scope=g.decider_scope, owner_node=g.owner_node, roots=selection_of(g).roots(),
        )  # fmt: skip
        held = await self.find(g.id)
        if why is None and held is not None and held.decider_node != g.decider_node:
            why = f"grant {g.id} is decided at node {held.decider_node}, not {g.decider_node}"
        if why is not None:
            await self.audit.write(
                ACTOR, "grant.refuse", (*selection_of(g).roots(), "")[0], "denied",
                audit_detail(g, version=g.version, status=g.status, replica_of=from_node,
                             by=g.revoked_by or g.decided_by, reason=why),
            )  # fmt: skip
        return why

    async def receive(self, g: GrantRow, from_node: str, targets: Sequence[str]) -> bool:
        """Apply another node's version of a grant if newer; audited; True when applied."""
        async with self.audit.transaction() as s:
            held = await s.get(GrantRow, g.id, with_for_update=True)
            if held is not None and held.version >= g.version:
                return False
            if held is not None and held.owner_node != g.owner_node:
                raise InvalidInput.one("grant", f"grant {g.id} has another owner here", g.id)
            if held is not None:
                await s.delete(held)
                await s.flush()
            s.add(g)
            action = {
                Status.applied: "grant.apply",
                Status.approved: "grant.approve",
                Status.rejected: "grant.reject",
                Status.revoked: "grant.revoke",
                Status.expired: "grant.expire",
            }[Status(g.status)]
            self.audit.record(
                s, ACTOR, action, g.sel_org or "", "ok",
                audit_detail(g, replica_of=from_node, version=g.version,
                             by=g.revoked_by or g.decided_by or g.applicant_user),
            )  # fmt: skip
            self._outbox(s, g, targets)
        return True

    async def expire_due(self, now: datetime) -> list[GrantRow]:
        """Store ``expired`` for approved grants whose period is over (audited, each node)."""
        out = []
        async with self.audit.transaction() as s:
            rows = await s.scalars(
                select(GrantRow).where(
                    GrantRow.status == Status.approved.value, GrantRow.valid_until <= now
                )
            )
            for g in rows:
                g.status = transition(g.id, g.status, "expire").value
                g.updated_at = now
                until = _utc(g.valid_until)
                self.audit.record(
                    s, ACTOR, "grant.expire", g.sel_org or "", "ok",
                    audit_detail(g, until=until.isoformat() if until else None),
                )  # fmt: skip
                out.append(g)
        return out

    # --- outbox ---------------------------------------------------------------------------------

    async def due(self, now: datetime, limit: int = 50) -> list[tuple[GrantOutbox, GrantRow]]:
        async with self.db.sessions() as s:
            rows = await s.execute(
                select(GrantOutbox, GrantRow)
                .join(GrantRow, GrantRow.id == GrantOutbox.grant_id)
                .where(GrantOutbox.next_at <= now)
                .order_by(GrantOutbox.id)
                .limit(limit)
            )
            return [(o, g) for o, g in rows.all()]

    async def delivered(self, item: GrantOutbox) -> None:
        async with self.db.transaction() as s:
            # This version or any older one to the same node is done.
            await s.execute(
                delete(GrantOutbox).where(
                    GrantOutbox.grant_id == item.grant_id,
                    GrantOutbox.target_node == item.target_node,
                    GrantOutbox.version <= item.version,
                )
            )

    async def retry_later(self, item: GrantOutbox, error: str, at: datetime) -> None:
        async with self.db.transaction() as s:
            o = await s.get(GrantOutbox, item.id)
            if o is not None:
                o.attempts += 1
                o.last_error = error[:500]
                o.next_at = at

    async def pending(self) -> list[GrantOutbox]:
        async with self.db.sessions() as s:
            return list((await s.scalars(select(GrantOutbox).order_by(GrantOutbox.id))).all())


def visible_to(p: Principal, node: str) -> Any:
    """Rows a user may list: their own applications, their unit's/department's, and (operators,
    admins) every grant owned by or replicated to this node."""
    mine = or_(
        GrantRow.applicant_user == p.username,
        GrantRow.grantee_code == p.scope_code,
        GrantRow.grantee_code == (p.department_code or "-"),
    )
    if p.has("admin", "operator"):
        return or_(
            mine,
            GrantRow.owner_node == node,
            GrantRow.decider_node == node,
            GrantRow.applicant_node != node,
        )
    return mine
