"""``GrantService``: a node's part in grants — applications to owner nodes, decisions travelling
back, enforcement at the viewer's node and at the camera's node, expiry and forced stop.

RPC (``vmesh.<node>.rpc.grants``, JSON over the federation ``Bus``; no other service uses that
subject)::

    -> {"op": "locate", "codes": ["<org or camera code>", ...]}
    <- {"owners": {"<code>": "<node>"}}   this node's catalogue, else its parent's answer
    -> {"op": "apply", "grant": {<grant at version 1>}}     (applicant → owner)
    <- {"stored": true}
    -> {"op": "sync", "grant": {<grant at a newer version>}, "from": "<node>"}
    <- {"applied": true | false}          false: this version (or a newer one) was already here
    -> {"op": "camera", "code": "<camera code>"}             (viewer's node → owner)
    <- {"code", "name", "kind", "tags", "ancestors", "node"}
    -> {"op": "root"}                                         (a child → its parent)
    <- {"root": "<the top node of this node's chain>"}

Deciding node (``decider_node``): an application goes to the owner (the default) or to the node it
names in ``decider`` — ``"province"`` (the top of the applicant's chain) or a node code — which
must be an ancestor of the owner (``rules.above``); that node checks the cameras are the owner's in
its catalogue, stores the application and decides it. An operator at an ancestor may also grant
directly (``grant_direct``: grantee unit or department of another node, located through the
catalogues). The decider's versions go to the applicant's node, the owner and its own parent;
every receiving node checks the decider's authority (``store.refusal``) and refuses with 403 and an
audit row when it has none; a refused delivery is dropped at the sender, not retried.

Delivery of decisions: each new version is written, in the decision's own transaction, to the
``grant_outbox`` for the applicant's node and this node's parent; a node that applies a newer
version forwards it to its parent the same way, so it reaches the province whoever decided it.
The delivery task sends outbox rows as ``sync`` requests and deletes them when answered, retrying
with back-off (up to ``RETRY_MAX`` s) while a link is cut; applying is idempotent by (id,
version). Request/reply with an outbox rather than JetStream: grants flow down and sideways (owner
→ applicant), while the node streams are sourced upwards only; the outbox is durable in the same
database transaction as the decision, so a decision taken during a cut arrives when it returns.

Enforcement:

- at the viewer's node, ``LiveSession`` asks ``authorise`` for a camera outside the user's scope:
  an active grant whose grantee includes the user and whose selection matches the camera's facts
  now (``GrantUse``), else ``Forbidden`` naming why the user's grant cannot be used (``grant G
  revoked at … by …``), else ``None`` (not found, as before); tiles watching through a grant ask
  ``ended`` every monitor tick and stop with its reason;
- at the camera's node, the fabric's ``open`` and ``record`` from a viewer node whose division
  does not hold the camera must carry an active grant of that viewer node matching the camera
  (``admit``); on revocation or expiry this node closes the fabric outputs opened under it.

Public: ``GrantService``, ``GrantUse``, ``SERVICE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from vmesh.auth.principal import Principal
from vmesh.errors import Forbidden, InvalidInput, NotFound, VmeshError
from vmesh.federation.bus import RemoteError
from vmesh.grants.models import GrantOutbox, GrantRow
from vmesh.grants.rules import (
    CameraFacts,
    Status,
    above,
    ended_reason,
    grantee_includes,
    new_grant_id,
    parse_application,
    parse_decision,
    parse_revocation,
)
from vmesh.grants.store import GrantStore, from_wire, period_of, selection_of, to_wire
from vmesh.identity.codes import division_prefix
from vmesh.node.tasks import cancel_tasks
from vmesh.node.wakeup import woken

if TYPE_CHECKING:
    from vmesh.federation.bus import Bus
    from vmesh.media.viewer import Camera
    from vmesh.node.context import NodeContext

log = logging.getLogger(__name__)

SERVICE = "grants"
SWEEP_SECONDS = 1.0
RETRY_MIN = 0.5
RETRY_MAX = 5.0
RPC_TIMEOUT = 5.0


@dataclass(frozen=True)
class GrantUse:
    """The grant a view relied on (written into its audit row)."""

    grant: str
    purpose: str

    def as_detail(self) -> dict[str, str]:
        return {"grant": self.grant, "purpose": self.purpose}


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def why_not(g: GrantRow, now: datetime) -> str | None:
    return ended_reason(
        g.id,
        g.status,
        valid_from=_utc(g.valid_from),
        valid_until=_utc(g.valid_until),
        revoked_at=_utc(g.revoked_at),
        revoked_by=g.revoked_by,
        revoke_reason=g.revoke_reason,
        decision_reason=g.decision_reason,
        now=now,
    )


class GrantService:
    def __init__(
        self,
        ctx: NodeContext,
        *,
        bus: Bus | None = None,
        parent: Callable[[], str | None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ctx = ctx
        self.node = ctx.config.node.code
        self.store = GrantStore(ctx.db, ctx.audit, self.node)
        self.bus = bus
        self.parent = parent
        self.clock = clock
        # Grants tiles and fabric outputs rely on, and why they ended (checked without I/O).
        self._ended: dict[str, str] = {}
        self._until: dict[str, datetime] = {}
        # (user, camera) → grant used for the view, for the fabric's open/record (credentials).
        self._creds: dict[tuple[str, str], str] = {}
        self._fact_cache: dict[str, CameraFacts] = {}
        self._root: str | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Called with a grant id when it ends here (the fabric closes what it serves under it).
        self.on_end: list[Callable[[str], Any]] = []

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.bus is not None:
            await self.bus.serve(SERVICE, self._on_rpc)
        self._tasks = [
            asyncio.create_task(self._deliver_loop(), name="grants-deliver"),
            asyncio.create_task(self._sweep_loop(), name="grants-sweep"),
        ]
        log.info("grants node=%s started", self.node)

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)

    # --- applications, decisions, revocations (HTTP) ----------------------------------------------

    async def apply(self, p: Principal, body: dict[str, Any]) -> GrantRow:
        app = parse_application(body, p, self.clock())
        owner = await self._owner(app.selection.roots(), "codes" if app.selection.codes else "org")
        decider = await self._decider(body.get("decider"), owner)
        g = self.store.new_row(new_grant_id(), app, p.username, owner, decider)
        if decider == self.node and owner == self.node:
            await self.store.check_owned(app.selection, p.username)
        elif decider == self.node:
            await self.store.check_catalogued(app.selection, owner)
        else:
            await self._call(decider, {"op": "apply", "grant": to_wire(g)})
        await self.store.store_application(g, p)
        return g

    async def grant_direct(self, p: Principal, body: dict[str, Any]) -> GrantRow:
        """Grant ``body``'s cameras to another unit or department directly, decided here (the
        owner, or an ancestor of it whose scope covers them)."""
        app = parse_application(body, p, self.clock(), direct=True)
        owner = await self._owner(app.selection.roots(), "codes" if app.selection.codes else "org")
        grantee_node = await self._owner((app.grantee_code,), "grantee_code")
        if owner == self.node:
            await self.store.check_owned(app.selection, p.username)
        else:
            await self.store.check_catalogued(app.selection, owner)
        g = self.store.new_row(new_grant_id(), app, p.username, owner, self.node)
        g.applicant_node = grantee_node
        g = await self.store.grant_direct(g, p, self._targets(g))
        self._wake.set()
        return g

    async def _decider(self, v: object, owner: str) -> str:
        """The node named by an application's ``decider``: the owner (default), the province
        (``"province"``: the top of this node's chain) or a node code above the owner."""
        if v in (None, "", "owner"):
            return owner
        node = await self.root() if v == "province" else v
        if not isinstance(node, str) or len(node) != 20 or not node.isdigit():
            raise InvalidInput.one("decider", "must be owner, province or a node code", str(v))
        if node != owner and not above(node, owner):
            raise InvalidInput.one(
                "decider",
                f"node {node} is not above the owner node {owner}; it cannot decide",
                node,
            )
        return node

    async def root(self) -> str:
        """The top node of this node's chain of parents (this node when it has none)."""
        parent = self.parent()
        if parent is None or self.bus is None:
            return self.node
        if self._root is None:
            self._root = str((await self._call(parent, {"op": "root"}))["root"])
        return self._root

    async def decide(self, p: Principal, grant_id: str, body: dict[str, Any]) -> GrantRow:
        g = await self.store.get(grant_id)
        decision = parse_decision(body, period_of(g))
        g = await self.store.decide(grant_id, p, decision, self._targets(g))
        self._wake.set()
        return g

    async def revoke(self, p: Principal, grant_id: str, body: dict[str, Any]) -> GrantRow:
        reason = parse_revocation(body)
        held = await self.store.get(grant_id)
        g = await self.store.revoke(grant_id, p, reason, self._targets(held))
        self._ended_now(g)
        self._wake.set()
        return g

    def _targets(self, g: GrantRow) -> list[str]:
        return [t for t in (g.applicant_node, g.owner_node, self.parent()) if t]

    async def _owner(self, roots: tuple[str, ...], field: str) -> str:
        owners = await self.store.owner_of(roots)
        missing = [c for c in roots if c not in owners]
        if missing and self.bus is not None and self.parent():
            reply = await self._call(self.parent() or "", {"op": "locate", "codes": missing})
            owners.update({str(k): str(v) for k, v in (reply.get("owners") or {}).items()})
        for c in roots:
            if c not in owners:
                raise InvalidInput.one(field, f"{c} is in no node's catalogue known here", c)
        nodes = sorted(set(owners[c] for c in roots))
        if len(nodes) > 1:
            by = "; ".join(f"{c} at node {owners[c]}" for c in roots)
            raise InvalidInput.one(
                "codes", f"cameras outside the owner: one application goes to one owner ({by})"
            )
        return nodes[0]

    async def _call(self, node: str, body: dict[str, Any]) -> Any:
        if self.bus is None:
            raise NotFound(f"node {node} is another node; this node runs without federation")
        return await self.bus.call(node, SERVICE, body, timeout=RPC_TIMEOUT)

    # --- RPC ------------------------------------------------------------------------------------

    async def _on_rpc(self, body: dict[str, Any]) -> Any:
        op = body.get("op")
        if op == "locate":
            codes = body.get("codes")
            if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
                raise InvalidInput.one("codes", "must be a list of codes")
            owners = await self.store.owner_of(codes[:500])
            missing = [c for c in codes if c not in owners]
            if missing and self.bus is not None and self.parent():
                with contextlib.suppress(VmeshError):
                    up = await self._call(self.parent() or "", {"op": "locate", "codes": missing})
                    owners.update(up.get("owners") or {})
            return {"owners": owners}
        if op == "root":
            return {"root": await self.root()}
        if op == "apply":
            g = from_wire(body.get("grant") or {})
            if g.decider_node != self.node or g.status != Status.applied or g.version != 1:
                raise InvalidInput.one("grant", f"not an application to node {self.node}", g.id)
            if g.owner_node == self.node:
                await self.store.check_owned(selection_of(g), g.applicant_user)
            elif above(self.node, g.owner_node):
                await self.store.check_catalogued(selection_of(g), g.owner_node)
            else:
                raise InvalidInput.one(
                    "decider", f"node {self.node} is not above the owner node {g.owner_node}"
                )
            await self.store.store_application(g, _remote_actor(g))
            return {"stored": True}
        if op == "sync":
            g = from_wire(body.get("grant") or {})
            why = await self.store.refusal(g, str(body.get("from") or ""))
            if why is not None:
                raise Forbidden(
                    f"grant {g.id} version {g.version} refused at node {self.node}: {why}"
                )
            applied = await self.store.receive(
                g, str(body.get("from") or ""), [t for t in (self.parent(),) if t]
            )
            if applied:
                self._ended_now(g)
                self._wake.set()
            return {"applied": applied}
        if op == "camera":
            code = body.get("code")
            facts = await self.store.camera_facts(str(code)) if isinstance(code, str) else None
            if facts is None or facts.node != self.node:
                raise NotFound(f"camera {code} is not in the directory of node {self.node}")
            return facts.as_dict()
        raise InvalidInput.one("op", "must be locate, root, apply, sync or camera", op)

    # --- the viewer's node ------------------------------------------------------------------------

    async def _candidates(self, p: Principal) -> list[GrantRow]:
        codes = [p.scope_code] + ([p.department_code] if p.department_code else [])
        rows = await self.store.of_grantee(codes)
        out = []
        for g in rows:
            path = await self.store.unit_path(g.grantee_code) if g.grantee_kind == "unit" else None
            if grantee_includes(g.grantee_kind, g.grantee_code, path, p):
                out.append(g)
        return out

    async def _facts(self, code: str, owners: set[str]) -> CameraFacts | None:
        facts = await self.store.camera_facts(code)
        if facts is not None:
            return facts
        for owner in sorted(owners):
            if owner == self.node:
                continue
            try:
                d = await self._call(owner, {"op": "camera", "code": code})
            except VmeshError as e:
                log.info("grants node=%s camera %s not at %s: %s", self.node, code, owner, e)
                continue
            facts = CameraFacts.from_dict(d)
            self._fact_cache[code] = facts
            return facts
        return self._fact_cache.get(code)

    async def find_camera(self, p: Principal, code: str) -> Camera | None:
        """A camera known here only through one of ``p``'s grants (asked of its owner node)."""
        from vmesh.media.viewer import Camera

        grants = await self._candidates(p)
        facts = await self._facts(code, {g.owner_node for g in grants})
        if facts is None or not any(selection_of(g).matches(facts) for g in grants):
            return None
        return Camera(facts.code, facts.name, facts.kind, "", {}, origin_node=facts.node)

    async def authorise(self, p: Principal, cam: Camera) -> GrantUse | None:
        """The active grant letting ``p`` watch ``cam`` (outside their scope); see the module."""
        grants = await self._candidates(p)
        if not grants:
            return None
        facts = await self._facts(cam.code, {g.owner_node for g in grants})
        if facts is None:
            return None
        now = self.clock()
        matching = [g for g in grants if selection_of(g).matches(facts)]
        for g in matching:
            if why_not(g, now) is None:
                self._until[g.id] = _utc(g.valid_until)  # type: ignore[assignment]
                self._ended.pop(g.id, None)
                self._creds[(p.username, cam.code)] = g.id
                return GrantUse(g.id, g.purpose)
        if matching:
            latest = max(matching, key=lambda g: g.updated_at)
            raise Forbidden(why_not(latest, now) or f"grant {latest.id} cannot be used")
        return None

    async def authorise_code(self, p: Principal, code: str) -> tuple[Camera, GrantUse] | None:
        """``find_camera`` + ``authorise`` for requests naming only a code (playback,
        snapshots): the camera (``origin_node`` None when it is this node's) and the grant."""
        cam = await self.find_camera(p, code)
        if cam is None:
            return None
        use = await self.authorise(p, cam)
        if use is None:
            return None
        if cam.origin_node == self.node:
            cam = replace(cam, origin_node=None)
        return cam, use

    def ended(self, grant_id: str) -> str | None:
        """Why a grant a tile relies on stopped being usable (no I/O: called every tick)."""
        if grant_id in self._ended:
            return self._ended[grant_id]
        until = self._until.get(grant_id)
        if until is not None and self.clock() >= until:
            return f"grant {grant_id} expired at {until.isoformat(timespec='seconds')}"
        return None

    def credentials(self, stream: str, user: str) -> dict[str, Any]:
        """What the fabric's open/record carry for ``user``'s view of ``stream`` (the grant)."""
        gid = self._creds.get((user, stream))
        return {"grant": gid} if gid and gid not in self._ended else {}

    def _ended_now(self, g: GrantRow) -> None:
        why = why_not(g, self.clock())
        if g.status in (Status.revoked, Status.expired) and why is not None:
            self._ended[g.id] = why
            for fn in self.on_end:
                try:
                    fn(g.id)
                except Exception:
                    log.exception("grants node=%s end hook failed grant=%s", self.node, g.id)

    # --- the camera's node ------------------------------------------------------------------------

    async def admit(self, stream: str, viewer_node: str, grant_id: str | None) -> GrantUse | None:
        """May ``viewer_node`` receive camera ``stream`` of this node? ``None``: yes, the viewer
        node's division holds the camera; a ``GrantUse``: yes, by that grant; else Forbidden."""
        if stream.startswith(division_prefix(viewer_node[:8])):
            return None
        if not grant_id:
            raise Forbidden(
                f"node {viewer_node} holds no grant for camera {stream} of node {self.node}"
            )
        g = await self.store.find(grant_id)
        if g is None or g.owner_node != self.node or g.applicant_node != viewer_node:
            raise Forbidden(f"grant {grant_id} is not a grant of node {self.node} to {viewer_node}")
        why = why_not(g, self.clock())
        if why is not None:
            raise Forbidden(why)
        facts = await self.store.camera_facts(stream)
        if facts is None or not selection_of(g).matches(facts):
            raise Forbidden(f"grant {grant_id} does not cover camera {stream}")
        self._until[g.id] = _utc(g.valid_until)  # type: ignore[assignment]
        return GrantUse(g.id, g.purpose)

    # --- background -----------------------------------------------------------------------------

    async def _deliver_loop(self) -> None:
        while True:
            try:
                await self.deliver_once()
            except Exception:
                log.exception("grants node=%s delivery failed", self.node)
            self._wake.clear()
            await woken(self._wake, RETRY_MIN)

    async def deliver_once(self) -> int:
        """Send every due outbox row once; the number delivered."""
        n = 0
        now = self.clock()
        for item, g in await self.store.due(now):
            if self.bus is None:
                await self.store.retry_later(item, "no federation", now + timedelta(seconds=60))
                continue
            try:
                await self._call(
                    item.target_node, {"op": "sync", "grant": to_wire(g), "from": self.node}
                )
            except RemoteError as e:
                if e.status != 403:
                    await self._retry(item, g, e)
                    continue
                log.warning(
                    "grants node=%s grant=%s v%d refused by %s, dropped: %s",
                    self.node, g.id, item.version, item.target_node, e.detail,
                )  # fmt: skip
            except VmeshError as e:
                await self._retry(item, g, e)
                continue
            await self.store.delivered(item)
            n += 1
        return n

    async def _retry(self, item: GrantOutbox, g: GrantRow, e: VmeshError) -> None:
        wait = min(RETRY_MAX, RETRY_MIN * 2 ** min(item.attempts, 4))
        await self.store.retry_later(item, e.detail, self.clock() + timedelta(seconds=wait))
        log.info(
            "grants node=%s grant=%s v%d to %s not delivered (retry in %.1fs): %s",
            self.node, g.id, item.version, item.target_node, wait, e.detail,
        )  # fmt: skip

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.sweep_once()
            except Exception:
                log.exception("grants node=%s sweep failed", self.node)

    async def sweep_once(self) -> list[GrantRow]:
        """Store ``expired`` for grants whose period is over, and end what relied on them."""
        expired = await self.store.expire_due(self.clock())
        for g in expired:
            self._ended_now(g)
        return expired


def _remote_actor(g: GrantRow) -> Any:
    from vmesh.audit.log import Actor

    return Actor(f"{g.applicant_user}@{g.applicant_node}")
