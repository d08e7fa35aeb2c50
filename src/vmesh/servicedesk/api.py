"""``/api/servicedesk/...``: the catalogue, agents, cases (kiosk and desk actions), materials,
the result PDF, statistics, and ``/api/servicedesk/ws`` (live updates for a kiosk's case or an
agent's desk).

Errors are problem+json like every API call; a transition that the case's state does not allow
answers 409 naming the state and what it allows. Images and the signature are sent as the raw
request body (``Content-Type: image/jpeg`` or ``image/png``), not as multipart forms, so a kiosk
can retry an upload as it is.

Public: ``router``, ``install``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from vmesh.api.ws import ws_principal
from vmesh.auth.deps import current_principal, require_roles
from vmesh.auth.principal import Principal
from vmesh.errors import InvalidInput, NotFound, VmeshError
from vmesh.node.context import NodeContext
from vmesh.servicedesk import catalogue as cat
from vmesh.servicedesk import stats as st
from vmesh.servicedesk.cases import State
from vmesh.servicedesk.idcard import SimulatedReader, parse_card
from vmesh.servicedesk.service import ServiceDesk, Subscriber

router = APIRouter(prefix="/servicedesk", tags=["servicedesk"])
Json = dict[str, Any]


def install(app: FastAPI, ctx: NodeContext) -> None:
    """Mount the routes and give the app its service desk."""
    desk = ServiceDesk(ctx)
    app.state.servicedesk = desk
    app.state.servicedesk_reader = SimulatedReader()
    app.include_router(router, prefix="/api")
    app.router.on_shutdown.append(desk.stop)  # its timers and live-update task
    desk.tiers.admit_streams()  # a kiosk of a child node watches its agent's seat here
    with contextlib.suppress(RuntimeError):  # no loop: an app made outside the node (tests)
        # Kiosks of child nodes whose items this node serves (vmesh.servicedesk.tiers).
        desk.rpc = asyncio.get_running_loop().create_task(desk.tiers.serve())


def desk_of(request: Request) -> ServiceDesk:
    return cast(ServiceDesk, request.app.state.servicedesk)


Me = Depends(current_principal)
Desk = Depends(desk_of)


class NewCase(BaseModel):
    kiosk_code: str = Field(examples=["33010601004016000001"])
    item_code: str = Field(examples=["rsj-pension-statement"])


class Identify(BaseModel):
    card: dict[str, Any]


class Verify(BaseModel):
    status: str = Field(examples=["verified"])
    note: str = ""


class Rating(BaseModel):
    grade: int
    comment: str = ""


class Accept(BaseModel):
    case_id: int | None = None


class Submit(BaseModel):
    outcome: str
    form: dict[str, Any] = {}


class Transfer(BaseModel):
    item_code: str | None = None
    note: str = ""


class Note(BaseModel):
    note: str = ""


class AgentIn(BaseModel):
    groups: dict[str, int]
    seat_code: str


@router.get("/catalogue")
async def get_catalogue(request: Request, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    await desk.ready()
    async with desk.db.sessions() as s:
        return await cat.list_catalogue(s)


@router.post("/catalogue")
async def post_catalogue(
    request: Request,
    me: Principal = Depends(require_roles("admin")),  # noqa: B008
    desk: ServiceDesk = Desk,
) -> Json:
    try:
        doc = json.loads(await request.body())
    except ValueError as e:
        raise InvalidInput.one("body", f"is not JSON: {e}") from None
    return await cat.import_catalogue(desk.audit, me, cat.parse(doc))


@router.put("/agents/{username}")
async def put_agent(
    username: str,
    body: AgentIn,
    me: Principal = Depends(require_roles("admin")),  # noqa: B008
    desk: ServiceDesk = Desk,
) -> Json:
    return await desk.set_agent(me, username, body.groups, body.seat_code)


@router.get("/reader/simulated")
async def simulated_card(request: Request, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    """A card from the node's simulated reader (only when ``[servicedesk] id_reader`` is it)."""
    if desk.cfg.id_reader != "simulated":
        raise NotFound("this node's kiosks use a reader agent, not the simulated reader")
    card = await request.app.state.servicedesk_reader.read()
    return {
        "name": card.name,
        "id_number": card.id_number,
        "sex": card.sex,
        "nation": card.nation,
        "birth": card.birth,
        "address": card.address,
    }


@router.post("/cases", status_code=201)
async def new_case(body: NewCase, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.create(me, body.kiosk_code, body.item_code)


@router.get("/cases")
async def list_cases(
    me: Principal = Me,
    desk: ServiceDesk = Desk,
    state: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> Json:
    if state is not None and state not in {s.value for s in State}:
        raise InvalidInput.one("state", "unknown case state", state)
    return await desk.cases(me, state, limit, offset)


@router.get("/cases/{case_id}")
async def get_case(case_id: int, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.case_json(me, case_id)


@router.post("/cases/{case_id}/identify")
async def identify(
    case_id: int, body: Identify, me: Principal = Me, desk: ServiceDesk = Desk
) -> Json:
    return await desk.identify(me, case_id, parse_card(body.card))


@router.post("/cases/{case_id}/enqueue")
async def enqueue(case_id: int, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.enqueue(me, case_id)


@router.post("/cases/{case_id}/abandon")
async def abandon(case_id: int, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    await desk.abandon(me, case_id, "the villager left")
    return await desk.case_json(me, case_id)


async def _image_body(request: Request) -> bytes:
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype not in ("image/jpeg", "image/png"):
        raise InvalidInput.one("Content-Type", "must be image/jpeg or image/png", ctype or None)
    return await request.body()


@router.post("/cases/{case_id}/materials", status_code=201)
async def upload(
    case_id: int,
    request: Request,
    upload_id: str = Query(..., max_length=64),
    kind: str = Query("document"),
    name: str = Query(..., max_length=200),
    me: Principal = Me,
    desk: ServiceDesk = Desk,
) -> Json:
    return await desk.upload(me, case_id, upload_id, kind, name, await _image_body(request))


@router.get("/materials/{material_id}/image")
async def material_image(
    material_id: int, me: Principal = Me, desk: ServiceDesk = Desk
) -> Response:
    data, media_type = await desk.material_file(me, material_id)
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, no-cache"})


@router.post("/materials/{material_id}/verify")
async def verify(
    material_id: int, body: Verify, me: Principal = Me, desk: ServiceDesk = Desk
) -> Json:
    return await desk.verify(me, material_id, body.status, body.note)


@router.post("/cases/{case_id}/signature")
async def signature(
    case_id: int, request: Request, me: Principal = Me, desk: ServiceDesk = Desk
) -> Json:
    return await desk.sign(me, case_id, await _image_body(request))


@router.post("/cases/{case_id}/rating")
async def rating(case_id: int, body: Rating, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.rate(me, case_id, body.grade, body.comment)


@router.get("/desk/queues")
async def queues(me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.queues(me)


@router.post("/desk/accept")
async def accept(body: Accept, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.accept(me, body.case_id)


@router.post("/cases/{case_id}/check")
async def check(case_id: int, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.check(me, case_id)


@router.post("/cases/{case_id}/submit")
async def submit(case_id: int, body: Submit, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.submit(me, case_id, body.outcome, body.form)


@router.post("/cases/{case_id}/transfer")
async def transfer(
    case_id: int, body: Transfer, me: Principal = Me, desk: ServiceDesk = Desk
) -> Json:
    return await desk.transfer(me, case_id, body.item_code, body.note)


@router.post("/cases/{case_id}/escalate")
async def escalate(case_id: int, body: Note, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.escalate(me, case_id, body.note)


@router.post("/cases/{case_id}/hold")
async def hold(case_id: int, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.hold(me, case_id)


@router.post("/cases/{case_id}/callback")
async def callback(case_id: int, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.callback(me, case_id)


@router.post("/cases/{case_id}/close")
async def close(case_id: int, me: Principal = Me, desk: ServiceDesk = Desk) -> Json:
    return await desk.close(me, case_id)


@router.get("/cases/{case_id}/result.pdf")
async def result_pdf(case_id: int, me: Principal = Me, desk: ServiceDesk = Desk) -> Response:
    data, number = await desk.result_file(me, case_id)
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{number}.pdf"',
            "Cache-Control": "private, no-cache",
        },
    )


@router.get("/cases/{case_id}/recordings/{name}")
async def recording(
    case_id: int, name: str, me: Principal = Me, desk: ServiceDesk = Desk
) -> FileResponse:
    """One recording of the case's call (``video/mp4``, both sides; range requests for seeking)."""
    path = await desk.recording_file(me, case_id, name)
    return FileResponse(path, media_type="video/mp4", filename=f"{case_id}-{name}")


@router.get("/stats")
async def stats(
    me: Principal = Depends(require_roles("agent", "operator")),  # noqa: B008
    desk: ServiceDesk = Desk,
    by: str = Query("item", pattern="^(item|department|centre)$"),
    format: str = Query("json", pattern="^(json|csv)$"),
) -> Any:
    rows = await st.compute(desk.db, me, by)
    if format == "csv":
        return Response(
            st.to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="servicedesk-{by}.csv"'},
        )
    return {"by": by, "rows": rows}


@router.websocket("/ws")
async def live(ws: WebSocket) -> None:
    """``?case=ID`` (a kiosk's case) or ``?desk=1`` (the agent's queues): pushes on changes."""
    me = await ws_principal(ws)
    if me is None:
        return
    desk: ServiceDesk = ws.app.state.servicedesk
    case_param = ws.query_params.get("case")
    try:
        if case_param is not None:
            await desk.case_json(me, int(case_param))
            sub = Subscriber(me, case_id=int(case_param))
        else:
            await desk.queues(me)
            sub = Subscriber(me, agent=me.username)
    except (VmeshError, ValueError) as e:
        await ws.close(code=4404, reason=str(getattr(e, "detail", e))[:120])
        return
    await ws.accept()
    if sub.case_id is not None:
        await desk.watch_case(sub)  # a case served by another node: relayed from it
    else:
        desk.subscribe(sub)

    async def reader() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                await ws.receive_text()

    read = asyncio.create_task(reader())
    try:
        while not read.done():
            get = asyncio.create_task(sub.queue.get())
            done, _ = await asyncio.wait({get, read}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                break
            await ws.send_text(json.dumps(get.result(), ensure_ascii=False))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        read.cancel()
        desk.unsubscribe(sub)
