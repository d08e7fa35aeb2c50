"""Network HTTP API under ``/api/network``: the nodes and links of this node's subtree, and the
subtree's catalogue.

Any signed-in user may read; each sees the nodes (and catalogue entries) whose code lies in the
administrative division of the user's scope (a user scoped to Hangzhou sees Hangzhou's nodes, the
province's administrator all of them). 503 when the node runs without ``[federation]``.

    GET /api/network?offset=0&limit=100
        -> {node: {code, name, tier, uplink, catalogue}, nodes: Page[Node], links: [Link]}
        Node = {code, parent_code, tier, name, addresses, versions, lat, lon, announced_at, self,
                link: {state: up|down|unknown|none, rtt_ms, last_seen, reported_by},
                sync: {pending, source_error, applied, ignored, entries, last_applied_at}}
        Link = {child, parent, state, rtt_ms, last_seen}   (the uplinks of the page's nodes)
    GET /api/network/catalogue?q=西湖&code_prefix=3301&origin=NODE&kind=camera&offset&limit
        -> Page[{code, origin_node, name, kind, tier, type_code, type_name, status, lat, lon,
                 tags, attrs, parent_code, version, changed_at}]
    GET /api/network/orgs?q=&origin=NODE&offset&limit
        -> Page[same items]: the org units (region, department, virtual_org) this node holds:
           its subtree's and those passed down from above (its ancestors' and siblings', see
           federation/orgtree.py), shown to every signed-in user of the node for browsing
    GET /api/network/orgs/around/{code}
        -> {ancestors: [item], siblings: [item]}: the regions above the region ``code`` (the
           province first) and beside it (same tier, same parent division), from the org units
           this node holds; the console shows them over its tree (a county sees 浙江省 › 杭州市
           and 杭州市's other counties). 422 when ``code`` is not a valid code.

Public: ``router``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from vmesh.api.pagination import Page, PageParams, page_params
from vmesh.auth.deps import current_principal, node_context
from vmesh.auth.principal import Principal
from vmesh.errors import VmeshError
from vmesh.federation import catalogue, orgtree
from vmesh.federation.node import Federation
from vmesh.identity.codes import division_prefix, parse_code
from vmesh.node.context import NodeContext

router = APIRouter(prefix="/network", tags=["network"])

Reader = Annotated[Principal, Depends(current_principal)]
Ctx = Annotated[NodeContext, Depends(node_context)]


class FederationOff(VmeshError):
    status = 503
    title = "Federation is not running on this node"


def _federation(ctx: NodeContext) -> Federation:
    if ctx.federation is None:
        raise FederationOff("this node runs without [federation] enabled")
    return ctx.federation


def _division(p: Principal) -> str:
    return division_prefix(p.scope_code[:8])


class Link(BaseModel):
    state: str = Field(examples=["up"])
    rtt_ms: float | None = Field(default=None, examples=[1.3])
    last_seen: datetime | None = None
    reported_by: str | None = None


class Sync(BaseModel):
    pending: int | None = Field(default=None, description="messages of the child's not yet here")
    source_error: str | None = None
    applied: int = Field(description="catalogue changes from this node applied here")
    ignored: int = Field(description="changes already known here (re-delivered or older)")
    entries: int = Field(description="catalogue entries from this node held here")
    last_applied_at: datetime | None = None


class NetworkNode(BaseModel):
    code: str = Field(examples=["33010000002006000001"])
    parent_code: str | None = None
    tier: str = Field(examples=["city"])
    name: str = Field(examples=["杭州市节点"])
    addresses: list[str] = []
    versions: dict[str, str] = {}
    lat: float | None = None
    lon: float | None = None
    announced_at: datetime | None = None
    self: bool = False
    link: Link
    sync: Sync


class LinkOut(BaseModel):
    child: str
    parent: str
    state: str
    rtt_ms: float | None = None
    last_seen: datetime | None = None


class Uplink(BaseModel):
    parent_code: str | None = None
    state: str
    rtt_ms: float | None = None
    last_seen: datetime | None = None
    last_error: str | None = None


class About(BaseModel):
    code: str
    name: str
    tier: str
    uplink: Uplink | None = None
    catalogue: dict[str, Any]


class Network(BaseModel):
    node: About
    nodes: Page[NetworkNode]
    links: list[LinkOut]


@router.get("", response_model=Network)
async def network(
    p: Reader, ctx: Ctx, page: Annotated[PageParams, Depends(page_params)]
) -> dict[str, Any]:
    fed = _federation(ctx)
    about, items = await fed.view(_division(p))
    chosen = items[page.offset : page.offset + page.limit]
    links = [
        {
            "child": n["code"],
            "parent": n["parent_code"],
            "state": n["link"]["state"],
            "rtt_ms": n["link"]["rtt_ms"],
            "last_seen": n["link"]["last_seen"],
        }
        for n in chosen
        if n["parent_code"]
    ]
    return {
        "node": about,
        "nodes": {"items": chosen, "total": len(items), "offset": page.offset, "limit": page.limit},
        "links": links,
    }


class CatalogueItem(BaseModel):
    code: str
    origin_node: str
    name: str
    kind: str
    tier: str | None = None
    type_code: str
    type_name: str
    status: str
    lat: float | None = None
    lon: float | None = None
    tags: list[str] = []
    attrs: dict[str, Any] = {}
    parent_code: str | None = None
    version: int
    changed_at: datetime | None = None


@router.get("/catalogue", response_model=Page[CatalogueItem])
async def catalogue_search(
    p: Reader,
    ctx: Ctx,
    page: Annotated[PageParams, Depends(page_params)],
    q: Annotated[str, Query(max_length=100, description="substring of the name")] = "",
    code_prefix: Annotated[str, Query(max_length=20)] = "",
    origin: Annotated[str, Query(description="code of the node the entry comes from")] = "",
    kind: Annotated[str, Query(max_length=24)] = "",
) -> dict[str, Any]:
    _federation(ctx)
    items, total = await catalogue.search(
        ctx.db,
        code_prefix_scope=_division(p),
        q=q,
        code_prefix=code_prefix,
        origin=origin,
        kind=kind,
        offset=page.offset,
        limit=page.limit,
    )
    return {"items": items, "total": total, "offset": page.offset, "limit": page.limit}


@router.get("/orgs", response_model=Page[CatalogueItem])
async def org_units(
    p: Reader,
    ctx: Ctx,
    page: Annotated[PageParams, Depends(page_params)],
    q: Annotated[str, Query(max_length=100, description="substring of the name")] = "",
    origin: Annotated[str, Query(description="code of the node the unit comes from")] = "",
) -> dict[str, Any]:
    _federation(ctx)
    items, total = await catalogue.search(
        ctx.db,
        code_prefix_scope="",
        q=q,
        origin=origin,
        kinds=orgtree.KINDS,
        offset=page.offset,
        limit=page.limit,
    )
    return {"items": items, "total": total, "offset": page.offset, "limit": page.limit}


AROUND_SIBLINGS = 200


class OrgsAround(BaseModel):
    ancestors: list[CatalogueItem]
    siblings: list[CatalogueItem]


@router.get("/orgs/around/{code}", response_model=OrgsAround)
async def orgs_around(p: Reader, ctx: Ctx, code: str) -> dict[str, Any]:
    _federation(ctx)
    center = parse_code(code, "code").text[:8]
    div = division_prefix(center)
    ancestors: list[dict[str, Any]] = []
    for depth in range(1, len(div) // 2):
        prefix = div[: 2 * depth].ljust(8, "0")
        items, _ = await catalogue.search(
            ctx.db, code_prefix_scope="", code_prefix=prefix, kind="region", limit=20
        )
        ancestors += [i for i in items if i["code"][:8] == prefix][:1]
    siblings: list[dict[str, Any]] = []
    if len(div) > 2:
        me, _ = await catalogue.search(ctx.db, code_prefix_scope="", code_prefix=code, limit=1)
        tier = me[0]["tier"] if me else ""
        if tier:
            items, _ = await catalogue.search(
                ctx.db,
                code_prefix_scope="",
                code_prefix=div[:-2],
                kind="region",
                tier=tier,
                limit=AROUND_SIBLINGS,
            )
            siblings = [i for i in items if i["code"] != code]
    return {"ancestors": ancestors, "siblings": siblings}
