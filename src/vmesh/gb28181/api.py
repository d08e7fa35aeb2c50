"""GB/T 28181 HTTP API under ``/api/gb28181``: PTZ control of a channel.

    POST /api/gb28181/ptz {code, command, speed?}
        command: up down left right up_left up_right down_left down_right zoom_in zoom_out stop
                 preset_call preset_set preset_delete (the preset number in ``speed``)
        -> 200 {code, command, ptz_cmd}   (ptz_cmd: the 8 bytes sent, hex)

Roles admin, operator, commander, chair may steer; the channel must be in the caller's scope
(else 404 as if it did not exist, and the refusal is audited ``denied``). Every command is
audited as ``gb28181.ptz``. 503 when the node runs without ``[gb28181]``; 409 when the device is
offline.

Public: ``router``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select

from vmesh.auth.deps import node_context, require_roles
from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import NotFound, VmeshError
from vmesh.node.context import NodeContext

router = APIRouter(prefix="/gb28181", tags=["gb28181"])

Steerer = Annotated[Principal, Depends(require_roles("operator", "commander", "chair"))]
Ctx = Annotated[NodeContext, Depends(node_context)]


class GbOff(VmeshError):
    status = 503
    title = "GB/T 28181 is not running on this node"


class PtzRequest(BaseModel):
    code: str = Field(pattern=r"^\d{20}$")
    command: str
    speed: int = Field(default=128, ge=0, le=255)


@router.post("/ptz")
async def ptz(body: PtzRequest, p: Steerer, ctx: Ctx) -> dict[str, Any]:
    if ctx.gb28181 is None:
        raise GbOff("this node runs without [gb28181] enabled")
    async with ctx.db.sessions() as s:
        path = await s.scalar(select(Entry.path).where(Entry.code == body.code))
    if path is None or not p.covers(path):
        if path is not None:
            await ctx.audit.write(
                p, "gb28181.ptz", body.code, "denied", {"reason": "outside scope"}
            )
        raise NotFound(f"no directory entry with code {body.code}")
    detail: dict[str, Any] = {"command": body.command, "speed": body.speed}
    try:
        cmd = await ctx.gb28181.ptz(body.code, body.command, body.speed)
    except VmeshError as e:
        await ctx.audit.write(p, "gb28181.ptz", body.code, "failed", {**detail, "error": str(e)})
        raise
    await ctx.audit.write(p, "gb28181.ptz", body.code, "ok", {**detail, "ptz_cmd": cmd})
    return {"code": body.code, "command": body.command, "ptz_cmd": cmd}
