"""Directory HTTP API under ``/api/directory``: tree, detail, search, changes, import and export.

Reading needs any role; creating, changing, deleting and importing need ``admin`` or ``operator``.
Everything is held to the caller's scope: an entry outside it answers 404 as if it did not exist,
and the refusal is audited with result ``denied``. Viewing an entry's detail is audited
(``directory.view``); changes are audited by the store.

    GET    /api/directory/roots                          -> [TreeNode]
    GET    /api/directory/entries/{code}/children        -> Page[TreeNode]
    GET    /api/directory/entries/{code}                 -> Entry
    GET    /api/directory/search?q=西湖&kind=camera      -> SearchPage (Page[EntrySummary] +
                                                         sorted_by)
    POST   /api/directory/entries {parent_code, kind, name, ...}   -> 201 Entry
    PATCH  /api/directory/entries/{code} {name?, status?, ...}     -> Entry
    DELETE /api/directory/entries/{code}                 -> 204
    POST   /api/directory/import?format=csv&dry_run=true  (multipart ``file``) -> ImportReport
    GET    /api/directory/export?format=csv&under=CODE   -> the file

Public: ``router``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from vmesh.api.pagination import Page, PageParams, page_params
from vmesh.auth.deps import current_principal, require_roles
from vmesh.auth.principal import Principal
from vmesh.directory import transfer
from vmesh.directory.search import SORTS, SearchQuery, search
from vmesh.directory.store import Directory
from vmesh.node.context import NodeContext

router = APIRouter(prefix="/directory", tags=["directory"])

Reader = Annotated[Principal, Depends(current_principal)]
Writer = Annotated[Principal, Depends(require_roles("operator"))]


class EntrySummary(BaseModel):
    code: str = Field(examples=["33010600001320000001"])
    name: str = Field(examples=["西湖区文三路与学院路口东北角"])
    kind: str = Field(examples=["camera"])
    tier: str | None = None
    type_code: str = Field(examples=["132"])
    type_name: str = Field(examples=["IPC"])
    status: str = Field(examples=["online"])
    last_seen: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    tags: list[str] = []
    parent_code: str | None = None


class SearchPage(Page[EntrySummary]):
    sorted_by: str = Field(
        description="the sort applied: the one asked for, or created / -created (creation "
        "order) when a name matches more entries than are sorted; total_capped is then set",
        examples=["name"],
    )


class TreeNode(EntrySummary):
    child_count: int
    online_count: int
    has_children: bool


class PathItem(BaseModel):
    code: str
    name: str


class EntryDetail(TreeNode):
    path: list[PathItem]
    attrs: dict[str, Any]
    version: int
    updated_at: datetime | None


class EntryCreate(BaseModel):
    parent_code: str | None = Field(None, examples=["33010600002166000001"])
    code: str | None = Field(None, description="20 digits; generated when omitted")
    kind: str = Field(examples=["camera"])
    tier: str | None = Field(
        None, description="regions only: province, city, county, township, village"
    )
    type_code: str | None = Field(
        None, description="when generating a code: one of the kind's types"
    )
    name: str = Field(examples=["文三路与学院路口东北角"])
    lat: float | None = None
    lon: float | None = None
    tags: list[str] | None = None
    status: str | None = None
    attrs: dict[str, Any] | None = None


class EntryPatch(BaseModel):
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    tags: list[str] | None = None
    status: str | None = None
    attrs: dict[str, Any] | None = None
    parent_code: str | None = Field(None, description="move an endpoint under another entry")
    version: int | None = Field(None, description="if given, must be the entry's current version")


class ImportReport(BaseModel):
    rows: int
    created: int
    updated: int
    dry_run: bool


def _dir(request: Request) -> Directory:
    ctx: NodeContext = request.app.state.ctx
    return Directory(ctx.db, ctx.audit)


@router.get("/roots", response_model=list[TreeNode], summary="The top of the caller's tree")
async def roots(request: Request, who: Reader) -> list[dict[str, Any]]:
    return await _dir(request).roots(who)


@router.get(
    "/entries/{code}/children",
    response_model=Page[TreeNode],
    summary="One level of the tree, with direct child and online counts",
)
async def children(
    request: Request, code: str, who: Reader, page: Annotated[PageParams, Depends(page_params)]
) -> dict[str, Any]:
    items, total = await _dir(request).children(who, code, page.offset, page.limit)
    return {
        "items": items,
        "total": total,
        "total_capped": False,
        "offset": page.offset,
        "limit": page.limit,
    }


@router.get("/entries/{code}", response_model=EntryDetail, summary="An entry's detail (audited)")
async def entry(request: Request, code: str, who: Reader) -> dict[str, Any]:
    return await _dir(request).get(who, code)


@router.get(
    "/search",
    response_model=SearchPage,
    summary="Search by name substring, code prefix, kind, type, status, tag, subtree",
)
async def search_entries(
    request: Request,
    who: Reader,
    page: Annotated[PageParams, Depends(page_params)],
    q: Annotated[str | None, Query(description="substring of the name, e.g. 西湖")] = None,
    code_prefix: Annotated[str | None, Query(description="leading digits of the code")] = None,
    kind: str | None = None,
    type: Annotated[str | None, Query(description="3-digit type code, e.g. 132")] = None,
    status: Literal["online", "offline", "unknown"] | None = None,
    tag: str | None = None,
    under: Annotated[str | None, Query(description="code of an entry: search its subtree")] = None,
    sort: Annotated[str, Query(description=" | ".join(SORTS))] = "name",
) -> dict[str, Any]:
    d = _dir(request)
    subtree = await d.resolve_under(who, under, "directory.search") if under else who.scope_path
    qry = SearchQuery(
        q=q,
        code_prefix=code_prefix,
        kind=kind,
        type=type,
        status=status,
        tag=tag,
        sort=sort,
        offset=page.offset,
        limit=page.limit,
    )
    res = await search(d.db, qry, subtree)
    return {
        "items": res.items,
        "total": res.total,
        "total_capped": res.total_capped,
        "offset": page.offset,
        "limit": page.limit,
        "sorted_by": res.sorted_by,
    }


@router.post("/entries", response_model=EntryDetail, status_code=201, summary="Create an entry")
async def create(request: Request, body: EntryCreate, who: Writer) -> dict[str, Any]:
    return await _dir(request).create(who, body.model_dump(exclude_none=True))


@router.patch("/entries/{code}", response_model=EntryDetail, summary="Change an entry")
async def patch(request: Request, code: str, body: EntryPatch, who: Writer) -> dict[str, Any]:
    return await _dir(request).update(who, code, body.model_dump(exclude_unset=True))


@router.delete("/entries/{code}", status_code=204, summary="Delete an entry without children")
async def remove(request: Request, code: str, who: Writer) -> Response:
    await _dir(request).delete(who, code)
    return Response(status_code=204)


@router.post(
    "/import",
    response_model=ImportReport,
    summary="Import a CSV or JSON file, all or nothing (422 lists errors by row)",
)
async def import_file(
    request: Request,
    who: Writer,
    file: Annotated[UploadFile, File(description="the CSV or JSON file")],
    format: Literal["csv", "json"] = "csv",
    dry_run: bool = False,
    update: Annotated[bool, Query(description="change entries whose code exists")] = False,
) -> dict[str, Any]:
    d = _dir(request)
    data = await file.read()
    report = await transfer.import_file(
        d.db,
        d.audit,
        who,
        data,
        format,
        dry_run=dry_run,
        update_existing=update,
        source=file.filename or "",
    )
    return report.as_dict()


@router.get(
    "/export",
    summary="Export the caller's subtree (or `under`) as CSV or JSON",
    response_class=StreamingResponse,
)
async def export(
    request: Request, who: Reader, format: Literal["csv", "json"] = "csv", under: str | None = None
) -> StreamingResponse:
    d = _dir(request)
    subtree = await d.resolve_under(who, under, "directory.export") if under else who.scope_path
    await d.audit.write(who, "directory.export", under or who.scope_code, "ok", {"format": format})
    media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
    name = f"directory-{under or who.scope_code}.{format}"
    return StreamingResponse(
        transfer.export_lines(d.db, format, subtree),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
