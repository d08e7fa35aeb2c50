"""GB/T 28181 cascade state over HTTP: the node's upper platform links.

    GET /api/gb28181/uppers
        -> 200 {"uppers": [{id, address, state, last_error, registered_at, expires,
                            registrations, keepalives, catalog_answers, sessions}]}

``state`` is ``registering``, ``registered``, ``failed`` (``last_error`` says why) or
``stopped`` (``vmesh.gb28181.upper``). Roles admin and operator; 503 when the node runs without
``[gb28181]``; an empty list without ``[[gb28181.upper]]``.

Public: ``router``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from vmesh.auth.deps import node_context, require_roles
from vmesh.auth.principal import Principal
from vmesh.gb28181.api import GbOff
from vmesh.node.context import NodeContext

router = APIRouter(prefix="/gb28181", tags=["gb28181"])

Viewer = Annotated[Principal, Depends(require_roles("operator"))]
Ctx = Annotated[NodeContext, Depends(node_context)]


@router.get("/uppers")
async def uppers(p: Viewer, ctx: Ctx) -> dict[str, Any]:
    gb = ctx.gb28181
    if gb is None:
        raise GbOff("this node runs without [gb28181] enabled")
    links = gb.cascade.links.values() if gb.cascade is not None else []
    return {"uppers": [link.as_dict() for link in links]}
