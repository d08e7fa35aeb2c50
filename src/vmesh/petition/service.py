"""The petitions of one node: booking, triage, the session (a conference, possibly hosted at
another node), the clerk's record and its signed PDF, the case with its deadline, and the bus
service other nodes call.

The petition lives at the node where it was booked (the petitioner's village or township room is
an endpoint of that node's directory). Every transition goes through ``PetitionService._move``:
``vmesh.petition.core.step`` checks it, the row is updated only if still in the state it was read
in, the petition's next ``pt_events`` row and the audit row ``petition.<event>`` (with the petition
number) are written, all in one transaction.

Who may do what: the **petitioner side** (a user whose scope covers the room) books, signs the
record, rates and withdraws; **petition staff** (role ``petition`` or ``admin``, the room in
scope) approve or reject, start and end sessions, write the record (the clerk), assign, extend,
hold the follow-up and answer. Officials are named by triage as ``{username, node, venue}``: the
first one's venue is the session's main venue and its node hosts the conference (its user chairs
it); the petitioner's room and the other officials' venues are sub-venues. The conference records
its programme (``recording``), so the record's paragraph offsets point into that recording.

Bus service ``vmesh.<node>.rpc.petition`` (``on_rpc``):

    -> {"op": "host", "origin", "petition", "title", "main", "venues", "chair"}
    <- {"conference": 7, "started_at": "..."}     at the host: the session's conference
    -> {"op": "end", "origin", "conference"}       <- {"ended": true}
    -> {"op": "session", "petition", "node", "username"}
    <- the session as an official's node shows it (evidence list, record, conference, venue)
    -> {"op": "evidence", "petition", "evidence", "offset", "node", "username"}
    <- {"data": base64 chunk, "media_type", "size", "next": offset or null}

Public: ``PetitionService``, ``CATEGORIES``, ``MAX_EVIDENCE``, ``MAX_EVIDENCE_BYTES``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vmesh.audit.log import Actor
from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import Conflict, ErrorList, FieldError, Forbidden, InvalidInput, NotFound
from vmesh.node.context import NodeContext
from vmesh.node.files import write_atomic
from vmesh.petition import core
from vmesh.petition.core import Event, State
from vmesh.petition.models import Evidence, Petition, PetitionEvent, RecordParagraph
from vmesh.petition.record import RecordDoc, render
from vmesh.servicedesk.idcard import IdCard, masked

# The service desk's time helpers and image check: one way to read stored times and images.
from vmesh.servicedesk.service import _aware, _iso, _now, image_info

log = logging.getLogger(__name__)

STAFF_ROLES = ("petition", "admin")
ROOM_KINDS = ("service_room", "conference_terminal")
CATEGORIES = {
    "request": "求决",
    "suggestion": "建议",
    "complaint": "揭发控告",
    "appeal": "申诉",
    "consultation": "咨询",
    "other": "其他",
}
MAX_EVIDENCE = 8
MAX_EVIDENCE_BYTES = 10 * 1024 * 1024
MAX_OFFICIALS = 6
CHUNK = 256 * 1024  # evidence over the bus, base64 below NATS's 1 MB message limit
Who = Principal | Actor


@dataclass(frozen=True)
class Upload:
    """An evidence file as the client sent it."""

    name: str
    data: bytes


def evidence_type(index: int, up: Upload) -> str:
    """The media type of an evidence file; ``InvalidInput`` naming ``evidence[i]`` otherwise."""
    field = f"evidence[{index}]"
    if not up.name.strip() or len(up.name) > 200:
        raise InvalidInput.one(f"{field}.name", "must be 1-200 characters", up.name[:50])
    if not up.data:
        raise InvalidInput.one(field, "is empty", up.name)
    if len(up.data) > MAX_EVIDENCE_BYTES:
        mb = MAX_EVIDENCE_BYTES // (1024 * 1024)
        raise InvalidInput.one(field, f"is larger than {mb} MB", up.name)
    if up.data.startswith(b"%PDF-"):
        if b"%%EOF" not in up.data[-1024:]:
            raise InvalidInput.one(field, "is a truncated PDF (no %%EOF at its end)", up.name)
        return "application/pdf"
    try:
        return image_info(up.data)[0]
    except InvalidInput:
        raise InvalidInput.one(field, "must be a JPEG or PNG image or a PDF", up.name) from None


def parse_officials(doc: object) -> list[dict[str, str]]:
    """Triage's officials: ``[{username, node, venue}]``, at least one; each bad field named."""
    errs = ErrorList()
    if not isinstance(doc, list) or not doc:
        raise InvalidInput.one("officials", "must list at least one official")
    if len(doc) > MAX_OFFICIALS:
        raise InvalidInput.one("officials", f"at most {MAX_OFFICIALS} officials", len(doc))
    out = []
    for i, o in enumerate(doc):
        if not isinstance(o, dict):
            errs.add(FieldError(f"officials[{i}]", "must be an object {username, node, venue}"))
            continue
        u = o.get("username")
        if not isinstance(u, str) or not u.strip() or len(u) > 64:
            errs.add(FieldError(f"officials[{i}].username", "must be 1-64 characters"))
        for key in ("node", "venue"):
            v = o.get(key)
            if not (isinstance(v, str) and len(v) == 20 and v.isdigit()):
                errs.add(FieldError(f"officials[{i}].{key}", "must be a 20-digit code", str(v)))
        out.append(
            {"username": str(u).strip(), "node": str(o.get("node")), "venue": str(o.get("venue"))}
        )
    errs.raise_if_any("triage refused")
    venues = [o["venue"] for o in out]
    if len(set(venues)) != len(venues):
        raise InvalidInput.one("officials", "two officials share a venue; list each venue once")
    return out


class PetitionService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.audit = ctx.audit
        self.node = ctx.config.node.code
        self.division = self.node[:6]
        self.files = ctx.config.node.data_dir / "petition"
        self._lock = asyncio.Lock()
        self._rpc: Any = None

    # --- booking ----------------------------------------------------------------------------

    async def book(
        self,
        who: Principal,
        room_code: str,
        card: IdCard,
        category: str,
        subject: str,
        uploads: Sequence[Upload],
    ) -> dict[str, Any]:
        """A new petition with its evidence: all of it, or nothing (rows and files)."""
        errs = ErrorList()
        if category not in CATEGORIES:
            errs.add(FieldError("category", "must be one of " + ", ".join(CATEGORIES), category))
        if not subject.strip() or len(subject) > 2000:
            errs.add(FieldError("subject", "must be a text of 1-2000 characters"))
        if len(uploads) > MAX_EVIDENCE:
            errs.add(FieldError("evidence", f"at most {MAX_EVIDENCE} files", str(len(uploads))))
        types: list[str] = []
        for i, up in enumerate(uploads[:MAX_EVIDENCE]):
            try:
                types.append(evidence_type(i, up))
            except InvalidInput as e:
                for fe in e.errors:
                    errs.add(fe)
        errs.raise_if_any("the petition was not booked")
        folder: Path | None = None
        try:
            async with self._lock, self.audit.transaction() as s:
                room = await s.scalar(select(Entry).where(Entry.code == room_code))
                if room is None or not who.covers(room.path):
                    raise InvalidInput.one("room_code", "no such room in your scope", room_code)
                if room.kind not in ROOM_KINDS:
                    raise InvalidInput.one(
                        "room_code", f"{room.name} is a {room.kind}, not a video room", room_code
                    )
                now = _now()
                number = await self._next_number(s, now)
                p = Petition(
                    number=number,
                    state=State.booked.value,
                    room_code=room_code,
                    room_path=room.path,
                    room_name=room.name,
                    booked_by=who.username,
                    petitioner_name=card.name,
                    petitioner_id=card.id_number,
                    category=category,
                    subject=subject.strip(),
                    created_at=now,
                )
                s.add(p)
                await s.flush()
                folder = self.files / number
                folder.mkdir(parents=True, exist_ok=True)
                names = []
                for i, (up, mt) in enumerate(zip(uploads, types, strict=True)):
                    digest = hashlib.sha256(up.data).hexdigest()
                    ext = {"application/pdf": "pdf", "image/png": "png"}.get(mt, "jpg")
                    fname = f"evidence-{i + 1}-{digest[:12]}.{ext}"
                    write_atomic(folder / fname, up.data, 0o640)
                    s.add(
                        Evidence(
                            petition_id=p.id,
                            name=up.name.strip(),
                            file=fname,
                            media_type=mt,
                            size=len(up.data),
                            sha256=digest,
                        )
                    )
                    names.append(up.name.strip())
                s.add(
                    PetitionEvent(
                        petition_id=p.id,
                        seq=1,
                        at=now,
                        event="book",
                        from_state="",
                        to_state=State.booked.value,
                        actor=who.username,
                        detail=json.dumps(
                            {"category": category, "evidence": names}, ensure_ascii=False
                        ),
                    )
                )
                self.audit.record(
                    s,
                    who,
                    "petition.book",
                    number,
                    "ok",
                    {"room": room_code, "id": masked(card.id_number), "evidence": len(names)},
                )
                pid = p.id
        except BaseException:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)  # nothing half-written
            raise
        return await self.get(who, pid)

    async def _next_number(self, s: AsyncSession, now: datetime) -> str:
        prefix = core.petition_number(self.division, now.date(), 1)[:-5]
        last = await s.scalar(
            select(func.max(Petition.number)).where(Petition.number.like(f"{prefix}%"))
        )
        return core.petition_number(self.division, now.date(), int(last[-5:]) + 1 if last else 1)

    # --- triage -----------------------------------------------------------------------------

    async def approve(
        self,
        who: Principal,
        pid: int,
        reason: str,
        scheduled_at: datetime,
        officials: object,
        *,
        again: bool = False,
    ) -> dict[str, Any]:
        """Approve (or with ``again``, reschedule): the session's time and officials."""
        offs = parse_officials(officials)
        when = _aware(scheduled_at)
        assert when is not None
        await self._move(
            who,
            pid,
            Event.reschedule if again else Event.approve,
            staff=True,
            detail={"reason": reason[:500], "scheduled_at": when.isoformat(), "officials": offs},
            values={
                "triage_by": who.username,
                "triage_reason": reason[:500],
                "scheduled_at": when,
                "officials": json.dumps(offs),
            },
        )
        return await self.get(who, pid)

    async def reject(self, who: Principal, pid: int, reason: str) -> dict[str, Any]:
        if not reason.strip():
            raise InvalidInput.one("reason", "say why the petition is not received")
        await self._move(
            who,
            pid,
            Event.reject,
            staff=True,
            detail={"reason": reason[:500]},
            values={"triage_by": who.username, "triage_reason": reason[:500], "closed_at": _now()},
        )
        return await self.get(who, pid)

    async def withdraw(self, who: Principal, pid: int) -> dict[str, Any]:
        await self._move(who, pid, Event.withdraw, staff=False, values={"closed_at": _now()})
        return await self.get(who, pid)

    # --- the session --------------------------------------------------------------------------

    async def _host_session(self, p: Petition, title: str) -> tuple[str, int, str]:
        """Create the session's conference at its host; (host, conference id, started_at)."""
        offs = json.loads(p.officials)
        host = offs[0]["node"]
        body = {
            "op": "host",
            "origin": self.node,
            "petition": p.id,
            "title": title,
            "main": offs[0]["venue"],
            "venues": [o["venue"] for o in offs[1:]] + [p.room_code],
            "chair": offs[0]["username"],
        }
        res = await self._call(host, body)
        return host, int(res["conference"]), str(res["started_at"])

    async def _call(self, node: str, body: dict[str, Any]) -> dict[str, Any]:
        if node == self.node:
            return await self.on_rpc(body)
        fed = self.ctx.federation
        bus = fed.bus if fed is not None else None
        if bus is None:
            raise Conflict(f"node {node} hosts the session but this node has no federation bus")
        res = await bus.call(node, "petition", body, timeout=15.0)
        return dict(res)

    async def _session(self, who: Principal, pid: int, event: Event, title: str) -> None:
        """``start`` or ``follow_up``: the session's conference at its host, then the move."""
        p = await self._staff_row(who, pid)
        core.step(p.state, event)
        host, conf, started = await self._host_session(p, f"{title} {p.number}")
        if event == Event.start:
            values = {
                "host_node": host,
                "conference_id": conf,
                "session_started_at": datetime.fromisoformat(started),
            }
        else:
            values = {"followup_conference_id": conf}
        await self._move(
            who, pid, event, staff=True, detail={"host": host, "conference": conf}, values=values
        )

    async def start(self, who: Principal, pid: int) -> dict[str, Any]:
        await self._session(who, pid, Event.start, "远程接访")
        return await self.get(who, pid)

    async def end(self, who: Principal, pid: int) -> dict[str, Any]:
        p = await self._staff_row(who, pid)
        core.step(p.state, Event.end)
        await self._end_conference(p.host_node, p.conference_id)
        await self._move(who, pid, Event.end, staff=True, values={"session_ended_at": _now()})
        return await self.get(who, pid)

    async def _end_conference(self, host: str | None, conf: int | None) -> None:
        if host and conf:
            await self._call(host, {"op": "end", "origin": self.node, "conference": conf})

    async def add_paragraph(self, who: Principal, pid: int, text: str) -> dict[str, Any]:
        """The clerk's next paragraph, timed against the session's recording."""
        if not isinstance(text, str) or not text.strip() or len(text) > 4000:
            raise InvalidInput.one("text", "must be a text of 1-4000 characters")
        async with self._lock, self.audit.transaction() as s:
            p = await self._row(s, pid)
            self._check(who, p, staff=True)
            if p.state != State.in_session:
                raise Conflict(
                    f"the record is written during the session; the petition is {p.state}"
                )
            now = _now()
            started = _aware(p.session_started_at) or now
            seq = (
                await s.scalar(
                    select(func.max(RecordParagraph.seq)).where(RecordParagraph.petition_id == pid)
                )
                or 0
            ) + 1
            offset = max(0, int((now - started).total_seconds()))
            s.add(
                RecordParagraph(
                    petition_id=pid,
                    seq=seq,
                    at=now,
                    offset_seconds=offset,
                    clerk=who.username,
                    text=text.strip(),
                )
            )
            self.audit.record(
                s, who, "petition.record", p.number, "ok", {"seq": seq, "offset": offset}
            )
        return await self.get(who, pid)

    async def sign(self, who: Principal, pid: int, png: bytes) -> dict[str, Any]:
        """The petitioner signs the record: the PDF is rendered with the signature, then moved."""
        kind, _w, _h = image_info(png)
        if kind != "image/png":
            raise InvalidInput.one("image", "a signature must be a PNG")
        async with self.db.sessions() as s:
            p = await self._row(s, pid)
            self._check(who, p, staff=False)
            core.step(p.state, Event.sign)
            paras = await self._paragraphs(s, pid)
        if not paras:
            raise Conflict("the record has no paragraph to sign")
        doc = RecordDoc(
            number=p.number,
            petitioner=p.petitioner_name,
            id_masked=masked(p.petitioner_id),
            room=p.room_name,
            category=CATEGORIES.get(p.category, p.category),
            subject=p.subject,
            officials=[o["username"] for o in json.loads(p.officials)],
            session=f"{p.host_node} / {p.conference_id}",
            started_at=_local(p.session_started_at),
            paragraphs=[(r.offset_seconds, r.clerk, r.text) for r in paras],
            signature_png=png,
            signed_at=_local(_now()),
        )
        body = await asyncio.to_thread(render, doc)
        folder = self.files / p.number
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "signature.png", png, 0o640)
        write_atomic(folder / "record.pdf", body, 0o640)
        await self._move(
            who,
            pid,
            Event.sign,
            staff=False,
            detail={"sha256": hashlib.sha256(body).hexdigest(), "paragraphs": len(paras)},
            values={"signature_file": "signature.png", "record_file": "record.pdf"},
        )
        return await self.get(who, pid)

    # --- the case -----------------------------------------------------------------------------

    async def assign(self, who: Principal, pid: int, department: str) -> dict[str, Any]:
        if not isinstance(department, str) or not department.strip() or len(department) > 100:
            raise InvalidInput.one("department", "must be a department name of 1-100 characters")
        now = _now()
        due = core.deadline(now)
        await self._move(
            who,
            pid,
            Event.assign,
            staff=True,
            detail={"department": department.strip(), "due_at": due.isoformat()},
            values={"department": department.strip(), "assigned_at": now, "due_at": due},
        )
        return await self.get(who, pid)

    async def extend(self, who: Principal, pid: int, reason: str) -> dict[str, Any]:
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput.one("reason", "an extension needs a reason (the petitioner is told)")
        async with self.db.sessions() as s:
            p = await self._row(s, pid)
        core.step(p.state, Event.extend)
        due = core.extended(_aware(p.due_at) or _now(), p.extensions)
        await self._move(
            who,
            pid,
            Event.extend,
            staff=True,
            detail={"reason": reason.strip()[:500], "due_at": due.isoformat()},
            values={
                "due_at": due,
                "extensions": p.extensions + 1,
                "extension_reason": reason[:500],
            },
            guard={"extensions": p.extensions},
        )
        return await self.get(who, pid)

    async def follow_up(self, who: Principal, pid: int) -> dict[str, Any]:
        """The follow-up session (回访): a new conference with the same parties."""
        await self._session(who, pid, Event.follow_up, "回访")
        return await self.get(who, pid)

    async def answer(self, who: Principal, pid: int, outcome: str) -> dict[str, Any]:
        if not isinstance(outcome, str) or not outcome.strip() or len(outcome) > 4000:
            raise InvalidInput.one("outcome", "must be a text of 1-4000 characters")
        p = await self._staff_row(who, pid)
        core.step(p.state, Event.answer)
        await self._end_conference(p.host_node, p.followup_conference_id)
        await self._move(
            who,
            pid,
            Event.answer,
            staff=True,
            detail={"outcome": outcome.strip()[:500]},
            values={"outcome": outcome.strip()},
        )
        return await self.get(who, pid)

    async def rate(self, who: Principal, pid: int, grade: object, comment: str) -> dict[str, Any]:
        if isinstance(grade, bool) or not isinstance(grade, int) or not 1 <= grade <= 5:
            raise InvalidInput.one("grade", "must be 1 (非常不满意) to 5 (非常满意)", grade)
        if len(comment) > 500:
            raise InvalidInput.one("comment", "must be at most 500 characters")
        await self._move(
            who,
            pid,
            Event.rate,
            staff=False,
            detail={"grade": grade},
            values={"rating": grade, "rating_comment": comment},
            then=Event.close,
        )
        return await self.get(who, pid)

    async def close(self, who: Principal, pid: int) -> dict[str, Any]:
        await self._move(who, pid, Event.close, staff=True, values={"closed_at": _now()})
        return await self.get(who, pid)

    # --- the one way a petition changes -----------------------------------------------------

    async def _move(
        self,
        who: Who,
        pid: int,
        event: Event,
        *,
        staff: bool,
        detail: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        guard: dict[str, Any] | None = None,
        then: Event | None = None,
    ) -> None:
        async with self._lock, self.audit.transaction() as s:
            p = await self._row(s, pid)
            self._check(who, p, staff=staff)
            steps = [event] if then is None else [event, then]
            state = State(p.state)
            for ev in steps:
                nxt = core.step(state, ev)
                vals = dict(values or {}) if ev == event else {}
                if nxt in core.FINAL:
                    vals.setdefault("closed_at", _now())
                q = update(Petition).where(Petition.id == pid, Petition.state == state.value)
                for k, v in (guard or {}).items():
                    q = q.where(getattr(Petition, k) == v)
                res = await s.execute(q.values(state=nxt.value, **vals))
                if res.rowcount != 1:  # type: ignore[attr-defined]
                    raise Conflict(f"petition {p.number} changed meanwhile; reload it")
                seq = (
                    await s.scalar(
                        select(func.max(PetitionEvent.seq)).where(PetitionEvent.petition_id == pid)
                    )
                    or 0
                ) + 1
                d = (detail or {}) if ev == event else {}
                s.add(
                    PetitionEvent(
                        petition_id=pid,
                        seq=seq,
                        at=_now(),
                        event=ev.value,
                        from_state=state.value,
                        to_state=nxt.value,
                        actor=who.username,
                        detail=json.dumps(d, ensure_ascii=False, default=str),
                    )
                )
                self.audit.record(
                    s, who, f"petition.{ev.value}", p.number, "ok", {"to": nxt.value, **d}
                )
                state = nxt

    async def _row(self, s: AsyncSession, pid: int) -> Petition:
        p = await s.get(Petition, pid)
        if p is None:
            raise NotFound(f"petition {pid} not found")
        return p

    def _check(self, who: Who, p: Petition, *, staff: bool) -> None:
        if isinstance(who, Actor):
            return
        if not who.covers(p.room_path):
            raise NotFound(f"petition {p.id} not found")
        if staff and not who.has(*STAFF_ROLES):
            raise Forbidden(
                f"this needs role petition (petition staff); you have {who.roles_text or 'none'}"
            )

    async def _staff_row(self, who: Principal, pid: int) -> Petition:
        async with self.db.sessions() as s:
            p = await self._row(s, pid)
        self._check(who, p, staff=True)
        return p

    async def _paragraphs(self, s: AsyncSession, pid: int) -> list[RecordParagraph]:
        q = select(RecordParagraph).where(RecordParagraph.petition_id == pid)
        return list((await s.scalars(q.order_by(RecordParagraph.seq))).all())

    # --- reading ----------------------------------------------------------------------------

    async def get(self, who: Principal, pid: int) -> dict[str, Any]:
        async with self.db.sessions() as s:
            p = await self._row(s, pid)
            self._check(who, p, staff=False)
            return await self._json(s, p, full_id=who.has(*STAFF_ROLES))

    async def _json(self, s: AsyncSession, p: Petition, *, full_id: bool) -> dict[str, Any]:
        events = (
            await s.scalars(
                select(PetitionEvent)
                .where(PetitionEvent.petition_id == p.id)
                .order_by(PetitionEvent.seq)
            )
        ).all()
        ev = (
            await s.scalars(
                select(Evidence).where(Evidence.petition_id == p.id).order_by(Evidence.id)
            )
        ).all()
        paras = await self._paragraphs(s, p.id)
        return {
            **_summary(p),
            "node": self.node,
            "petitioner_id": p.petitioner_id if full_id else masked(p.petitioner_id),
            "room_code": p.room_code,
            "booked_by": p.booked_by,
            "triage_by": p.triage_by,
            "triage_reason": p.triage_reason,
            "officials": json.loads(p.officials),
            "host_node": p.host_node,
            "conference_id": p.conference_id,
            "followup_conference_id": p.followup_conference_id,
            "session_started_at": _iso(p.session_started_at),
            "session_ended_at": _iso(p.session_ended_at),
            "recording": f"/api/conferences/{p.conference_id}/recordings"
            if p.conference_id
            else None,
            "record_url": f"/api/petition/petitions/{p.id}/record.pdf" if p.record_file else None,
            "extension_reason": p.extension_reason,
            "outcome": p.outcome,
            "rating_comment": p.rating_comment,
            "allowed": [e.value for e in core.allowed(State(p.state))],
            "evidence": [_evidence_json(p.id, e) for e in ev],
            "record": [
                {
                    "seq": r.seq,
                    "at": _iso(r.at),
                    "offset_seconds": r.offset_seconds,
                    "clerk": r.clerk,
                    "text": r.text,
                }
                for r in paras
            ],
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

    async def list(
        self, who: Principal, state: str | None, overdue: bool, limit: int, offset: int
    ) -> dict[str, Any]:
        now = _now()
        async with self.db.sessions() as s:
            q = select(Petition).where(Petition.room_path.startswith(who.scope_path))
            if state:
                q = q.where(Petition.state == state)
            if overdue:
                q = q.where(
                    Petition.state.in_([x.value for x in core.OPEN_CASE]), Petition.due_at < now
                )
            total = await s.scalar(select(func.count()).select_from(q.subquery()))
            rows = (
                await s.scalars(q.order_by(Petition.id.desc()).limit(limit).offset(offset))
            ).all()
        return {"total": total, "items": [_summary(p, now) for p in rows]}

    async def evidence_file(self, who: Principal, pid: int, eid: int) -> tuple[bytes, str, str]:
        async with self.db.sessions() as s:
            p = await self._row(s, pid)
            self._check(who, p, staff=False)
            e = await s.get(Evidence, eid)
        if e is None or e.petition_id != pid:
            raise NotFound(f"evidence {eid} of petition {pid} not found")
        return (self.files / p.number / e.file).read_bytes(), e.media_type, e.name

    async def record_pdf(self, who: Principal, pid: int) -> tuple[bytes, str]:
        async with self.db.sessions() as s:
            p = await self._row(s, pid)
        self._check(who, p, staff=False)
        if not p.record_file:
            raise NotFound(f"petition {p.number} has no signed record yet")
        return (self.files / p.number / p.record_file).read_bytes(), p.number

    # --- other nodes --------------------------------------------------------------------------

    async def remote(self, who: Principal, origin: str, pid: int) -> dict[str, Any]:
        """The session of petition ``pid`` of node ``origin`` as ``who`` (an official) sees it."""
        body = {"op": "session", "petition": pid, "node": self.node, "username": who.username}
        return {**await self._call(origin, body), "here": self.node}

    async def remote_evidence(
        self, who: Principal, origin: str, pid: int, eid: int
    ) -> tuple[bytes, str]:
        parts: list[bytes] = []
        offset: int | None = 0
        media_type = "application/octet-stream"
        while offset is not None:
            res = await self._call(
                origin,
                {
                    "op": "evidence",
                    "petition": pid,
                    "evidence": eid,
                    "offset": offset,
                    "node": self.node,
                    "username": who.username,
                },
            )
            parts.append(base64.b64decode(res["data"]))
            media_type = str(res["media_type"])
            offset = res["next"]
        return b"".join(parts), media_type

    async def on_rpc(self, body: dict[str, Any]) -> dict[str, Any]:
        op = body.get("op")
        if op == "host":
            return await self._rpc_host(body)
        if op == "end":
            return await self._rpc_end(body)
        if op in ("session", "evidence"):
            return await self._rpc_session(body)
        raise InvalidInput.one("op", "must be host, end, session or evidence", op)

    def _node_principal(self, origin: object) -> Principal:
        # The conference is created on behalf of the petition's node; the host's conference store
        # still checks every venue (its own directory or its catalogue) and the chair.
        return Principal(
            user_id=0,
            username=f"node:{origin}",
            roles=frozenset({"chair"}),
            scope_code=self.node,
            scope_path="/",
        )

    async def _rpc_host(self, body: dict[str, Any]) -> dict[str, Any]:
        from vmesh.conference.api import service_of
        from vmesh.conference.store import ConferenceSpec

        svc = service_of(self.ctx)
        spec = ConferenceSpec(
            title=str(body.get("title") or ""),
            main=str(body.get("main")),
            venues=[str(v) for v in body.get("venues") or []],
            chairs=[str(body.get("chair"))],
            starts_at=None,
            recording=True,
            layout="1+1" if len(body.get("venues") or []) <= 2 else "2x2",
        )
        c = await svc.store.create(self._node_principal(body.get("origin")), spec)
        return {"conference": c.id, "started_at": _iso(c.started_at) or _now().isoformat()}

    async def _rpc_end(self, body: dict[str, Any]) -> dict[str, Any]:
        from vmesh.conference.api import service_of

        svc = service_of(self.ctx)
        conf = body.get("conference")
        if not isinstance(conf, int):
            raise InvalidInput.one("conference", "must be a conference id", conf)
        who = self._node_principal(body.get("origin"))
        c = await svc.store.get(conf)
        if c.created_by != who.username:
            raise Forbidden(f"conference {conf} was not created for node {body.get('origin')}")
        if c.status != "ended":
            await svc.store.set_status(who, conf, "ended")
            await svc.end(conf, "the petition session ended")
        return {"ended": True}

    async def _rpc_session(self, body: dict[str, Any]) -> dict[str, Any]:
        pid = body.get("petition")
        if not isinstance(pid, int):
            raise InvalidInput.one("petition", "must be a petition id", pid)
        async with self.db.sessions() as s:
            p = await s.get(Petition, pid)
            mine = [
                o
                for o in (json.loads(p.officials) if p else [])
                if o["node"] == body.get("node") and o["username"] == body.get("username")
            ]
            if p is None or not mine:
                raise NotFound(f"petition {pid} has no official {body.get('username')} there")
            if body.get("op") == "evidence":
                e = await s.get(Evidence, body.get("evidence"))
                if e is None or e.petition_id != pid:
                    raise NotFound(f"evidence {body.get('evidence')} of petition {pid} not found")
                off = body.get("offset")
                if not isinstance(off, int) or off < 0:
                    raise InvalidInput.one("offset", "must be an integer ≥ 0", off)
                data = (self.files / p.number / e.file).read_bytes()
                nxt = off + CHUNK
                return {
                    "data": base64.b64encode(data[off:nxt]).decode(),
                    "media_type": e.media_type,
                    "size": len(data),
                    "next": nxt if nxt < len(data) else None,
                }
            doc = await self._json(s, p, full_id=False)
        doc["origin"] = self.node
        doc["venue"] = mine[0]["venue"]
        conf = doc["followup_conference_id"] if p.state == State.follow_up else p.conference_id
        doc["session_conference"] = conf
        doc["evidence"] = [
            {**e, "url": f"/api/petition/remote/{self.node}/{pid}/evidence/{e['id']}"}
            for e in doc["evidence"]
        ]
        return doc


def _local(t: datetime | None) -> str:
    t = _aware(t)
    return "" if t is None else t.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _evidence_json(pid: int, e: Evidence) -> dict[str, Any]:
    return {
        "id": e.id,
        "name": e.name,
        "media_type": e.media_type,
        "size": e.size,
        "sha256": e.sha256,
        "url": f"/api/petition/petitions/{pid}/evidence/{e.id}",
    }


def _summary(p: Petition, now: datetime | None = None) -> dict[str, Any]:
    return {
        "id": p.id,
        "number": p.number,
        "state": p.state,
        "category": p.category,
        "subject": p.subject,
        "room": p.room_name,
        "petitioner_name": p.petitioner_name,
        "created_at": _iso(p.created_at),
        "scheduled_at": _iso(p.scheduled_at),
        "department": p.department,
        "assigned_at": _iso(p.assigned_at),
        "due_at": _iso(p.due_at),
        "extensions": p.extensions,
        "rating": p.rating,
        "overdue": core.overdue(p.state, _aware(p.due_at), now or _now()),
    }
