"""``GET /api/gb28181/records/{code}``: a GB/T 28181 channel's recordings on its device.

    GET /api/gb28181/records/{code}?start=&end=&type=all|time|alarm|manual
        -> 200 {camera_code, start, end, spans, gaps, hours, recorded_seconds,
                items: [{start, end, name, file_path, type, file_size}],
                sum_num, pages, complete, error}

Times are Unix seconds or ISO 8601 (``vmesh.recording.playback.parse_time``); a range is at
most 31 days. The answer has the shape of the node's own recordings timeline, so the console
draws it with the same strips. Authorised like recordings (``authorise_playback``: scope, or a
grant; else 404, audited ``denied``); every query audited ``gb28181.records`` with the range and
the number of items. 503 when the node runs without ``[gb28181]``; 409 when the device is
offline; 422 naming the wrong parameter. A device that sends fewer items than its ``SumNum``
before the idle timeout gives ``complete: false`` and ``error`` saying how many came.

Public: ``router``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from vmesh.auth.deps import current_principal, node_context
from vmesh.auth.principal import Principal
from vmesh.errors import VmeshError
from vmesh.gb28181.api import GbOff
from vmesh.gb28181.records import timeline_of
from vmesh.node.context import NodeContext
from vmesh.recording.access import authorise_playback
from vmesh.recording.playback import parse_time

router = APIRouter(prefix="/gb28181", tags=["gb28181"])

Who = Annotated[Principal, Depends(current_principal)]
Ctx = Annotated[NodeContext, Depends(node_context)]


@router.get("/records/{code}")
async def records(
    code: str,
    who: Who,
    ctx: Ctx,
    start: str | None = None,
    end: str | None = None,
    type: str = "all",  # the MANSCDP element's name
) -> dict[str, Any]:
    if ctx.gb28181 is None:
        raise GbOff("this node runs without [gb28181] enabled")
    t0, t1 = parse_time("start", start), parse_time("end", end)
    await authorise_playback(ctx, who, code, "gb28181.records")
    detail: dict[str, Any] = {"start": t0, "end": t1, "type": type}
    try:
        result = await ctx.gb28181.records.query(code, t0, t1, type)
    except VmeshError as e:
        await ctx.audit.write(who, "gb28181.records", code, "failed", {**detail, "error": str(e)})
        raise
    body = timeline_of(result, t0, t1)
    detail |= {"items": len(result.items), "complete": result.complete}
    await ctx.audit.write(who, "gb28181.records", code, "ok", detail)
    return body
