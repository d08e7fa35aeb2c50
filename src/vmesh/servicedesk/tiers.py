"""The service desk across tiers: a kiosk of one node served by the centre of another.

A village kiosk is attached to its township's node; the catalogue says which centre serves each
item (``centre_tier``: county or township). When the item is served at another tier than this
node's, ``ServiceDesk.create`` forwards the case to this node's parent (the uplink; it must be the
serving centre's node) over the bus, ``vmesh.<serving node>.rpc.servicedesk``::

    -> {"op": "create", "from": "<kiosk node>", "user": "longwu_room",
        "kiosk_code": "...", "kiosk_name": "...", "village": "...", "item_code": "..."}
    <- the case as its kiosk sees it (``ServiceDesk.case_json``)
    -> {"op": "identify" | "enqueue" | "abandon" | "sign" | "rate" | "upload" | "get" | "watch"
        | "result", "from": ..., "user": ..., "case": <id there>, ...}

The case lives at the serving node (its queue, agent, history, materials, recording, audit); the
kiosk's node keeps a **mirror** row (``sd_cases.served_by``/``remote_id``, the same number, the
state last seen) so that its page keeps its case and number while the link is cut. The serving
node keeps the kiosk's node in ``sd_cases.kiosk_node`` and acts on the case only for that node;
the kiosk's user acts there as ``<user>@<node>`` scoped to the case (audited under that name).

Images (the face photo, the document stills), the signature and the result PDF travel in the
requests, in parts of ``CHUNK`` bytes (under nats-server's 1 MiB ``max_payload``). A kiosk's page
at its node gets live updates from a relay that asks the serving node (``watch``) every ``POLL``
s; each ``watch`` also tells the serving node that the kiosk is still there (a kiosk whose relay
stops asking is abandoned after ``kiosk_resume_seconds``, as a local kiosk whose page went away).
When the serving node cannot be reached, the page is told ``{"link": "down"}`` and shown the case
as last seen; it resumes when the link is back.

Public: ``Tiers``, ``SERVICE``, ``remote_user``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from typing import TYPE_CHECKING, Any, cast

from vmesh.auth.principal import Principal
from vmesh.errors import Conflict, Forbidden, InvalidInput, NotFound, VmeshError
from vmesh.servicedesk.cases import LIVE, State
from vmesh.servicedesk.models import Case, Item

if TYPE_CHECKING:
    from vmesh.federation.bus import Bus
    from vmesh.servicedesk.service import ServiceDesk, Subscriber

log = logging.getLogger(__name__)

SERVICE = "servicedesk"
POLL = 0.5  # a relay's watch interval
CHUNK = 512 * 1024  # bytes of an image, signature or PDF per request
TIMEOUT = 5.0  # one request
Json = dict[str, Any]
CREDENTIAL = "servicedesk:"
# The states of a call: from accept until the result is out and the villager has rated.
CALL = LIVE | {State.submitted}
_RANK = {"village": 0, "township": 1, "county": 2, "city": 3, "province": 4}


def remote_user(user: str, node: str) -> str:
    return f"{user}@{node}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(field: str, text: object) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput.one(field, "must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise InvalidInput.one(field, "is not valid base64") from None


class Tiers:
    """Both halves: forwarding from a kiosk's node, serving at the centre's node."""

    def __init__(self, desk: ServiceDesk) -> None:
        self.desk = desk
        self.here = desk.ctx.config.node.code
        self.tier = str(desk.ctx.config.node.tier)
        self._parts: dict[tuple[str, int, str], dict[int, bytes]] = {}
        self._relays: dict[int, asyncio.Task[None]] = {}
        self.last: dict[int, Json] = {}  # mirror id -> the case as last seen there
        # (kiosk user, agent's seat) -> (serving node, credential) while a mirror is in a call
        self.seats: dict[tuple[str, str], tuple[str, str]] = {}

    # --- where ----------------------------------------------------------------------------------

    def bus(self) -> Bus | None:
        fed = self.desk.ctx.federation
        return fed.bus if fed is not None else None

    def serving_node(self, item: Item) -> str | None:
        """None when ``item`` is served here (its centre's tier is this node's, or a lower one:
        a node of a higher tier serves every item of its kiosks); else the parent node, which
        must serve it (``Conflict`` without a link to one)."""
        if _RANK.get(self.tier, 0) >= _RANK.get(item.centre_tier, 0):
            return None
        fed = self.desk.ctx.federation
        registry = getattr(fed, "registry", None) if fed is not None else None
        up = getattr(registry, "uplink", None)
        parent = up.parent_code if up is not None else None
        if self.bus() is None or not parent:
            raise Conflict(
                f"{item.name} is served by a {item.centre_tier} centre; this node is a "
                f"{self.tier} and has no link to a parent node to forward the case to"
            )
        return str(parent)

    async def call(self, node: str, op: str, who: Principal | None, **body: Any) -> Any:
        bus = self.bus()
        if bus is None:
            raise Conflict("this node runs without [federation]: cannot reach the serving node")
        msg = {"op": op, "from": self.here, **body}
        if who is not None:
            msg["user"] = who.username
        return await bus.call(node, SERVICE, msg, timeout=TIMEOUT)

    # --- the kiosk's node: forwarding -------------------------------------------------------

    def local_json(self, mirror: Case, remote: Json, *, link: str = "up") -> Json:
        """The serving node's case as this node's kiosk page sees it (this node's id and URLs)."""
        out = dict(remote)
        out["id"] = mirror.id
        out["served_by"] = mirror.served_by
        out["link"] = link
        if remote.get("result_url"):
            out["result_url"] = f"/api/servicedesk/cases/{mirror.id}/result.pdf"
        out["materials"] = [
            {**m, "url": None} for m in remote.get("materials") or [] if isinstance(m, dict)
        ]
        return out

    async def remember(self, mirror: Case, remote: Json) -> Json:
        """Keep what the serving node said (the mirror's state follows it)."""
        self.last[mirror.id] = remote
        state = remote.get("state")
        seat = remote.get("agent_seat")
        for key in [k for k, v in self.seats.items() if v[1] == self.credential(mirror)]:
            del self.seats[key]
        if state in CALL and isinstance(seat, str):
            self.seats[(mirror.kiosk_user, seat)] = (str(mirror.served_by), self.credential(mirror))
        if isinstance(state, str) and state != mirror.state:
            await self.desk.mirror_state(mirror.id, state)
            mirror.state = state
        return self.local_json(mirror, remote)

    async def forward(self, who: Principal, mirror: Case, op: str, **body: Any) -> Json:
        remote = await self.call(str(mirror.served_by), op, who, case=mirror.remote_id, **body)
        out = await self.remember(mirror, remote)
        self.desk.kick()
        return out

    async def get(self, who: Principal, mirror: Case) -> Json:
        """The case from the serving node; as last seen (``link: down``) when it is cut off."""
        try:
            return await self.forward(who, mirror, "get")
        except VmeshError as e:
            if getattr(e, "status", 0) not in (502, 503, 504):
                raise
            last = self.last.get(mirror.id) or {
                "number": mirror.number,
                "state": mirror.state,
                "item": {"code": mirror.item_code},
                "kiosk_code": mirror.kiosk_code,
                "materials": [],
                "events": [],
            }
            out = self.local_json(mirror, last, link="down")
            out["state"] = mirror.state
            out["link_problem"] = e.detail
            return out

    async def upload(
        self,
        who: Principal,
        mirror: Case,
        upload_id: str,
        kind: str,
        name: str,
        data: bytes,
    ) -> Json:
        parts = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
        out: Any = None
        for n, part in enumerate(parts):
            out = await self.call(
                str(mirror.served_by),
                "upload",
                who,
                case=mirror.remote_id,
                upload_id=upload_id,
                kind=kind,
                name=name,
                part=n,
                parts=len(parts),
                data=_b64(part),
            )
        self.desk.kick()
        return {**out, "url": None}

    async def result(self, who: Principal, mirror: Case) -> bytes:
        body = b""
        while True:
            r = await self.call(
                str(mirror.served_by), "result", who, case=mirror.remote_id, offset=len(body)
            )
            body += _unb64("data", r["data"])
            if len(body) >= int(r["total"]) or not r["data"]:
                return body

    # --- the call's media through the fabric ---------------------------------------------------

    @staticmethod
    def credential(mirror: Case) -> str:
        """What the kiosk's node carries to view the seat of the case's agent at the serving
        node: ``servicedesk:<serving node>:<case id there>`` (the fabric's grant field)."""
        return f"{CREDENTIAL}{mirror.served_by}:{mirror.remote_id}"

    def remote_seat(self, who: Principal, code: str) -> tuple[str, str] | None:
        """(serving node, a name) when ``code`` is the seat of the agent of another node serving
        ``who``'s kiosk now (the kiosk page may watch it: ``vmesh.media.api``)."""
        hit = self.seats.get((who.username, code))
        return None if hit is None else (hit[0], "坐席")

    def admit_streams(self) -> None:
        """Wrap the fabric's ``credentials`` and ``admit`` (as the grants' and conferences' are):
        at the kiosk's node, a kiosk user's view of its agent's seat carries the case's
        credential; at the serving node, that credential admits the seat's video and audio to
        the case's kiosk node while the case is in a call. Anything else goes on as before."""
        fabric = self.desk.ctx.fabric
        if fabric is None or getattr(fabric, "servicedesk_admission", False):
            return
        fabric.servicedesk_admission = True  # type: ignore[attr-defined]
        creds, admit = fabric.credentials, fabric.admit

        def credentials(stream: str, user: str) -> dict[str, Any]:
            hit = self.seats.get((user, stream.removesuffix("/audio")))
            if hit is not None:
                return {"grant": hit[1]}
            return creds(stream, user) if creds is not None else {}

        async def admit_stream(stream: str, viewer_node: str, grant: str | None) -> Any:
            if grant is None or not grant.startswith(CREDENTIAL):
                return await admit(stream, viewer_node, grant) if admit is not None else None
            host, _, case_id = grant[len(CREDENTIAL) :].partition(":")
            if host == self.here and case_id.isdigit():
                async with self.desk.db.sessions() as s:
                    case = await s.get(Case, int(case_id))
                if (
                    case is not None
                    and case.kiosk_node == viewer_node
                    and case.state in CALL
                    and stream.removesuffix("/audio") == case.agent_seat
                ):
                    return None
            raise Forbidden(f"{stream} is not the seat of a call of case {case_id} of {host}")

        fabric.credentials = credentials
        fabric.admit = admit_stream

    # --- live updates at the kiosk's node -----------------------------------------------------

    def follow(self, sub: Subscriber, mirror: Case) -> None:
        """Relay the serving node's updates of ``mirror`` to this node's kiosk pages."""
        t = self._relays.get(mirror.id)
        if t is None or t.done():
            self._relays[mirror.id] = asyncio.create_task(
                self._relay(sub.principal, mirror), name=f"servicedesk-relay-{mirror.id}"
            )

    async def _relay(self, who: Principal, mirror: Case) -> None:
        last: Json | None = None
        down = False
        while self.desk.watching(mirror.id):
            try:
                msg = await self.call(str(mirror.served_by), "watch", who, case=mirror.remote_id)
                remote = msg.pop("case")
                await self.remember(mirror, remote)
                msg.update(id=mirror.id, link="up")
                if msg.get("result_url"):
                    msg["result_url"] = f"/api/servicedesk/cases/{mirror.id}/result.pdf"
                same = last is not None and {**last, "at": ""} == {**msg, "at": ""}
                if not same or down:
                    self.desk.tell(mirror.id, msg)
                last, down = msg, False
            except VmeshError as e:
                if not down:
                    log.info("case=%s serving node unreachable: %s", mirror.number, e.detail)
                    self.desk.tell(
                        mirror.id,
                        {
                            "type": "kiosk",
                            "id": mirror.id,
                            "number": mirror.number,
                            "state": mirror.state,
                            "link": "down",
                            "reason": e.detail,
                        },
                    )
                down = True
            except Exception:
                log.exception("case=%s relay failed", mirror.number)
            await asyncio.sleep(POLL)
        self._relays.pop(mirror.id, None)

    async def stop(self) -> None:
        for t in list(self._relays.values()):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._relays.clear()

    # --- the serving node -----------------------------------------------------------------------

    async def serve(self) -> None:
        bus = self.bus()
        if bus is not None:
            await bus.serve(SERVICE, self.on_rpc)

    async def on_rpc(self, body: Json) -> Any:
        node = body.get("from")
        user = body.get("user")
        if not isinstance(node, str) or len(node) != 20 or not node.isdigit():
            raise InvalidInput.one("from", "must be the asking node's 20-digit code", node)
        if not isinstance(user, str) or not user or len(user) > 40:
            raise InvalidInput.one("user", "must be the kiosk user's name (1-40 characters)")
        op = body.get("op")
        if op == "create":
            return await self.desk.create_remote(
                node,
                user,
                str(body.get("kiosk_code") or ""),
                str(body.get("item_code") or ""),
            )
        case = await self._case_of(node, body.get("case"))
        who = self._kiosk(case, user, node)
        d = self.desk
        match op:
            case "get":
                return await d.case_json(who, case.id)
            case "watch":
                d.kiosk_seen(case.id)
                return {**await d.kiosk_message(case.id), "case": await d.case_json(who, case.id)}
            case "identify":
                from vmesh.servicedesk.idcard import parse_card

                card = body.get("card")
                if not isinstance(card, dict):
                    raise InvalidInput.one("card", "must be an object")
                return await d.identify(who, case.id, parse_card(card))
            case "enqueue":
                return await d.enqueue(who, case.id)
            case "abandon":
                await d.abandon(who, case.id, "the villager left")
                return await d.case_json(who, case.id)
            case "sign":
                return await d.sign(who, case.id, _unb64("data", body.get("data")))
            case "rate":
                grade = cast(int, body.get("grade"))  # ServiceDesk.rate checks it
                return await d.rate(who, case.id, grade, str(body.get("comment") or ""))
            case "upload":
                return await self._upload_part(who, case, body)
            case "result":
                data, _ = await d.result_file(who, case.id)
                offset = body.get("offset")
                if not isinstance(offset, int) or offset < 0:
                    raise InvalidInput.one("offset", "must be a byte offset", offset)
                return {"data": _b64(data[offset : offset + CHUNK]), "total": len(data)}
        raise InvalidInput.one("op", "unknown operation", str(op))

    async def _case_of(self, node: str, case_id: object) -> Case:
        if not isinstance(case_id, int):
            raise InvalidInput.one("case", "must be the case id at this node", case_id)
        async with self.desk.db.sessions() as s:
            case = await s.get(Case, case_id)
        if case is None or case.kiosk_node != node:
            raise NotFound(f"case {case_id} is not a case of a kiosk of node {node}")
        return case

    @staticmethod
    def _kiosk(case: Case, user: str, node: str) -> Principal:
        """The kiosk's user as it acts here: on this one case only."""
        return Principal(
            user_id=0,
            username=remote_user(user, node),
            roles=frozenset({"operator"}),
            scope_code=case.kiosk_code,
            scope_path=case.kiosk_path,
        )

    async def _upload_part(self, who: Principal, case: Case, body: Json) -> Json:
        upload_id, part, parts = body.get("upload_id"), body.get("part"), body.get("parts")
        if not isinstance(upload_id, str) or not upload_id:
            raise InvalidInput.one("upload_id", "must be 1-64 characters")
        limit = int(self.desk.cfg.max_image_mb * 1024 * 1024) // CHUNK + 1
        if not isinstance(parts, int) or not 1 <= parts <= limit:
            raise InvalidInput.one("parts", f"must be 1..{limit}", parts)
        if not isinstance(part, int) or not 0 <= part < parts:
            raise InvalidInput.one("part", f"must be 0..{parts - 1}", part)
        key = (str(case.kiosk_node), case.id, upload_id)
        got = self._parts.setdefault(key, {})
        got[part] = _unb64("data", body.get("data"))
        if len(got) < parts:
            return {"part": part, "parts": parts}
        data = b"".join(got[i] for i in range(parts))
        del self._parts[key]
        return await self.desk.upload(
            who,
            case.id,
            upload_id,
            str(body.get("kind") or ""),
            str(body.get("name") or ""),
            data,
        )
