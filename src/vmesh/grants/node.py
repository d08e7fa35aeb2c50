"""Grants in ``vmesh node run``: a ``GrantService`` on the federation bus when federation runs
(alone otherwise: applications and decisions within this node), wired to the fabric when it runs
(credentials carried by ``open``/``record``, ``admit`` at the camera's node, outputs closed when a
grant ends). Started after the fabric, stopped before it.

Public: ``start_grants``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmesh.grants.service import GrantService

if TYPE_CHECKING:
    from vmesh.node.context import NodeContext


async def start_grants(ctx: NodeContext) -> GrantService:
    federation = ctx.federation
    bus = federation.bus if federation is not None else None
    registry = federation.registry if federation is not None else None

    def parent() -> str | None:
        up = registry.uplink if registry is not None else None
        return up.parent_code if up is not None and up.parent_code else None

    svc = GrantService(ctx, bus=bus, parent=parent)
    fabric = ctx.fabric
    if fabric is not None:
        fabric.credentials = svc.credentials
        fabric.admit = svc.admit
        svc.on_end.append(lambda gid: fabric.close_grant(gid, svc.ended(gid) or "grant ended"))
    await svc.start()
    return svc
