"""The fabric's part in ``vmesh node run``: a ``FabricService`` wired to the node's federation bus,
media switch, directory and audit log (started after federation and media, stopped before them).

- the tree: this node's subtree from ``federation_nodes`` (what its children announce) and its
  parent (the uplink identified by the federation, else its own row);
- local cameras: ``vmesh.media.remote.FabricCameras`` (sources of this node's directory);
- ``fabric.serve`` rows are written by the actor ``fabric``;
- the media service gets the agent as its ``fabric`` so that viewers here reach other nodes'
  cameras.

Public: ``start_fabric``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vmesh.audit.log import Actor
from vmesh.fabric.route import Parents
from vmesh.fabric.service import FabricService
from vmesh.media.remote import FabricCameras

if TYPE_CHECKING:
    from vmesh.node.context import NodeContext

log = logging.getLogger(__name__)

ACTOR = Actor("fabric")


async def start_fabric(ctx: NodeContext) -> FabricService:
    cfg = ctx.config
    federation, media = ctx.federation, ctx.media
    if federation is None or media is None or federation.bus is None:
        raise RuntimeError("[fabric] needs federation and media running")
    registry = federation.registry
    assert registry is not None
    code = cfg.node.code

    async def tree() -> tuple[Parents, str | None]:
        nodes = await registry.subtree()
        parents: dict[str, str | None] = {n.code: n.parent_code for n in nodes}
        up = registry.uplink
        parent = up.parent_code if up is not None and up.parent_code else parents.get(code)
        parents[code] = parent
        return parents, parent

    async def audit(action: str, target: str, result: str, detail: dict[str, Any]) -> None:
        await ctx.audit.write(ACTOR, action, target, result, detail)

    fabric = FabricService(
        node_code=code,
        bus=federation.bus,
        transport=media.transport,
        address=cfg.fabric.address,
        tree=tree,
        cameras=FabricCameras(media, ctx.db),
        audit=audit,
        linger=cfg.fabric.linger_seconds,
        rpc_timeout=cfg.fabric.rpc_timeout_seconds,
        port_range=cfg.fabric.port_range,
    )
    await fabric.start()
    media.fabric = fabric
    return fabric
