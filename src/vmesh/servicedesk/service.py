"""The service desk of one node: cases driven through the state machine in the database, queues,
materials, the result PDF, and the live updates kiosks and desks receive.

Every transition goes through ``ServiceDesk._move``: it checks the step with
``vmesh.servicedesk.cases.step``, updates the case only if it is still in the state it was read in
(so two agents taking one case cannot both win), appends the case's next ``sd_case_events`` row
and writes the audit row ``servicedesk.<event>`` with the case number, all in one transaction.
Transitions of one node are also serialised by an asyncio lock (SQLite has one writer anyway).

Who may do what: the kiosk side (a user whose scope covers the kiosk endpoint, a ``service_room``)
creates, identifies, enqueues, uploads, signs, rates, abandons; the desk side (role ``agent`` or
``admin``, registered with ``set_agent`` with groups and a seat) accepts, checks, submits,
transfers, escalates, holds and calls back, only cases of kiosks in the agent's scope; after
``accept`` only the case's own agent acts on it.

Live updates: ``subscribe`` returns a ``Subscriber`` whose queue receives ``{"type": "kiosk",
...}`` (the kiosk's case: state, position, expected wait, materials, the agent's seat) or
``{"type": "desk", ...}`` (the agent's queues); after every change one snapshot of the open cases
is computed and pushed to every subscriber (coalesced). Faults: when the last kiosk subscriber of
a waiting or live case goes, the case is abandoned after ``kiosk_resume_seconds`` unless a kiosk
subscribes to it again; when an agent's last desk subscriber goes, the agent's live case is put
back at the head of its queue after ``agent_grace_seconds`` (``requeue``).

Public: ``ServiceDesk``, ``Subscriber``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vmesh.audit.log import Actor
from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import Conflict, Forbidden, InvalidInput, NotFound, VmeshError
from vmesh.federation.models import CatalogueEntry
from vmesh.node.context import NodeContext
from vmesh.node.files import write_atomic
from vmesh.servicedesk import catalogue as cat
from vmesh.servicedesk import pdf
from vmesh.servicedesk.cases import LIVE, WAITING, Event, State, case_number, step
from vmesh.servicedesk.idcard import IdCard, masked
from vmesh.servicedesk.models import Agent, Case, CaseEvent, Department, Item, Material
from vmesh.servicedesk.queues import (
    AgentQueues,
    Waiting,
    agents_per_item,
    expected_wait,
    next_case,
    positions,
)
from vmesh.servicedesk.recording import RECORDING_NAME, CallRecording, Inputs
from vmesh.servicedesk.tiers import CALL, CHUNK, Tiers, _b64

log = logging.getLogger(__name__)

SYSTEM = Actor("servicedesk", "system")
KIOSK_KIND = "service_room"
AGENT_ROLES = ("agent",)
_IMAGE_TYPES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
Who = Principal | Actor
RECORDED = CALL  # the call is recorded in these states


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime | None) -> datetime | None:
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=UTC))


def _iso(t: datetime | None) -> str | None:
    t = _aware(t)
    return None if t is None else t.isoformat()


def image_info(data: bytes) -> tuple[str, int, int]:
    """Media type, width and height of a JPEG or PNG; ``InvalidInput`` for anything else."""
    kind = next((t for magic, t in _IMAGE_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise InvalidInput.one("image", "must be a JPEG or PNG image")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
            width, height = im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InvalidInput.one("image", f"cannot be read as {kind}: {e}") from None
    return kind, width, height


@dataclass(eq=False)
class Subscriber:
    """One kiosk or desk page's live updates."""

    principal: Principal
    case_id: int | None = None  # a kiosk's case
    agent: str | None = None  # a desk's agent
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


class ServiceDesk:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.audit = ctx.audit
        self.cfg = ctx.config.servicedesk
        self.files = ctx.config.node.data_dir / "servicedesk"
        self.division = ctx.config.node.code[:6]
        self._lock = asyncio.Lock()
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._subs: set[Subscriber] = set()
        self._changed = asyncio.Event()
        self._pusher: asyncio.Task[None] | None = None
        self._timers: dict[tuple[str, object], asyncio.Task[None]] = {}
        self._recordings: dict[int, CallRecording] = {}
        self._recording_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.tiers = Tiers(self)
        self.rpc: asyncio.Task[None] | None = None  # serving kiosks of child nodes

    # --- start ------------------------------------------------------------------------------

    async def ready(self) -> None:
        """Load the sample catalogue once when configured and the catalogue is empty."""
        if self._ready:
            return
        async with self._ready_lock:  # callers at the same time all wait for the one import
            if self._ready:
                return
            if self.cfg.sample_catalogue:
                async with self.db.sessions() as s:
                    n = await s.scalar(select(func.count()).select_from(Item))
                if not n:
                    await cat.import_catalogue(self.audit, SYSTEM, cat.load_sample())
            self._ready = True

    # --- agents -----------------------------------------------------------------------------

    async def set_agent(
        self, who: Principal, username: str, groups: Mapping[str, int], seat_code: str
    ) -> dict[str, Any]:
        if not groups or not all(
            isinstance(g, str) and isinstance(p, int) and 1 <= p <= 9 for g, p in groups.items()
        ):
            raise InvalidInput.one("groups", "must map at least one group to a priority 1..9")
        async with self.audit.transaction() as s:
            seat = await s.scalar(select(Entry).where(Entry.code == seat_code))
            if seat is None or not who.covers(seat.path):
                raise InvalidInput.one("seat_code", "must be an endpoint in your scope", seat_code)
            if seat.kind not in ("service_room", "conference_terminal"):
                raise InvalidInput.one(
                    "seat_code", f"must be a service room or conference terminal, not {seat.kind}"
                )
            await s.merge(
                Agent(
                    username=username,
                    groups=json.dumps(sorted(groups.items())),
                    seat_code=seat_code,
                )
            )
            self.audit.record(
                s,
                who,
                "servicedesk.agent.set",
                seat_code,
                "ok",
                {"username": username, "groups": dict(groups)},
            )
        return {"username": username, "groups": dict(groups), "seat_code": seat_code}

    async def _agent(self, s: AsyncSession, who: Principal) -> Agent:
        if not who.has("admin", *AGENT_ROLES):
            raise Forbidden(f"the desk needs role agent; you have {who.roles_text or 'none'}")
        a = await s.get(Agent, who.username)
        if a is None:
            raise Forbidden(f"{who.username} is not registered as an agent (groups and seat)")
        return a

    @staticmethod
    def _queues_of(a: Agent) -> AgentQueues:
        return AgentQueues(a.username, {g: int(p) for g, p in json.loads(a.groups)})

    # --- cases: the kiosk side --------------------------------------------------------------

    async def create(self, who: Principal, kiosk_code: str, item_code: str) -> dict[str, Any]:
        """A new case at this kiosk; forwarded to the serving node when the item is served at
        another tier (``vmesh.servicedesk.tiers``), this node keeping a mirror of it."""
        await self.ready()
        async with self.db.sessions() as s:
            kiosk = await s.scalar(select(Entry).where(Entry.code == kiosk_code))
            if kiosk is None or not who.covers(kiosk.path):
                raise InvalidInput.one("kiosk_code", "no such kiosk in your scope", kiosk_code)
            item = await self._kiosk_item(s, kiosk, item_code)
            parent = await s.scalar(select(Entry.name).where(Entry.id == kiosk.parent_id))
        village = parent or kiosk.name
        serving = self.tiers.serving_node(item)
        if serving is None:
            case_id = await self._insert(who, item_code, kiosk_code, kiosk.path, village)
            return await self.case_json(who, case_id)
        remote = await self.tiers.call(
            serving,
            "create",
            who,
            kiosk_code=kiosk_code,
            kiosk_name=kiosk.name,
            village=village,
            item_code=item_code,
        )
        async with self._lock, self.audit.transaction() as s:
            mirror = Case(
                number=str(remote["number"]),
                item_code=item_code,
                state=str(remote["state"]),
                kiosk_code=kiosk_code,
                kiosk_path=kiosk.path,
                village=village,
                kiosk_user=who.username,
                created_at=_now(),
                served_by=serving,
                remote_id=int(remote["id"]),
            )
            s.add(mirror)
            await s.flush()
            self.audit.record(
                s,
                who,
                "servicedesk.forward",
                mirror.number,
                "ok",
                {"item": item_code, "to": serving, "remote_id": mirror.remote_id},
            )
        return await self.tiers.remember(mirror, remote)

    @staticmethod
    async def _kiosk_item(s: AsyncSession, kiosk: Entry | CatalogueEntry, item_code: str) -> Item:
        """``kiosk`` must be a service room; the catalogue's item ``item_code``."""
        if kiosk.kind != KIOSK_KIND:
            raise InvalidInput.one(
                "kiosk_code", f"{kiosk.name} is a {kiosk.kind}, not a {KIOSK_KIND}", kiosk.code
            )
        item = await s.get(Item, item_code)
        if item is None:
            raise InvalidInput.one("item_code", "no such item in the catalogue", item_code)
        return item

    async def create_remote(
        self, node: str, user: str, kiosk_code: str, item_code: str
    ) -> dict[str, Any]:
        """A case for a kiosk of node ``node`` (a child of this one) whose item this node serves.

        The kiosk must be a service room of that node in this node's catalogue; the case is put
        at the path of this node's org unit, so that this node's agents see it in their queues."""
        await self.ready()
        async with self.db.sessions() as s:
            kiosk = await s.get(CatalogueEntry, kiosk_code)
            if kiosk is None or kiosk.deleted or kiosk.origin_node != node:
                raise InvalidInput.one(
                    "kiosk_code", f"no kiosk of node {node} in this node's catalogue", kiosk_code
                )
            item = await self._kiosk_item(s, kiosk, item_code)
            if item.centre_tier != self.tiers.tier:
                raise InvalidInput.one(
                    "item_code",
                    f"{item.name} is served by a {item.centre_tier} centre, this node is a "
                    f"{self.tiers.tier}",
                    item_code,
                )
            village = kiosk.name
            if kiosk.parent_code:
                up = await s.get(CatalogueEntry, kiosk.parent_code)
                village = up.name if up is not None else village
            root = await s.scalar(
                select(Entry.path).where(Entry.parent_id.is_(None)).order_by(Entry.id).limit(1)
            )
        if root is None:
            raise Conflict("this node has no org unit to serve cases under")
        who = self.tiers._kiosk(Case(kiosk_code=kiosk_code, kiosk_path=root), user, node)
        case_id = await self._insert(who, item_code, kiosk_code, root, village, kiosk_node=node)
        return await self.case_json(who, case_id)

    async def _insert(
        self,
        who: Principal,
        item_code: str,
        kiosk_code: str,
        kiosk_path: str,
        village: str,
        *,
        kiosk_node: str | None = None,
    ) -> int:
        async with self._lock, self.audit.transaction() as s:
            now = _now()
            number = await self._next_number(s, now.date())
            case = Case(
                number=number,
                item_code=item_code,
                state=State.created.value,
                kiosk_code=kiosk_code,
                kiosk_path=kiosk_path,
                village=village,
                kiosk_user=who.username,
                created_at=now,
                kiosk_node=kiosk_node,
            )
            s.add(case)
            await s.flush()
            s.add(
                CaseEvent(
                    case_id=case.id,
                    seq=1,
                    at=now,
                    event="create",
                    from_state="",
                    to_state=State.created.value,
                    actor=who.username,
                    detail=json.dumps({"item": item_code}, ensure_ascii=False),
                )
            )
            detail: dict[str, Any] = {"item": item_code}
            if kiosk_node:
                detail["kiosk_node"] = kiosk_node
            self.audit.record(s, who, "servicedesk.create", number, "ok", detail)
            case_id = case.id
        self._kick()
        return case_id

    # --- mirrors of cases served by another node (vmesh.servicedesk.tiers) --------------------

    async def _mirror(self, who: Principal, case_id: int) -> Case | None:
        """The mirror row ``case_id`` (a case served by another node) in ``who``'s scope."""
        case = await self._load(case_id)
        if case.served_by is None:
            return None
        if not who.covers(case.kiosk_path):
            raise NotFound(f"case {case_id} not found")
        return case

    async def mirror_state(self, case_id: int, state: str) -> None:
        async with self.db.sessions() as s, s.begin():
            await s.execute(
                update(Case)
                .where(Case.id == case_id, Case.served_by.is_not(None))
                .values(state=state)
                .execution_options(synchronize_session=False)
            )

    def kick(self) -> None:
        self._kick()

    def watching(self, case_id: int) -> bool:
        return any(x.case_id == case_id for x in self._subs)

    def tell(self, case_id: int, msg: dict[str, Any]) -> None:
        for sub in list(self._subs):
            if sub.case_id == case_id:
                sub.queue.put_nowait(msg)

    def kiosk_seen(self, case_id: int) -> None:
        """A kiosk of another node asked about its case: it is still there."""
        self._later(
            ("kiosk", case_id),
            self.cfg.kiosk_resume_seconds,
            lambda: self._kiosk_gone_case(case_id),
        )

    async def kiosk_message(self, case_id: int) -> dict[str, Any]:
        async with self.db.sessions() as s:
            snap = await self._snapshot(s)
            c = await self._case(s, case_id)
            mats = (await s.scalars(select(Material).where(Material.case_id == case_id))).all()
        return self._kiosk_msg(c, snap, list(mats))

    async def watch_case(self, sub: Subscriber) -> None:
        """Subscribe a kiosk page; a mirror's updates are relayed from its serving node."""
        assert sub.case_id is not None
        self.subscribe(sub)
        case = await self._load(sub.case_id)
        if case.served_by is not None:
            self.tiers.follow(sub, case)

    async def _next_number(self, s: AsyncSession, day: date) -> str:
        prefix = case_number(self.division, day, 1)[:-6]
        last = await s.scalar(select(func.max(Case.number)).where(Case.number.like(f"{prefix}%")))
        serial = int(last[-6:]) + 1 if last else 1
        return case_number(self.division, day, serial)

    async def identify(self, who: Principal, case_id: int, card: IdCard) -> dict[str, Any]:
        if (m := await self._mirror(who, case_id)) is not None:
            return await self.tiers.forward(who, m, "identify", card=asdict(card))
        await self._move(
            who,
            case_id,
            Event.identify,
            side="kiosk",
            detail={"id": masked(card.id_number)},
            values={"applicant_name": card.name, "applicant_id": card.id_number},
        )
        return await self.case_json(who, case_id)

    async def enqueue(self, who: Principal, case_id: int) -> dict[str, Any]:
        if (m := await self._mirror(who, case_id)) is not None:
            return await self.tiers.forward(who, m, "enqueue")
        await self._move(who, case_id, Event.enqueue, side="kiosk", values={"enqueued_at": _now()})
        return await self.case_json(who, case_id)

    async def abandon(self, who: Who, case_id: int, reason: str) -> None:
        if isinstance(who, Principal) and (m := await self._mirror(who, case_id)) is not None:
            await self.tiers.forward(who, m, "abandon")
            return
        await self._move(who, case_id, Event.abandon, side="kiosk", detail={"reason": reason})

    async def sign(self, who: Principal, case_id: int, png: bytes) -> dict[str, Any]:
        kind, _w, _h = image_info(png)
        if kind != "image/png":
            raise InvalidInput.one("image", "a signature must be a PNG")
        if (m := await self._mirror(who, case_id)) is not None:
            if len(png) > CHUNK:
                raise InvalidInput.one("image", f"a signature must be under {CHUNK} bytes")
            return await self.tiers.forward(who, m, "sign", data=_b64(png))
        case = await self._load(case_id)
        name = self._store(case.number, "signature.png", png)
        await self._move(
            who,
            case_id,
            Event.sign,
            side="kiosk",
            detail={"sha256": hashlib.sha256(png).hexdigest()},
            values={"signature_file": name},
        )
        return await self.case_json(who, case_id)

    async def rate(self, who: Principal, case_id: int, grade: int, comment: str) -> dict[str, Any]:
        if isinstance(grade, bool) or not isinstance(grade, int) or not 1 <= grade <= 5:
            raise InvalidInput.one("grade", "must be 1 (非常不满意) to 5 (非常满意)", grade)
        if len(comment) > 500:
            raise InvalidInput.one("comment", "must be at most 500 characters")
        if (m := await self._mirror(who, case_id)) is not None:
            return await self.tiers.forward(who, m, "rate", grade=grade, comment=comment)
        await self._move(
            who,
            case_id,
            Event.rate,
            side="kiosk",
            detail={"grade": grade},
            values={"rating": grade, "rating_comment": comment},
            then=Event.close,
        )
        return await self.case_json(who, case_id)

    async def upload(
        self, who: Principal, case_id: int, upload_id: str, kind: str, name: str, data: bytes
    ) -> dict[str, Any]:
        """Attach an image; the same ``upload_id`` again (a retry) returns the stored one."""
        if not upload_id or len(upload_id) > 64:
            raise InvalidInput.one("upload_id", "must be 1-64 characters")
        if kind not in ("face", "document"):
            raise InvalidInput.one("kind", "must be face or document", kind)
        if not name.strip() or len(name) > 200:
            raise InvalidInput.one("name", "must be 1-200 characters")
        limit = int(self.cfg.max_image_mb * 1024 * 1024)
        if len(data) > limit:
            raise InvalidInput.one("image", f"is larger than {self.cfg.max_image_mb:g} MB")
        media_type, width, height = image_info(data)
        if (mirror := await self._mirror(who, case_id)) is not None:
            return await self.tiers.upload(who, mirror, upload_id, kind, name, data)
        async with self._lock, self.audit.transaction() as s:
            case = await self._case(s, case_id)
            self._check_side(who, case, "kiosk")
            old = await s.scalar(
                select(Material).where(Material.case_id == case_id, Material.upload_id == upload_id)
            )
            if old is not None:
                return self._material_json(old)
            if case.state not in (State.created, State.identified, State.queued, *LIVE):
                raise Conflict(f"a case that is {case.state} takes no images")
            if kind == "document":
                # A new picture of a document the agent asked to recapture replaces it.
                await s.execute(
                    update(Material)
                    .where(
                        Material.case_id == case_id,
                        Material.name == name.strip(),
                        Material.status == "recapture",
                    )
                    .values(status="superseded")
                )
            ext = "jpg" if media_type == "image/jpeg" else "png"
            digest = hashlib.sha256(data).hexdigest()
            fname = self._store(case.number, f"{kind}-{digest[:16]}.{ext}", data)
            m = Material(
                case_id=case_id,
                upload_id=upload_id,
                kind=kind,
                name=name.strip(),
                file=fname,
                media_type=media_type,
                size=len(data),
                width=width,
                height=height,
                sha256=digest,
                uploaded_at=_now(),
                status="received",
            )
            s.add(m)
            await s.flush()
            self.audit.record(
                s,
                who,
                "servicedesk.material",
                case.number,
                "ok",
                {"id": m.id, "kind": kind, "name": m.name, "sha256": digest, "size": len(data)},
            )
            out = self._material_json(m)
        self._kick()
        return out

    # --- cases: the desk side ---------------------------------------------------------------

    async def accept(self, who: Principal, case_id: int | None) -> dict[str, Any]:
        """Take ``case_id``, or the next case of the agent's queues when None."""
        async with self.db.sessions() as s:
            agent = await self._agent(s, who)
            if case_id is None:
                waiting, groups = await self._waiting(s, who)
                nxt = next_case(self._queues_of(agent), waiting, groups)
                if nxt is None:
                    raise NotFound("no villager is waiting in your queues")
                case_id = nxt.id
        now = _now()
        await self._move(
            who,
            case_id,
            Event.accept,
            side="desk",
            values={
                "agent_user": who.username,
                "agent_seat": agent.seat_code,
                "accepted_at": now,
                "at_head": False,
            },
            first_accept=now,
        )
        return await self.case_json(who, case_id)

    async def verify(
        self, who: Principal, material_id: int, status: str, note: str
    ) -> dict[str, Any]:
        if status not in ("verified", "recapture"):
            raise InvalidInput.one("status", "must be verified or recapture", status)
        async with self._lock, self.audit.transaction() as s:
            m = await s.get(Material, material_id)
            if m is None:
                raise NotFound(f"material {material_id} not found")
            case = await self._case(s, m.case_id)
            self._check_side(who, case, "desk")
            if case.state not in LIVE:
                raise Conflict(f"a case that is {case.state} is not in a call")
            m.status = status
            m.note = note[:500]
            m.verified_by = who.username if status == "verified" else None
            m.verified_at = _now() if status == "verified" else None
            self.audit.record(
                s,
                who,
                f"servicedesk.material.{status}",
                case.number,
                "ok",
                {"id": m.id, "name": m.name, "note": m.note},
            )
            out = self._material_json(m)
        self._kick()
        return out

    async def check(self, who: Principal, case_id: int) -> dict[str, Any]:
        async with self.db.sessions() as s:
            docs = (
                await s.scalars(
                    select(Material).where(Material.case_id == case_id, Material.kind == "document")
                )
            ).all()
        if not docs:
            raise Conflict("no document image has been received yet")
        pending = [m.name for m in docs if m.status not in ("verified", "superseded")]
        if pending:
            raise Conflict(f"not verified yet: {', '.join(pending)}")
        await self._move(who, case_id, Event.check, side="desk", detail={"documents": len(docs)})
        return await self.case_json(who, case_id)

    async def submit(
        self, who: Principal, case_id: int, outcome: str, form: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Issue the result: check the item's form, render the PDF, move to submitted."""
        if not isinstance(outcome, str) or not outcome.strip() or len(outcome) > 2000:
            raise InvalidInput.one("outcome", "must be a text of 1-2000 characters")
        async with self.db.sessions() as s:
            case = await self._case(s, case_id)
            self._check_side(who, case, "desk")
            item = await s.get(Item, case.item_code)
            assert item is not None
            dep = await s.get(Department, item.department_code)
            docs = (
                await s.scalars(
                    select(Material).where(
                        Material.case_id == case_id, Material.status == "verified"
                    )
                )
            ).all()
        spec = json.loads(item.form)
        values: dict[str, str] = {}
        errors = []
        for f in spec:
            v = form.get(f["name"], "")
            v = "" if v is None else str(v).strip()
            if f.get("required") and not v:
                errors.append(f["name"])
            values[f["name"]] = v[:500]
        if errors:
            raise InvalidInput.one(f"form.{errors[0]}", "is required for this item")
        unknown = sorted(set(form) - {f["name"] for f in spec})
        if unknown:
            raise InvalidInput.one(f"form.{unknown[0]}", "is not a field of this item's form")
        signature = self._read(case.number, case.signature_file) if case.signature_file else None
        doc = pdf.ResultDoc(
            title=item.name,
            number=case.number,
            department=dep.name if dep else item.department_code,
            applicant=case.applicant_name,
            id_masked=masked(case.applicant_id),
            village=case.village,
            agent=who.username,
            outcome=outcome.strip(),
            issued_at=_now().astimezone().strftime("%Y-%m-%d %H:%M"),
            fields=[(f["label"], values[f["name"]]) for f in spec],
            materials=[m.name for m in docs if m.kind == "document"],
            signature_png=signature,
        )
        body = await asyncio.to_thread(pdf.render, doc)
        fname = self._store(case.number, "result.pdf", body)
        await self._move(
            who,
            case_id,
            Event.submit,
            side="desk",
            detail={"sha256": hashlib.sha256(body).hexdigest(), "outcome": outcome.strip()},
            values={
                "outcome": outcome.strip(),
                "form": json.dumps(values, ensure_ascii=False),
                "result_file": fname,
                "submitted_at": _now(),
            },
        )
        return await self.case_json(who, case_id)

    async def transfer(
        self, who: Principal, case_id: int, item_code: str | None, note: str
    ) -> dict[str, Any]:
        values: dict[str, Any] = {"agent_user": None, "agent_seat": None, "at_head": True}
        if item_code:
            async with self.db.sessions() as s:
                if await s.get(Item, item_code) is None:
                    raise InvalidInput.one("item_code", "no such item in the catalogue", item_code)
            values["item_code"] = item_code
        await self._move(
            who,
            case_id,
            Event.transfer,
            side="desk",
            detail={"to_item": item_code, "note": note[:500]},
            values=values,
        )
        return await self.case_json(who, case_id)

    async def escalate(self, who: Principal, case_id: int, note: str) -> dict[str, Any]:
        if not note.strip():
            raise InvalidInput.one("note", "say why and to whom the case is escalated")
        await self._move(
            who,
            case_id,
            Event.escalate,
            side="desk",
            detail={"note": note[:500]},
            values={"note": note[:500]},
        )
        return await self.case_json(who, case_id)

    async def hold(self, who: Principal, case_id: int) -> dict[str, Any]:
        await self._move(
            who,
            case_id,
            Event.hold,
            side="desk",
            values={"agent_user": None, "agent_seat": None, "at_head": True},
        )
        return await self.case_json(who, case_id)

    async def callback(self, who: Principal, case_id: int) -> dict[str, Any]:
        await self._move(who, case_id, Event.callback, side="desk-any")
        return await self.case_json(who, case_id)

    async def close(self, who: Principal, case_id: int) -> dict[str, Any]:
        await self._move(who, case_id, Event.close, side="any")
        return await self.case_json(who, case_id)

    async def requeue(self, case_id: int, reason: str) -> None:
        await self._move(
            SYSTEM,
            case_id,
            Event.requeue,
            side="system",
            detail={"reason": reason},
            values={"agent_user": None, "agent_seat": None, "at_head": True},
        )

    # --- the one way a case changes ---------------------------------------------------------

    async def _move(
        self,
        who: Who,
        case_id: int,
        event: Event,
        *,
        side: str,
        detail: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        then: Event | None = None,
        first_accept: datetime | None = None,
    ) -> None:
        async with self._lock, self.audit.transaction() as s:
            case = await self._case(s, case_id)
            self._check_side(who, case, side)
            if case.served_by is not None:
                raise Conflict(f"case {case.number} is served by node {case.served_by}")
            events = [event] if then is None else [event, then]
            state = State(case.state)
            seq = int(
                await s.scalar(
                    select(func.coalesce(func.max(CaseEvent.seq), 0)).where(
                        CaseEvent.case_id == case_id
                    )
                )
                or 0
            )
            vals = dict(values or {})
            if first_accept is not None and case.first_accepted_at is None:
                vals["first_accepted_at"] = first_accept
            for n, ev in enumerate(events):
                nxt = step(state, ev)
                now = _now()
                row = dict(vals) if n == 0 else {}
                row["state"] = nxt.value
                if nxt is State.closed:
                    row["closed_at"] = now
                res = await s.execute(
                    update(Case)
                    .where(Case.id == case_id, Case.state == state.value)
                    .values(**row)
                    .execution_options(synchronize_session=False)
                )
                if res.rowcount != 1:  # type: ignore[attr-defined]
                    raise Conflict(f"case {case.number} changed meanwhile; look again")
                seq += 1
                d = detail if n == 0 else {}
                s.add(
                    CaseEvent(
                        case_id=case_id,
                        seq=seq,
                        at=now,
                        event=ev.value,
                        from_state=state.value,
                        to_state=nxt.value,
                        actor=who.username,
                        detail=json.dumps(d or {}, ensure_ascii=False, sort_keys=True),
                    )
                )
                self.audit.record(
                    s,
                    who,
                    f"servicedesk.{ev.value}",
                    case.number,
                    "ok",
                    {"from": state.value, "to": nxt.value, **(d or {})},
                )
                state = nxt
        log.info(
            "case=%s event=%s state=%s by=%s", case.number, event.value, state.value, who.username
        )
        self._kick()
        self._spawn(self._follow_recording(case_id))

    def _check_side(self, who: Who, case: Case, side: str) -> None:
        """``kiosk``/``any``: the case's kiosk in scope; ``desk-any``: an agent too; ``desk``:
        the case's own agent (or one not yet taken); the system acts on any case."""
        if isinstance(who, Actor):
            return
        if not who.covers(case.kiosk_path):
            raise NotFound(f"case {case.id} not found")
        if side in ("kiosk", "any"):
            return
        if not who.has("admin", *AGENT_ROLES):
            raise Forbidden(f"needs role agent; you have {who.roles_text or 'none'}")
        mine = not case.agent_user or case.agent_user == who.username or who.has("admin")
        if side == "desk" and not mine:
            raise Forbidden(f"case {case.number} is served by {case.agent_user}")

    async def _case(self, s: AsyncSession, case_id: int) -> Case:
        case = await s.get(Case, case_id, populate_existing=True)
        if case is None:
            raise NotFound(f"case {case_id} not found")
        return case

    async def _load(self, case_id: int) -> Case:
        async with self.db.sessions() as s:
            return await self._case(s, case_id)

    # --- the call's recording -----------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    def _call_inputs(self, case: Case) -> tuple[Inputs, Awaitable[None] | None]:
        """The switch inputs of the call's two sides here: publications of this node; a kiosk of
        another node's through the fabric, held for the recording by the returned coroutine
        (which keeps trying until the kiosk publishes)."""
        kiosk, seat = case.kiosk_code, case.agent_seat
        held: dict[str, str | None] = {"video": f"{kiosk}/video", "audio": f"{kiosk}/audio"}
        fabric, node = self.ctx.fabric, case.kiosk_node
        hold = None
        if node is not None and fabric is not None:
            held = {"video": None, "audio": None}
            holder = f"servicedesk-{case.number}"

            async def hold_remote() -> None:
                while held["video"] is None or held["audio"] is None:
                    try:
                        for kind, stream in (("video", kiosk), ("audio", f"{kiosk}/audio")):
                            if held[kind] is None:
                                held[kind] = await fabric.acquire(
                                    stream, node, holder, SYSTEM.username
                                )
                    except VmeshError as e:
                        log.debug("case=%s kiosk not carried yet: %s", case.number, e)
                        await asyncio.sleep(1.0)

            hold = hold_remote()

        def inputs() -> dict[str, str | None]:
            return {
                "kiosk/video": held["video"],
                "kiosk/audio": held["audio"],
                "agent/video": f"{seat}/video" if seat else None,
                "agent/audio": f"{seat}/audio" if seat else None,
            }

        return inputs, hold

    async def _follow_recording(self, case_id: int) -> None:
        """Record a case's call while it is in a call (``RECORDED``); stop when it leaves it.
        Audited as ``servicedesk.recording.start`` / ``.stop`` (with the files) on the case."""
        async with self._recording_lock:
            try:
                case = await self._load(case_id)
                rec = self._recordings.get(case_id)
                media = self.ctx.media
                if case.state in RECORDED and rec is None and media is not None:
                    inputs, hold = self._call_inputs(case)
                    rec = CallRecording(case.number, media, self._call_folder(case.number), inputs)
                    await rec.start(hold)
                    self._recordings[case_id] = rec
                    await self.audit.write(
                        SYSTEM,
                        "servicedesk.recording.start",
                        case.number,
                        "ok",
                        {"kiosk": case.kiosk_code, "seat": case.agent_seat},
                    )
                elif case.state not in RECORDED and rec is not None:
                    del self._recordings[case_id]
                    await rec.stop()
                    if case.kiosk_node is not None and self.ctx.fabric is not None:
                        for stream in (case.kiosk_code, f"{case.kiosk_code}/audio"):
                            await self.ctx.fabric.release(stream, f"servicedesk-{case.number}")
                    await self.audit.write(
                        SYSTEM,
                        "servicedesk.recording.stop",
                        case.number,
                        "ok",
                        {"files": [f.name for f in rec.files()], "state": case.state},
                    )
                    self._kick()  # the desk lists the recording now
            except Exception:
                log.exception("case=%s call recording failed", case_id)

    def _call_folder(self, number: str) -> Path:
        return self.files / number / "call"

    def _recording_files(self, case: Case) -> list[Path]:
        rec = self._recordings.get(case.id)
        if rec is not None:
            return rec.files()
        folder = self._call_folder(case.number)
        try:
            return sorted(p for p in folder.iterdir() if RECORDING_NAME.match(p.name))
        except FileNotFoundError:
            return []

    def _recordings_json(self, case: Case) -> list[dict[str, Any]]:
        return [
            {
                "name": f.name,
                "size": f.stat().st_size,
                "url": f"/api/servicedesk/cases/{case.id}/recordings/{f.name}",
            }
            for f in self._recording_files(case)
        ]

    async def recording_file(self, who: Principal, case_id: int, name: str) -> Path:
        """One recording of the case's call (the desk side only), audited as
        ``servicedesk.recording.view``."""
        if not RECORDING_NAME.match(name):
            raise InvalidInput.one("name", "must be a name like 20261129T130210.mp4", name)
        case = await self._load(case_id)
        if not who.covers(case.kiosk_path):
            raise NotFound(f"case {case_id} not found")
        if not who.has("admin", *AGENT_ROLES):
            raise Forbidden(f"recordings are for the desk; you have {who.roles_text or 'none'}")
        for f in self._recording_files(case):
            if f.name == name:
                await self.audit.write(
                    who, "servicedesk.recording.view", case.number, "ok", {"file": name}
                )
                return f
        raise NotFound(f"case {case.number} has no recording {name}")

    # --- files ------------------------------------------------------------------------------

    def _store(self, number: str, name: str, data: bytes) -> str:
        folder = self.files / number
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / name, data, 0o640)
        return name

    def _read(self, number: str, name: str) -> bytes:
        return (self.files / number / name).read_bytes()

    async def material_file(self, who: Principal, material_id: int) -> tuple[bytes, str]:
        async with self.db.sessions() as s:
            m = await s.get(Material, material_id)
            case = None if m is None else await s.get(Case, m.case_id)
        if m is None or case is None or not who.covers(case.kiosk_path):
            raise NotFound(f"material {material_id} not found")
        return self._read(case.number, m.file), m.media_type

    async def result_file(self, who: Principal, case_id: int) -> tuple[bytes, str]:
        case = await self._load(case_id)
        if not who.covers(case.kiosk_path):
            raise NotFound(f"case {case_id} not found")
        if case.served_by is not None:
            return await self.tiers.result(who, case), case.number
        if not case.result_file:
            raise NotFound(f"case {case.number} has no result document yet")
        return self._read(case.number, case.result_file), case.number

    # --- reading ----------------------------------------------------------------------------

    @staticmethod
    def _material_json(m: Material) -> dict[str, Any]:
        return {
            "id": m.id,
            "kind": m.kind,
            "name": m.name,
            "media_type": m.media_type,
            "size": m.size,
            "width": m.width,
            "height": m.height,
            "sha256": m.sha256,
            "status": m.status,
            "note": m.note,
            "verified_by": m.verified_by,
            "uploaded_at": _iso(m.uploaded_at),
            "url": f"/api/servicedesk/materials/{m.id}/image",
        }

    async def case_json(self, who: Principal, case_id: int) -> dict[str, Any]:
        if (m := await self._mirror(who, case_id)) is not None:
            return await self.tiers.get(who, m)
        async with self.db.sessions() as s:
            case = await self._case(s, case_id)
            if not who.covers(case.kiosk_path):
                raise NotFound(f"case {case_id} not found")
            item = await s.get(Item, case.item_code)
            events = (
                await s.scalars(
                    select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq)
                )
            ).all()
            mats = (
                await s.scalars(
                    select(Material).where(Material.case_id == case_id).order_by(Material.id)
                )
            ).all()
            pos = await self._position(s, case)
        desk = who.has("admin", *AGENT_ROLES)
        return {
            "id": case.id,
            "number": case.number,
            "state": case.state,
            "item": cat.item_json(item) if item else {"code": case.item_code},
            "kiosk_code": case.kiosk_code,
            "village": case.village,
            "applicant_name": case.applicant_name,
            "applicant_id": case.applicant_id if desk else masked(case.applicant_id),
            "agent": case.agent_user,
            "agent_seat": case.agent_seat,
            "created_at": _iso(case.created_at),
            "enqueued_at": _iso(case.enqueued_at),
            "accepted_at": _iso(case.accepted_at),
            "submitted_at": _iso(case.submitted_at),
            "closed_at": _iso(case.closed_at),
            "outcome": case.outcome,
            "form": json.loads(case.form or "{}"),
            "rating": case.rating,
            "rating_comment": case.rating_comment,
            "signed": bool(case.signature_file),
            "result_url": f"/api/servicedesk/cases/{case.id}/result.pdf"
            if case.result_file
            else None,
            "note": case.note,
            **pos,
            "materials": [self._material_json(m) for m in mats],
            "recordings": self._recordings_json(case) if desk else [],
            "events": [
                {
                    "seq": e.seq,
                    "at": _iso(e.at),
                    "event": e.event,
                    "from": e.from_state,
                    "to": e.to_state,
                    "actor": e.actor,
                    "detail": json.loads(e.detail or "{}"),
                }
                for e in events
            ],
        }

    async def _position(self, s: AsyncSession, case: Case) -> dict[str, Any]:
        if case.state not in WAITING:
            return {"position": None, "expected_wait_minutes": None}
        snap = await self._snapshot(s)
        return snap["kiosk"].get(case.id, {"position": None, "expected_wait_minutes": None})

    async def _waiting(
        self, s: AsyncSession, who: Principal | None = None
    ) -> tuple[list[Waiting], dict[str, str]]:
        q = select(Case.id, Case.item_code, Case.enqueued_at, Case.at_head, Case.kiosk_path).where(
            Case.state.in_([st.value for st in WAITING]), Case.served_by.is_(None)
        )
        rows = (await s.execute(q)).all()
        groups = dict((await s.execute(select(Item.code, Item.agent_group))).all())
        waiting = [
            Waiting(r[0], r[1], _aware(r[2]) or _now(), bool(r[3]))
            for r in rows
            if who is None or who.covers(r[4])
        ]
        return waiting, groups

    async def _snapshot(self, s: AsyncSession) -> dict[str, Any]:
        """Positions and expected waits of every waiting case (one read for all kiosks)."""
        waiting, groups = await self._waiting(s)
        agents = [self._queues_of(a) for a in (await s.scalars(select(Agent))).all()]
        per_item = agents_per_item(agents, groups)
        target = dict((await s.execute(select(Item.code, Item.target_minutes))).all())
        pos = positions(waiting)
        return {
            "kiosk": {
                w.id: {
                    "position": pos[w.id],
                    "expected_wait_minutes": expected_wait(
                        pos[w.id], target.get(w.item_code, 10), per_item.get(w.item_code, 0)
                    ),
                }
                for w in waiting
            },
            "waiting": waiting,
            "groups": groups,
        }

    async def queues(self, who: Principal) -> dict[str, Any]:
        """The agent's queues, highest priority first, each in serving order."""
        async with self.db.sessions() as s:
            agent = await self._agent(s, who)
            aq = self._queues_of(agent)
            waiting, groups = await self._waiting(s, who)
            items = {i.code: i for i in (await s.scalars(select(Item))).all()}
            ids = [w.id for w in waiting]
            cases = (
                {c.id: c for c in (await s.scalars(select(Case).where(Case.id.in_(ids)))).all()}
                if ids
                else {}
            )
            mine = (
                await s.scalars(
                    select(Case).where(
                        Case.agent_user == who.username,
                        Case.state.in_([st.value for st in LIVE]),
                    )
                )
            ).all()
        now = _now()
        by_item: dict[str, list[Waiting]] = {}
        for w in waiting:
            if aq.priority_of(groups.get(w.item_code, "")) is not None:
                by_item.setdefault(w.item_code, []).append(w)
        out = []
        for code, ws in by_item.items():
            item = items[code]
            pos = positions(ws)
            out.append(
                {
                    "item": code,
                    "name": item.name,
                    "group": item.agent_group,
                    "priority": aq.priority_of(item.agent_group),
                    "cases": [
                        {
                            "id": w.id,
                            "number": cases[w.id].number,
                            "state": cases[w.id].state,
                            "village": cases[w.id].village,
                            "applicant_name": cases[w.id].applicant_name,
                            "position": pos[w.id],
                            "at_head": w.at_head,
                            "enqueued_at": _iso(w.enqueued_at),
                            "waiting_seconds": int((now - w.enqueued_at).total_seconds()),
                        }
                        for w in sorted(ws, key=lambda w: pos[w.id])
                    ],
                }
            )
        out.sort(key=lambda q: (q["priority"], q["item"]))
        return {
            "agent": who.username,
            "seat_code": agent.seat_code,
            "groups": dict(aq.groups),
            "queues": out,
            "current": [c.id for c in mine],
        }

    async def cases(
        self, who: Principal, state: str | None, limit: int, offset: int
    ) -> dict[str, Any]:
        async with self.db.sessions() as s:
            q = select(Case).where(Case.kiosk_path.startswith(who.scope_path))
            if state:
                q = q.where(Case.state == state)
            total = await s.scalar(select(func.count()).select_from(q.subquery()))
            rows = (await s.scalars(q.order_by(Case.id.desc()).limit(limit).offset(offset))).all()
        return {
            "total": total,
            "items": [
                {
                    "id": c.id,
                    "number": c.number,
                    "state": c.state,
                    "item_code": c.item_code,
                    "village": c.village,
                    "applicant_name": c.applicant_name,
                    "agent": c.agent_user,
                    "created_at": _iso(c.created_at),
                    "rating": c.rating,
                }
                for c in rows
            ],
        }

    async def may_watch(self, who: Principal, code: str) -> bool:
        """Whether ``who``'s kiosk is in a call with the agent whose seat is ``code``."""
        async with self.db.sessions() as s:
            row = await s.scalar(
                select(Case.kiosk_path).where(
                    Case.agent_seat == code, Case.state.in_([st.value for st in LIVE])
                )
            )
        return row is not None and who.covers(row)

    # --- live updates -----------------------------------------------------------------------

    def subscribe(self, sub: Subscriber) -> None:
        self._subs.add(sub)
        if sub.case_id is not None:
            self._cancel(("kiosk", sub.case_id))
        if sub.agent is not None:
            self._cancel(("agent", sub.agent))
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.create_task(self._push_loop(), name="servicedesk-push")
        self._kick()

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)
        if sub.case_id is not None and not any(x.case_id == sub.case_id for x in self._subs):
            self._later(
                ("kiosk", sub.case_id), self.cfg.kiosk_resume_seconds, lambda: self._kiosk_gone(sub)
            )
        if sub.agent is not None and not any(x.agent == sub.agent for x in self._subs):
            self._later(
                ("agent", sub.agent), self.cfg.agent_grace_seconds, lambda: self._agent_gone(sub)
            )

    def _later(
        self, key: tuple[str, object], delay: float, make: Callable[[], Awaitable[None]]
    ) -> None:
        self._cancel(key)

        async def run() -> None:
            await asyncio.sleep(delay)
            self._timers.pop(key, None)
            await make()

        self._timers[key] = asyncio.create_task(run(), name=f"servicedesk-{key[0]}-{key[1]}")

    def _cancel(self, key: tuple[str, object]) -> None:
        t = self._timers.pop(key, None)
        if t is not None:
            t.cancel()

    async def _kiosk_gone(self, sub: Subscriber) -> None:
        assert sub.case_id is not None
        await self._kiosk_gone_case(sub.case_id)

    async def _kiosk_gone_case(self, case_id: int) -> None:
        try:
            case = await self._load(case_id)
            if case.served_by is None and (case.state in WAITING or case.state in LIVE):
                await self.abandon(SYSTEM, case_id, "the kiosk page went away")
        except Exception:
            log.exception("case=%s abandoning after the kiosk left failed", case_id)

    async def _agent_gone(self, sub: Subscriber) -> None:
        async with self.db.sessions() as s:
            ids = (
                await s.scalars(
                    select(Case.id).where(
                        Case.agent_user == sub.agent, Case.state.in_([st.value for st in LIVE])
                    )
                )
            ).all()
        for cid in ids:
            try:
                await self.requeue(cid, f"the desk page of {sub.agent} went away")
            except Exception:
                log.exception("case=%s requeue after the agent left failed", cid)

    def _kick(self) -> None:
        self._changed.set()

    async def _push_loop(self) -> None:
        while self._subs:
            await self._changed.wait()
            self._changed.clear()
            try:
                await self._push_all()
            except Exception:
                log.exception("servicedesk live update failed")

    async def _push_all(self) -> None:
        subs = list(self._subs)
        if not subs:
            return
        async with self.db.sessions() as s:
            snap = await self._snapshot(s)
            ids = [x.case_id for x in subs if x.case_id is not None]
            cases = (
                {c.id: c for c in (await s.scalars(select(Case).where(Case.id.in_(ids)))).all()}
                if ids
                else {}
            )
            mats: dict[int, list[Material]] = {}
            if ids:
                for m in (await s.scalars(select(Material).where(Material.case_id.in_(ids)))).all():
                    mats.setdefault(m.case_id, []).append(m)
        for sub in subs:
            if sub.case_id is not None and sub.case_id in cases:
                c = cases[sub.case_id]
                if c.served_by is None:  # a mirror's updates come from its serving node
                    sub.queue.put_nowait(self._kiosk_msg(c, snap, mats.get(c.id, [])))
            elif sub.agent is not None:
                sub.queue.put_nowait({"type": "desk", "at": _now().isoformat()})

    @staticmethod
    def _kiosk_msg(c: Case, snap: dict[str, Any], mats: list[Material]) -> dict[str, Any]:
        """What a kiosk page is pushed about its case."""
        pos = snap["kiosk"].get(c.id, {"position": None, "expected_wait_minutes": None})
        return {
            "type": "kiosk",
            "id": c.id,
            "number": c.number,
            "state": c.state,
            "agent_seat": c.agent_seat,
            "agent": c.agent_user,
            **pos,
            "result_url": f"/api/servicedesk/cases/{c.id}/result.pdf" if c.result_file else None,
            "materials": [
                {"id": m.id, "name": m.name, "kind": m.kind, "status": m.status, "note": m.note}
                for m in sorted(mats, key=lambda m: m.id)
            ],
            "at": _now().isoformat(),
        }

    async def stop(self) -> None:
        await self.tiers.stop()
        for key in list(self._timers):
            self._cancel(key)
        for t in list(self._background):
            t.cancel()
        for rec in list(self._recordings.values()):
            with contextlib.suppress(Exception):
                await rec.stop()
        self._recordings.clear()
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher


def data_path(ctx: NodeContext) -> Path:
    return ctx.config.node.data_dir / "servicedesk"
