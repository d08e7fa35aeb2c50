"""Playback across nodes: a viewer's node plays back a camera recorded at another node (a province
user and a county camera), over the federation bus (NATS request/reply through the leaf links,
whose mTLS already authenticates the nodes).

The viewer's node authorises its user (scope or grant: ``authorise_playback``), audits the
playback as for a local camera (with ``node``: the camera's node), then asks the camera's node.

RPC ``vmesh.<camera node>.rpc.recording`` (JSON over ``Bus``)::

    -> {"op": "timeline", "code", "start", "end", "user", "viewer_node", "grant"}
    <- the timeline (as ``GET /api/recordings/{code}/timeline``)
    -> {"op": "open", "code", "start", "end", "action", "user", "viewer_node", "grant"}
    <- {"file": "<name>", "size": <bytes>, "start", "end", "segments"}
    -> {"op": "plan", "code", "user", "viewer_node"}            <- the plan
    -> {"op": "set_plan", "code", "plan": {...}, "user", "viewer_node"}   <- the plan stored
    -> {"op": "snapshot", "code", "user", "viewer_node", "grant"}
    <- {"jpeg": "<base64>"}   (the live picture, audited ``camera.snapshot`` at the camera's node)

Raw subject ``vmesh.<camera node>.rpc.recording.read``: the request is JSON ``{"file", "offset",
"length"}`` (at most ``CHUNK`` bytes); the reply is ``b"\\x00"`` + the bytes, or ``b"\\x01"`` + a
problem JSON (``status``, ``detail``).

The camera's node admits the viewer node like the fabric does (``GrantService.admit``: the viewer
node's division holds the camera, or it presents an active grant of its own covering it; a plan
may only be read or changed by a node whose division holds the camera), joins the segments with
``range_mp4`` and audits ``recording.serve`` (actor ``<user>@<viewer node>``, with the range, the
action, the grant and its purpose), or ``denied`` with the reason. Only files it opened for a
viewer node in the last ``OPEN_TTL`` seconds can be read.

The viewer's node answers its user's HTTP range request by reading the chunks it covers
(``parse_range``) and streaming them through: a ``<video>`` seeks in a county's recording at the
province as in a local one.

Public: ``serve_recordings``, ``RemoteRecordings``, ``parse_range``, ``RangeNotSatisfiable``,
``SERVICE``, ``CHUNK``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.responses import Response, StreamingResponse
from nats.aio.msg import Msg

from vmesh.audit.log import Actor
from vmesh.auth.principal import Principal
from vmesh.errors import Conflict, Forbidden, InvalidInput, NotFound, VmeshError
from vmesh.federation.bus import Bus, RemoteError, rpc_subject
from vmesh.identity.codes import division_prefix
from vmesh.node.context import NodeContext
from vmesh.recording import queries
from vmesh.recording.access import Playable

log = logging.getLogger(__name__)

SERVICE = "recording"
READ = "recording.read"
CHUNK = 512 * 1024  # under nats-server's default max_payload (1 MiB)
OPEN_TTL = 600.0
RPC_TIMEOUT = 30.0  # joining segments at the camera's node may take a while
_FILE = re.compile(r"^[0-9A-Za-z]{1,20}-[0-9a-f]{24}\.mp4$")


class RangeNotSatisfiable(Exception):
    """A ``Range`` header outside the file (answered 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range ``[first, last]`` a ``Range`` header asks of a ``size``-byte file;
    ``None`` for the whole file (no header, another unit, or several ranges: RFC 9110 lets a
    server answer those with the whole representation)."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.strip()[6:]
    if "," in spec:
        return None
    first_s, sep, last_s = spec.partition("-")
    first_s, last_s = first_s.strip(), last_s.strip()
    if (
        not sep
        or not (first_s.isdigit() or first_s == "")
        or not (last_s.isdigit() or last_s == "")
    ):
        return None  # malformed: ignored, as RFC 9110 says
    if first_s == "":
        if last_s == "" or int(last_s) == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - int(last_s)), size - 1
    first = int(first_s)
    last = size - 1 if last_s == "" else min(int(last_s), size - 1)
    if first >= size or last < first:
        raise RangeNotSatisfiable
    return first, last


# --- the camera's node ------------------------------------------------------------------------

ACTOR_SUFFIX = "@"


def _text(body: dict[str, Any], field: str, required: bool = True) -> str:
    v = body.get(field)
    if v is None or v == "":
        if required:
            raise InvalidInput.one(field, "is required")
        return ""
    if not isinstance(v, str):
        raise InvalidInput.one(field, "must be text", v)
    return v


def _number(body: dict[str, Any], field: str) -> float:
    v = body.get(field)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InvalidInput.one(field, "must be a number", v)
    return float(v)


class CameraNode:
    """The RPC responder of the camera's node (see the module docstring)."""

    def __init__(self, ctx: NodeContext, bus: Bus) -> None:
        self.ctx = ctx
        self.bus = bus
        self.code = ctx.config.node.code
        self.opened: dict[str, float] = {}  # file name -> monotonic expiry

    async def start(self) -> None:
        await self.bus.serve(SERVICE, self._on_rpc)
        # raw replies (not Bus.serve's JSON); the subscription ends when the bus is closed
        await self.bus.nc.subscribe(rpc_subject(self.code, READ), cb=self._on_read)
        await self.bus.nc.flush()

    async def _entry(self, code: str) -> tuple[str, str]:
        """The name and attrs (JSON text) of camera ``code`` of this node, else ``NotFound``."""
        from sqlalchemy import select

        from vmesh.directory.models import Entry

        async with self.ctx.db.sessions() as s:
            row = (
                await s.execute(
                    select(Entry.kind, Entry.name, Entry.attrs).where(Entry.code == code)
                )
            ).first()
        if row is None or row.kind != "camera":
            raise NotFound(f"camera {code} is not a camera of node {self.code}")
        return row.name, row.attrs

    async def _admit(self, code: str, viewer_node: str, grant: str | None) -> dict[str, Any]:
        """``{}`` or ``{"grant", "purpose"}`` when ``viewer_node`` may play ``code``; else
        ``Forbidden`` naming why."""
        grants = getattr(self.ctx, "grants", None)
        if grants is not None:
            use = await grants.admit(code, viewer_node, grant)
            return {} if use is None else {"grant": use.grant, "purpose": use.purpose}
        if code.startswith(division_prefix(viewer_node[:8])):
            return {}
        raise Forbidden(f"node {viewer_node} holds no grant for camera {code} of node {self.code}")

    async def _on_rpc(self, body: dict[str, Any]) -> Any:
        op = body.get("op")
        code = _text(body, "code")
        user = _text(body, "user")
        viewer_node = _text(body, "viewer_node")
        who = Actor(f"{user}{ACTOR_SUFFIX}{viewer_node}")
        grant = _text(body, "grant", required=False) or None
        await self._entry(code)  # NotFound unless a camera of this node
        action = {"plan": "recording.plan", "set_plan": "recording.plan"}.get(op, "recording.serve")
        if op == "snapshot":
            action = "camera.snapshot"
        try:
            use = await self._admit(
                code, viewer_node, None if action == "recording.plan" else grant
            )
        except Forbidden as e:
            await self.ctx.audit.write(
                who, action, code, "denied", {"viewer_node": viewer_node, "reason": e.detail}
            )
            raise
        if op == "timeline":
            t0, t1 = _number(body, "start"), _number(body, "end")
            return await queries.timeline_body(self.ctx, code, t0, t1)
        if op == "open":
            t0, t1 = _number(body, "start"), _number(body, "end")
            what = _text(body, "action", required=False) or "recording.playback"
            detail = {"viewer_node": viewer_node, "action": what} | use
            mp4 = await queries.serve_range(self.ctx, who, code, t0, t1, action, detail)
            now = time.monotonic()
            self.opened = {f: t for f, t in self.opened.items() if t > now}
            self.opened[mp4.path.name] = now + OPEN_TTL
            return {
                "file": mp4.path.name,
                "size": mp4.path.stat().st_size,
                "start": mp4.start,
                "end": mp4.end,
                "segments": mp4.segments,
            }
        if op == "plan":
            return await queries.plan_body(self.ctx, code)
        if op == "set_plan":
            plan = body.get("plan")
            if not isinstance(plan, dict):
                raise InvalidInput.one("plan", "must be an object", plan)
            return await queries.save_plan(self.ctx, who, code, plan)
        if op == "snapshot":
            name, attrs = await self._entry(code)
            jpeg = await queries.snapshot_jpeg(self.ctx, code, name, attrs)
            detail = {"viewer_node": viewer_node, "bytes": len(jpeg)} | use
            await self.ctx.audit.write(who, action, code, "ok", detail)
            return {"jpeg": base64.b64encode(jpeg).decode("ascii")}
        raise InvalidInput.one("op", "must be timeline, open, plan, set_plan or snapshot", op)

    def _path(self, name: str) -> Path:
        if not _FILE.match(name):
            raise InvalidInput.one("file", "is not a playback file name", name)
        if self.opened.get(name, 0.0) <= time.monotonic():
            raise Forbidden(f"playback file {name} was not opened (or expired): open it again")
        svc = self.ctx.recording
        if svc is None:
            raise Conflict("recording is not enabled on this node ([recording] enabled)")
        return svc.folder / ".playback" / name

    async def _on_read(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data or b"{}")
            if not isinstance(body, dict):
                raise InvalidInput.one("body", "must be a JSON object")
            path = self._path(_text(body, "file"))
            offset, length = int(_number(body, "offset")), int(_number(body, "length"))
            if offset < 0 or not 0 < length <= CHUNK:
                raise InvalidInput.one("length", f"must be 1..{CHUNK} from an offset >= 0", length)
            data = await asyncio.to_thread(_read, path, offset, length)
            reply = b"\x00" + data
        except ValueError as e:
            reply = b"\x01" + json.dumps({"status": 422, "detail": f"not JSON: {e}"}).encode()
        except VmeshError as e:
            reply = b"\x01" + json.dumps({"status": e.status, "detail": e.detail}).encode()
        except FileNotFoundError:
            reply = b"\x01" + json.dumps({"status": 404, "detail": "playback file gone"}).encode()
        if msg.reply:
            await msg.respond(reply)


def _read(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(length)


async def serve_recordings(ctx: NodeContext) -> CameraNode | None:
    """Answer other nodes' playback requests for this node's cameras (federation and recording
    running), else ``None``."""
    fed = ctx.federation
    if fed is None or fed.bus is None or ctx.recording is None:
        return None
    node = CameraNode(ctx, fed.bus)
    await node.start()
    return node


# --- the viewer's node ------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    node: str
    file: str
    size: int
    start: float
    end: float
    segments: int


class RemoteRecordings:
    """The viewer's node side: asks the camera's node for a camera's timeline, plan and MP4."""

    def __init__(self, ctx: NodeContext) -> None:
        fed = ctx.federation
        self.ctx = ctx
        self.bus: Bus | None = fed.bus if fed is not None else None

    def _bus(self, cam: Playable) -> Bus:
        if self.bus is None:
            raise Conflict(
                f"camera {cam.code} is recorded at node {cam.origin_node}; this node has no "
                "federation bus to reach it ([federation] enabled)"
            )
        return self.bus

    async def call(self, cam: Playable, who: Principal, op: str, **extra: Any) -> Any:
        body = {"op": op, "code": cam.code, "user": who.username,
                "viewer_node": self.ctx.config.node.code, "grant": cam.grant} | extra  # fmt: skip
        node = cam.origin_node
        assert node is not None
        try:
            return await self._bus(cam).call(node, SERVICE, body, timeout=RPC_TIMEOUT)
        except RemoteError as e:
            raise _local_error(e) from None

    async def open(
        self, cam: Playable, who: Principal, t0: float, t1: float, action: str
    ) -> RemoteFile:
        r = await self.call(cam, who, "open", start=t0, end=t1, action=action)
        assert cam.origin_node is not None
        return RemoteFile(
            cam.origin_node, str(r["file"]), int(r["size"]), float(r["start"]), float(r["end"]),
            int(r["segments"]),
        )  # fmt: skip

    async def read(self, f: RemoteFile, offset: int, length: int) -> bytes:
        assert self.bus is not None
        raw = await self.bus.request(
            f.node, READ, json.dumps({"file": f.file, "offset": offset, "length": length}).encode(),
            timeout=RPC_TIMEOUT,
        )  # fmt: skip
        if raw[:1] == b"\x00":
            return raw[1:]
        try:
            err = json.loads(raw[1:])
            status, detail = int(err.get("status", 502)), str(err.get("detail", "error"))
        except (ValueError, AttributeError):
            status, detail = 502, f"malformed reply {raw[:100]!r}"
        raise _local_error(RemoteError(f.node, READ, status, detail, []))

    async def response(
        self, f: RemoteFile, range_header: str | None, headers: dict[str, str]
    ) -> Response:
        """The file (or the byte range asked) streamed chunk by chunk from the camera's node."""
        try:
            rng = parse_range(range_header, f.size)
        except RangeNotSatisfiable:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{f.size}"})
        first, last = rng if rng is not None else (0, f.size - 1)
        head = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(last - first + 1)}
        status = 200
        if rng is not None:
            status = 206
            head["Content-Range"] = f"bytes {first}-{last}/{f.size}"
        # The first chunk is fetched before answering: a failure is still a problem+json.
        chunk = await self.read(f, first, min(CHUNK, last - first + 1))

        async def body() -> AsyncIterator[bytes]:
            at = first + len(chunk)
            yield chunk
            while at <= last:
                data = await self.read(f, at, min(CHUNK, last - at + 1))
                if not data:
                    break
                at += len(data)
                yield data

        return StreamingResponse(body(), status_code=status, media_type="video/mp4", headers=head)


def _local_error(e: RemoteError) -> VmeshError:
    """The camera node's refusal as this node's own error class (same status and detail)."""
    for cls in (NotFound, Forbidden, Conflict):
        if e.status == cls.status:
            return cls(e.detail)
    return e
