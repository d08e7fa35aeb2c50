"""The pure rules of grants: what an application may ask for, which cameras a grant covers, who
it covers, and its state machine. No I/O; ``vmesh.grants.store`` and ``service`` drive it.

State machine (``transition``)::

    applied --approve--> approved --revoke--> revoked
       |                    |
       +--reject--> rejected +--expire--> expired      (any other move: ``Conflict``)

``approved`` is stored; whether a grant is usable *now* is ``effective``: ``pending`` before its
period starts, ``active`` inside it, ``expired`` once ``valid_until`` has passed (the sweeper then
stores ``expired``).

Selection (``Selection``): a subtree (``org``: every camera below that org unit, optionally only
those carrying one of ``tags``) or a list of camera ``codes``. It is matched at the time of the
view against the camera's current ``CameraFacts`` (its ancestors and tags), so a camera moved
out of the subtree or untagged stops being covered.

Grantee: ``unit`` (the applicant's scope org unit: users whose scope lies inside it) or
``department`` (users whose ``department_code`` is it).

Authority (``above``, ``decider_refusal``): a grant is decided (approved, rejected, granted
directly, revoked) by its owner node — the cameras' own node — or by an ancestor of it: a node
whose division strictly holds the owner's (the province, or the city above a county: the same
division rule by which the fabric serves a province or its city without a grant). The deciding
user's scope must cover every selected root (org or camera code) by division too. Every node that
receives a decided version checks this before storing it.

Public: ``Status``, ``Selection``, ``CameraFacts``, ``Period``, ``Application``,
``parse_application``, ``parse_decision``, ``transition``, ``effective``, ``ended_reason``,
``grantee_includes``, ``new_grant_id``, ``above``, ``decider_refusal``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from vmesh.auth.principal import Principal
from vmesh.errors import Conflict, ErrorList, FieldError, InvalidInput
from vmesh.identity.codes import division_prefix

_CODE = re.compile(r"^\d{20}$")
_GRANT_ID = re.compile(r"^G[0-9a-f]{12}$")
PURPOSE_MAX = 500
REASON_MAX = 500
CODES_MAX = 500
TAGS_MAX = 20
PERIOD_MAX = timedelta(days=366)


class Status(StrEnum):
    applied = "applied"
    approved = "approved"
    rejected = "rejected"
    revoked = "revoked"
    expired = "expired"


TRANSITIONS: dict[tuple[Status, str], Status] = {
    (Status.applied, "approve"): Status.approved,
    (Status.applied, "reject"): Status.rejected,
    (Status.approved, "revoke"): Status.revoked,
    (Status.approved, "expire"): Status.expired,
}
EVENTS = ("approve", "reject", "revoke", "expire")


def transition(grant_id: str, status: str, event: str) -> Status:
    """The status after ``event``; ``Conflict`` naming the grant's status when not allowed."""
    if event not in EVENTS:
        raise InvalidInput.one("decision", "must be one of " + ", ".join(EVENTS), event)
    nxt = TRANSITIONS.get((Status(status), event))
    if nxt is None:
        raise Conflict(f"grant {grant_id} is {status}; it cannot be {_past(event)}")
    return nxt


def _past(event: str) -> str:
    return {"approve": "approved", "reject": "rejected", "revoke": "revoked"}.get(event, "expired")


def new_grant_id() -> str:
    return "G" + secrets.token_hex(6)


def valid_grant_id(v: object) -> str:
    if not isinstance(v, str) or not _GRANT_ID.match(v):
        raise InvalidInput.one("grant", "must be a grant id (G and 12 hex digits)", v)
    return v


@dataclass(frozen=True)
class CameraFacts:
    """What matching needs to know of a camera, as its own node's directory says now."""

    code: str
    name: str
    kind: str
    tags: frozenset[str]
    ancestors: tuple[str, ...]  # org codes from the root down to the camera's parent
    node: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "kind": self.kind,
            "tags": sorted(self.tags),
            "ancestors": list(self.ancestors),
            "node": self.node,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CameraFacts:
        return cls(
            code=str(d["code"]),
            name=str(d.get("name", "")),
            kind=str(d.get("kind", "")),
            tags=frozenset(str(t) for t in d.get("tags") or ()),
            ancestors=tuple(str(a) for a in d.get("ancestors") or ()),
            node=str(d.get("node", "")),
        )


@dataclass(frozen=True)
class Selection:
    """The cameras asked for: a subtree (``org``, optionally narrowed by ``tags``) or ``codes``."""

    org: str | None = None
    tags: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()

    def matches(self, cam: CameraFacts) -> bool:
        if cam.kind != "camera":
            return False
        if self.codes:
            return cam.code in self.codes
        if self.org is None or self.org not in cam.ancestors:
            return False
        return not self.tags or bool(cam.tags.intersection(self.tags))

    def roots(self) -> tuple[str, ...]:
        """The directory codes that decide the owner: the org, or every listed camera."""
        return (self.org,) if self.org else self.codes

    def describe(self) -> str:
        if self.codes:
            return "cameras " + ", ".join(self.codes)
        tags = f" tagged {' or '.join(self.tags)}" if self.tags else ""
        return f"cameras under {self.org}{tags}"


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Application:
    grantee_kind: str  # unit | department
    grantee_code: str
    selection: Selection
    purpose: str
    period: Period


def _time(v: object, name: str, errors: ErrorList) -> datetime | None:
    if not isinstance(v, str) or not v.strip():
        errors.add(FieldError(name, "is required: an ISO 8601 time"))
        return None
    try:
        dt = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    except ValueError:
        errors.add(FieldError(name, "must be an ISO 8601 time", v[:60]))
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _text(v: object, name: str, limit: int, errors: ErrorList, *, required: bool) -> str:
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            errors.add(FieldError(name, "is required (say why, in words)"))
        return ""
    if not isinstance(v, str):
        errors.add(FieldError(name, "must be text", str(v)[:60]))
        return ""
    if len(v.strip()) > limit:
        errors.add(FieldError(name, f"must be at most {limit} characters"))
        return ""
    return v.strip()


def _period(body: dict[str, Any], errors: ErrorList, now: datetime) -> Period | None:
    start = _time(body.get("from"), "from", errors)
    end = _time(body.get("until"), "until", errors)
    if start is None or end is None:
        return None
    if end <= start:
        errors.add(FieldError("until", "must be later than from", end.isoformat()))
        return None
    if end <= now:
        errors.add(FieldError("until", "is already past", end.isoformat()))
        return None
    if end - start > PERIOD_MAX:
        errors.add(FieldError("until", f"a period may last at most {PERIOD_MAX.days} days"))
        return None
    return Period(start, end)


def _selection(body: dict[str, Any], errors: ErrorList) -> Selection | None:
    org, tags, codes = body.get("org"), body.get("tags"), body.get("codes")
    if org in (None, "") and not codes:
        errors.add(FieldError("cameras", "give org (a subtree, optionally with tags) or codes"))
        return None
    if org not in (None, "") and codes:
        errors.add(FieldError("cameras", "give either org or codes, not both"))
        return None
    if codes:
        if isinstance(codes, str):
            codes = codes.split()
        if not isinstance(codes, list) or len(codes) > CODES_MAX:
            errors.add(FieldError("codes", f"must be a list of at most {CODES_MAX} camera codes"))
            return None
        bad = [c for c in codes if not isinstance(c, str) or not _CODE.match(c)]
        if bad:
            errors.add(FieldError("codes", "each must be a 20-digit camera code", str(bad[0])))
            return None
        if tags:
            errors.add(FieldError("tags", "tags narrow a subtree (org), not a list of codes"))
            return None
        return Selection(codes=tuple(dict.fromkeys(codes)))
    if not isinstance(org, str) or not _CODE.match(org):
        errors.add(FieldError("org", "must be a 20-digit org unit code", str(org)))
        return None
    if isinstance(tags, str):
        tags = tags.split()
    tags = tags or []
    if not isinstance(tags, list) or len(tags) > TAGS_MAX:
        errors.add(FieldError("tags", f"must be a list of at most {TAGS_MAX} tags"))
        return None
    if any(not isinstance(t, str) or not t.strip() or " " in t.strip() for t in tags):
        errors.add(FieldError("tags", "each tag must be one word of text"))
        return None
    return Selection(org=org, tags=tuple(sorted({t.strip() for t in tags})))


def parse_application(
    body: dict[str, Any], principal: Principal, now: datetime, *, direct: bool = False
) -> Application:
    """Validate an application; ``InvalidInput`` lists every field that is wrong. ``direct``: a
    grant given by a decider, naming the grantee's org unit or department in ``grantee_code``."""
    errors = ErrorList()
    grantee = body.get("grantee") or "unit"
    code = ""
    if direct:
        code = str(body.get("grantee_code") or "")
        if grantee not in ("unit", "department"):
            errors.add(FieldError("grantee", "must be unit or department", str(grantee)))
        if not _CODE.match(code):
            errors.add(
                FieldError("grantee_code", "must be the 20-digit code of the grantee", code[:60])
            )
    elif grantee == "unit":
        code = principal.scope_code
    elif grantee == "department":
        if not principal.department_code:
            errors.add(FieldError("grantee", "you belong to no department; apply as your unit"))
        code = principal.department_code or ""
    else:
        errors.add(FieldError("grantee", "must be unit or department", str(grantee)))
    selection = _selection(body, errors)
    purpose = _text(body.get("purpose"), "purpose", PURPOSE_MAX, errors, required=True)
    period = _period(body, errors, now)
    errors.raise_if_any("the application is not valid")
    assert selection is not None and period is not None
    return Application(str(grantee), code, selection, purpose, period)


@dataclass(frozen=True)
class Decision:
    event: str  # approve | reject
    reason: str
    period: Period | None  # the approved period (approve only)


def parse_decision(body: dict[str, Any], requested: Period) -> Decision:
    """``{decision: approve|reject, reason, from?, until?}``: an approval may narrow the period."""
    errors = ErrorList()
    event = body.get("decision")
    if event not in ("approve", "reject"):
        errors.add(FieldError("decision", "must be approve or reject", str(event)))
    reason = _text(body.get("reason"), "reason", REASON_MAX, errors, required=event == "reject")
    period = None
    if event == "approve":
        start, end = requested.start, requested.end
        if body.get("from"):
            start = _time(body["from"], "from", errors) or start
        if body.get("until"):
            end = _time(body["until"], "until", errors) or end
        if start < requested.start or end > requested.end:
            errors.add(
                FieldError(
                    "until" if end > requested.end else "from",
                    "an approval may narrow the applied period, not widen it "
                    f"({requested.start.isoformat()} to {requested.end.isoformat()})",
                )
            )
        elif end <= start:
            errors.add(FieldError("until", "must be later than from", end.isoformat()))
        period = Period(start, end)
    errors.raise_if_any("the decision is not valid")
    return Decision(str(event), reason, period)


def parse_revocation(body: dict[str, Any]) -> str:
    errors = ErrorList()
    reason = _text(body.get("reason"), "reason", REASON_MAX, errors, required=True)
    errors.raise_if_any("the revocation is not valid")
    return reason


def effective(status: str, start: datetime | None, end: datetime | None, now: datetime) -> str:
    """applied, rejected, revoked, expired, pending (approved, not started) or active."""
    if status != Status.approved:
        return status
    assert start is not None and end is not None
    if now >= end:
        return Status.expired
    if now < start:
        return "pending"
    return "active"


def ended_reason(
    grant_id: str,
    status: str,
    *,
    valid_from: datetime | None,
    valid_until: datetime | None,
    revoked_at: datetime | None,
    revoked_by: str,
    revoke_reason: str,
    decision_reason: str,
    now: datetime,
) -> str | None:
    """Why the grant cannot be used now (a sentence for the user), or ``None`` when active."""
    state = effective(status, valid_from, valid_until, now)
    if state == "active":
        return None
    if state == Status.revoked:
        at = revoked_at.isoformat(timespec="seconds") if revoked_at else "?"
        why = f": {revoke_reason}" if revoke_reason else ""
        return f"grant {grant_id} revoked at {at} by {revoked_by}{why}"
    if state == Status.expired:
        at = valid_until.isoformat(timespec="seconds") if valid_until else "?"
        return f"grant {grant_id} expired at {at}"
    if state == "pending":
        at = valid_from.isoformat(timespec="seconds") if valid_from else "?"
        return f"grant {grant_id} starts at {at}"
    if state == Status.rejected:
        return f"grant {grant_id} was rejected: {decision_reason}"
    return f"grant {grant_id} is not decided yet"


def grantee_includes(kind: str, code: str, grantee_path: str | None, principal: Principal) -> bool:
    """True when ``principal`` is among the grantee: inside the unit, or of the department.

    ``grantee_path`` is the unit's directory path at the principal's node (``None``: unknown
    there, so only the unit's own users — same scope code — are covered)."""
    if kind == "department":
        return principal.department_code == code
    if principal.scope_code == code:
        return True
    return grantee_path is not None and principal.scope_path.startswith(grantee_path)


def _division(code: str) -> str:
    return division_prefix(code[:8])


def above(upper: str, lower: str) -> bool:
    """True when node ``upper`` is an ancestor of node ``lower``: its division strictly holds
    ``lower``'s (330000 above 330300 and 330328; 330100 is not above 330328, nor is a node above
    itself or a node of the same division)."""
    up, low = _division(upper), _division(lower)
    return len(up) < len(low) and low.startswith(up)


def decider_refusal(
    *, decider_node: str, decider_user: str, decider_scope: str, owner_node: str,
    roots: tuple[str, ...],
) -> str | None:  # fmt: skip
    """Why a decision taken at ``decider_node`` by ``decider_user`` (scope ``decider_scope``)
    over cameras of ``owner_node`` must not be honoured; ``None`` when it may.

    The owner's own decisions are checked at the owner against its directory (``None`` here);
    any other decider must be an ancestor of the owner (``above``) and the user's scope must hold
    every root by division."""
    if decider_node == owner_node:
        return None
    if not above(decider_node, owner_node):
        return (
            f"node {decider_node} is not above node {owner_node}: only the cameras' own node "
            "or a node whose division holds it decides a grant of its cameras"
        )
    scope = _division(decider_scope) if decider_scope else ""
    outside = [r for r in roots if not scope or not r.startswith(scope)]
    if outside:
        return (
            f"{decider_user or 'the decider'}'s scope {decider_scope or '(none)'} at node "
            f"{decider_node} does not cover {', '.join(outside)}"
        )
    return None
