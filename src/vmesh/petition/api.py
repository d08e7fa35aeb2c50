"""``/api/petition/...``: booking (multipart, with evidence), triage, the session, the clerk's
record, signing, the case (assign, extend, follow-up, answer, rating), files, and an official's
view of a petition of another node.

    POST /api/petition/petitions   multipart: room_code, category, subject, card (JSON of the ID
                                   reader, as the service desk reads it), evidence (0-8 files:
                                   JPEG, PNG or PDF, ≤ 10 MB each)      -> 201 the petition
    GET  /api/petition/petitions?state=&overdue=true                  -> {total, items}
    GET  /api/petition/petitions/{id}                                  -> the petition
    POST …/{id}/approve {reason, scheduled_at, officials: [{username, node, venue}]}
    POST …/{id}/reschedule {as approve}          another time or other officials (scheduled)
    POST …/{id}/reject {reason} | /withdraw | /start | /end | /close
    POST …/{id}/record {text}                    the clerk's next paragraph (during the session)
    POST …/{id}/signature                        PNG body: the petitioner signs the record
    POST …/{id}/assign {department} | /extend {reason} | /follow_up | /answer {outcome}
    POST …/{id}/rating {grade: 1..5, comment}
    GET  …/{id}/evidence/{eid}   GET …/{id}/record.pdf
    GET  /api/petition/remote/{origin}/{id}                an official's view (over the bus)
    GET  /api/petition/remote/{origin}/{id}/evidence/{eid}

Errors are problem+json naming the field; a step the state does not allow is 409 naming the
state and what it allows.

Public: ``router``, ``install``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from vmesh.auth.deps import current_principal
from vmesh.auth.principal import Principal
from vmesh.errors import InvalidInput
from vmesh.node.context import NodeContext
from vmesh.petition.core import State
from vmesh.petition.service import MAX_EVIDENCE, MAX_EVIDENCE_BYTES, PetitionService, Upload
from vmesh.servicedesk.idcard import parse_card

log = logging.getLogger(__name__)
router = APIRouter(prefix="/petition", tags=["petition"])
Json = dict[str, Any]


def install(app: FastAPI, ctx: NodeContext) -> None:
    """Mount the routes, give the app its petition service and answer other nodes on the bus."""
    svc = PetitionService(ctx)
    app.state.petition = svc
    app.include_router(router, prefix="/api")
    bus = ctx.federation.bus if ctx.federation is not None else None
    if bus is not None:
        svc._rpc = asyncio.get_running_loop().create_task(bus.serve("petition", svc.on_rpc))


def svc_of(request: Request) -> PetitionService:
    return cast(PetitionService, request.app.state.petition)


Me = Depends(current_principal)
Svc = Depends(svc_of)


class Approve(BaseModel):
    reason: str = ""
    scheduled_at: datetime
    officials: list[dict[str, Any]] = Field(
        examples=[[{"username": "li", "node": "33030000002006000031", "venue": "3303…"}]]
    )


class Reason(BaseModel):
    reason: str = ""


class Text(BaseModel):
    text: str


class Assign(BaseModel):
    department: str


class Answer(BaseModel):
    outcome: str


class Rating(BaseModel):
    grade: int
    comment: str = ""


async def _form_text(form: Any, name: str, limit: int = 4000) -> str:
    v = form.get(name)
    if v is None or isinstance(v, UploadFile):
        raise InvalidInput.one(name, "is required (a text field of the form)")
    return str(v)[: limit + 1]


@router.post("/petitions", status_code=201)
async def book(request: Request, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise InvalidInput.one("Content-Type", "must be multipart/form-data", ctype or None)
    limit = MAX_EVIDENCE_BYTES * (MAX_EVIDENCE + 1)
    if int(request.headers.get("content-length") or 0) > limit:
        raise InvalidInput.one("body", f"is larger than {limit // (1024 * 1024)} MB")
    form = await request.form(max_files=MAX_EVIDENCE + 1, max_fields=20)
    try:
        room = await _form_text(form, "room_code", 20)
        category = await _form_text(form, "category", 24)
        subject = await _form_text(form, "subject")
        try:
            card_doc = json.loads(await _form_text(form, "card"))
        except ValueError as e:
            raise InvalidInput.one("card", f"is not JSON: {e}") from None
        card = parse_card(card_doc)
        uploads = []
        for f in form.getlist("evidence"):
            if not isinstance(f, UploadFile):
                raise InvalidInput.one("evidence", "must be files, not text")
            data = await f.read(MAX_EVIDENCE_BYTES + 1)
            uploads.append(Upload(f.filename or "", data))
        return await svc.book(me, room, card, category, subject, uploads)
    finally:
        await form.close()


@router.get("/petitions")
async def list_petitions(
    me: Principal = Me,
    svc: PetitionService = Svc,
    state: str | None = None,
    overdue: bool = False,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> Json:
    if state is not None and state not in {s.value for s in State}:
        raise InvalidInput.one("state", "unknown petition state", state)
    return await svc.list(me, state, overdue, limit, offset)


@router.get("/petitions/{pid}")
async def get_petition(pid: int, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.get(me, pid)


@router.post("/petitions/{pid}/approve")
async def approve(pid: int, body: Approve, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.approve(me, pid, body.reason, body.scheduled_at, body.officials)


@router.post("/petitions/{pid}/reschedule")
async def reschedule(
    pid: int, body: Approve, me: Principal = Me, svc: PetitionService = Svc
) -> Json:
    return await svc.approve(me, pid, body.reason, body.scheduled_at, body.officials, again=True)


@router.post("/petitions/{pid}/reject")
async def reject(pid: int, body: Reason, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.reject(me, pid, body.reason)


@router.post("/petitions/{pid}/withdraw")
async def withdraw(pid: int, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.withdraw(me, pid)


@router.post("/petitions/{pid}/start")
async def start(pid: int, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.start(me, pid)


@router.post("/petitions/{pid}/end")
async def end(pid: int, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.end(me, pid)


@router.post("/petitions/{pid}/record")
async def record(pid: int, body: Text, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.add_paragraph(me, pid, body.text)


@router.post("/petitions/{pid}/signature")
async def signature(
    pid: int, request: Request, me: Principal = Me, svc: PetitionService = Svc
) -> Json:
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype != "image/png":
        raise InvalidInput.one("Content-Type", "a signature must be sent as image/png", ctype)
    return await svc.sign(me, pid, await request.body())


@router.post("/petitions/{pid}/assign")
async def assign(pid: int, body: Assign, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.assign(me, pid, body.department)


@router.post("/petitions/{pid}/extend")
async def extend(pid: int, body: Reason, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.extend(me, pid, body.reason)


@router.post("/petitions/{pid}/follow_up")
async def follow_up(pid: int, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.follow_up(me, pid)


@router.post("/petitions/{pid}/answer")
async def answer(pid: int, body: Answer, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.answer(me, pid, body.outcome)


@router.post("/petitions/{pid}/rating")
async def rating(pid: int, body: Rating, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.rate(me, pid, body.grade, body.comment)


@router.post("/petitions/{pid}/close")
async def close(pid: int, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    return await svc.close(me, pid)


def _file(data: bytes, media_type: str, name: str) -> Response:
    return Response(
        data,
        media_type=media_type,
        headers={
            "Content-Disposition": f'inline; filename="{name}"',
            "Cache-Control": "private, no-cache",
        },
    )


@router.get("/petitions/{pid}/evidence/{eid}")
async def evidence(pid: int, eid: int, me: Principal = Me, svc: PetitionService = Svc) -> Response:
    data, media_type, _name = await svc.evidence_file(me, pid, eid)
    return _file(data, media_type, f"evidence-{eid}")


@router.get("/petitions/{pid}/record.pdf")
async def record_pdf(pid: int, me: Principal = Me, svc: PetitionService = Svc) -> Response:
    data, number = await svc.record_pdf(me, pid)
    return _file(data, "application/pdf", f"{number}.pdf")


@router.get("/remote/{origin}/{pid}")
async def remote(origin: str, pid: int, me: Principal = Me, svc: PetitionService = Svc) -> Json:
    _check_node(origin)
    return await svc.remote(me, origin, pid)


@router.get("/remote/{origin}/{pid}/evidence/{eid}")
async def remote_evidence(
    origin: str, pid: int, eid: int, me: Principal = Me, svc: PetitionService = Svc
) -> Response:
    _check_node(origin)
    data, media_type = await svc.remote_evidence(me, origin, pid, eid)
    return _file(data, media_type, f"evidence-{eid}")


def _check_node(origin: str) -> None:
    if not (len(origin) == 20 and origin.isdigit()):
        raise InvalidInput.one("origin", "must be a 20-digit node code", origin)
