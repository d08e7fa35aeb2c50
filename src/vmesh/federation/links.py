"""Nodes and links: who is in this node's subtree, and how each uplink is doing.

A child announces itself to its parent (``network.announce`` over the ``Bus``) when it connects
and then every ``announce_seconds``: its code, tier, name, addresses, versions, position and the
nodes of its own subtree with their uplinks as it knows them. The parent stores the child (its
link measured by the parent itself) and the child's subtree (links as reported by the child), so
every node holds its whole subtree, the province the whole network.

The parent pings each direct child (``network.ping``) every ``link_check_seconds``: an answer
makes the link ``up`` with the round-trip time and ``last_seen``; no answer makes it ``down``.
The child learns its parent's code from the parent itself: ``identify_parent`` reads the INFO
that nats-server sends on the leaf port (``server_name`` is the node's code) and checks it against
the parent's certificate (mutual TLS, the network CA), then closes.

Calls: ``Bus`` (request/reply), the node's database (``federation_nodes``).
Public: ``NodeInfo``, ``ParentIdentity``, ``identify_parent``, ``NetworkRegistry``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from vmesh.errors import InvalidInput, VmeshError
from vmesh.federation.bus import Bus
from vmesh.federation.models import KnownNode
from vmesh.federation.natsconf import parse_parent_url
from vmesh.identity.codes import TIER_ORDER, parse_code
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

ANNOUNCE = "network.announce"
PING = "network.ping"


@dataclass(frozen=True)
class NodeInfo:
    """What a node says about itself in an announcement."""

    code: str
    tier: str
    name: str
    addresses: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    lat: float | None = None
    lon: float | None = None

    @classmethod
    def from_body(cls, body: Any, where: str = "node") -> NodeInfo:
        if not isinstance(body, dict):
            raise InvalidInput.one(where, "must be an object")
        code = parse_code(body.get("code"), f"{where}.code").text
        tier = body.get("tier")
        if tier not in {t.value for t in TIER_ORDER}:
            raise InvalidInput.one(f"{where}.tier", "is not a tier", str(tier))
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput.one(f"{where}.name", "is required text", str(name))
        addresses = body.get("addresses") or []
        versions = body.get("versions") or {}
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise InvalidInput.one(f"{where}.addresses", "must be a list of text")
        if not isinstance(versions, dict):
            raise InvalidInput.one(f"{where}.versions", "must be an object")
        lat, lon = body.get("lat"), body.get("lon")
        for k, v, lim in (("lat", lat, 90), ("lon", lon, 180)):
            if v is not None and (not isinstance(v, int | float) or not -lim <= v <= lim):
                raise InvalidInput.one(f"{where}.{k}", f"must be a number -{lim}..{lim}", str(v))
        return cls(
            code, str(tier), name, list(addresses), {str(k): str(v) for k, v in versions.items()},
            lat, lon,
        )  # fmt: skip


@dataclass(frozen=True)
class ParentIdentity:
    code: str
    nats_version: str
    url: str


async def identify_parent(
    url: str,
    ca_file: Path,
    cert_file: Path,
    key_file: Path,
    *,
    timeout: float = 3.0,  # noqa: ASYNC109
) -> ParentIdentity:
    """The code of the node answering at leaf ``url``, from its INFO, checked against its
    certificate (CN = code, issued by the network CA). ``OSError``/``ValueError`` when not."""
    _, host, port = parse_parent_url(url)

    async def go() -> ParentIdentity:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            line = await reader.readline()
            if not line.startswith(b"INFO "):
                raise ValueError(f"{url}: not a nats-server leaf port (got {line[:40]!r})")
            info = json.loads(line[5:])
            name = str(info.get("server_name", ""))
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
            ctx.load_cert_chain(str(cert_file), str(key_file))
            await writer.start_tls(ctx, server_hostname=host)
            cert = writer.get_extra_info("peercert") or {}
            cn = next(
                (v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), ""
            )
            if cn != name:
                raise ValueError(f"{url}: server name {name!r} but certificate names {cn!r}")
            return ParentIdentity(parse_code(name, "parent").text, str(info.get("version")), url)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    try:
        async with asyncio.timeout(timeout):
            return await go()
    except TimeoutError:
        raise OSError(f"{url}: no answer within {timeout:g} s") from None
    except InvalidInput as e:
        raise ValueError(f"{url}: {e.errors[0].reason}") from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(d: datetime | None) -> datetime | None:
    if d is None:
        return None
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def node_row_dict(n: KnownNode) -> dict[str, Any]:
    return {
        "code": n.code,
        "parent_code": n.parent_code,
        "tier": n.tier,
        "name": n.name,
        "addresses": json.loads(n.addresses or "[]"),
        "versions": json.loads(n.versions or "{}"),
        "lat": n.lat,
        "lon": n.lon,
        "announced_at": _utc(n.announced_at),
        "link": {
            "state": n.link_state,
            "rtt_ms": n.rtt_ms,
            "last_seen": _utc(n.last_seen),
            "reported_by": n.reported_by,
        },
    }


@dataclass
class Uplink:
    parent_code: str | None = None
    url: str = ""
    state: str = "unknown"
    rtt_ms: float | None = None
    last_seen: datetime | None = None
    last_error: str = ""


class NetworkRegistry:
    """This node's subtree in ``federation_nodes``; announces upward, answers and pings children."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        me: NodeInfo,
        *,
        parents: Sequence[str] = (),
        tls: tuple[Path, Path, Path] | None = None,
        on_child: Callable[[str], Awaitable[None]] | None = None,
        call_timeout: float = 3.0,
        leafz: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
        drop_leafs_from: Callable[[str], Awaitable[int]] | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.me = me
        self.parents = list(parents)
        self.tls = tls
        self.on_child = on_child
        self.call_timeout = call_timeout
        self.leafz = leafz  # the node's nats-server's leaf links (where the uplink really is)
        self.drop_leafs_from = drop_leafs_from  # close a dead child's leaf link (NatsServer)
        self._failed_pings: dict[str, int] = {}
        self.uplink = Uplink() if self.parents else None
        self._known_children: set[str] = set()
        self._parent_codes: dict[str, str] = {}  # parent URL → the code it answered with
        # Bumped after a commit that adds a node or moves one to another parent: the tree's
        # shape (``subtree``) is the same while it is (``shape`` is kept by it).
        self.shape_version = 0
        self._shape: tuple[int, dict[str, str | None]] | None = None  # (version, ``shape()``)

    # --- storage --------------------------------------------------------------------------------

    async def _upsert(
        self,
        info: NodeInfo | dict[str, Any],
        *,
        parent_code: str | None,
        link: dict[str, Any] | None,
        reported_by: str | None,
        announced_at: datetime | None,
    ) -> None:
        d = asdict(info) if isinstance(info, NodeInfo) else info
        async with self.db.transaction() as s:
            row = await s.get(KnownNode, d["code"])
            reshaped = row is None or row.parent_code != parent_code
            if row is None:
                row = KnownNode(code=d["code"], updated_at=_now())
                s.add(row)
            row.parent_code = parent_code
            row.tier = d["tier"]
            row.name = d["name"]
            row.addresses = json.dumps(d.get("addresses") or [], ensure_ascii=False)
            row.versions = json.dumps(d.get("versions") or {}, ensure_ascii=False)
            row.lat, row.lon = d.get("lat"), d.get("lon")
            if announced_at is not None:
                row.announced_at = announced_at
            if link is not None:
                row.link_state = str(link.get("state") or "unknown")
                row.rtt_ms = link.get("rtt_ms")
                seen = link.get("last_seen")
                row.last_seen = datetime.fromisoformat(seen) if isinstance(seen, str) else seen
                row.reported_by = reported_by
            row.updated_at = _now()
        if reshaped:
            self.shape_version += 1

    async def record_self(self) -> None:
        up = self.uplink
        await self._upsert(
            self.me,
            parent_code=up.parent_code if up else None,
            link=(
                {"state": up.state, "rtt_ms": up.rtt_ms, "last_seen": up.last_seen}
                if up
                else {"state": "none", "rtt_ms": None, "last_seen": None}
            ),
            reported_by=self.me.code,
            announced_at=_now(),
        )

    async def subtree(self) -> list[KnownNode]:
        """Every known node of this subtree (this node first), parents before children."""
        async with self.db.sessions() as s:
            rows = list((await s.scalars(select(KnownNode))).all())
        by_parent: dict[str | None, list[KnownNode]] = {}
        for r in rows:
            by_parent.setdefault(r.parent_code, []).append(r)
        out: list[KnownNode] = []
        seen: set[str] = set()

        def walk(code: str) -> None:
            for r in sorted(by_parent.get(code, []), key=lambda r: r.code):
                if r.code not in seen:
                    seen.add(r.code)
                    out.append(r)
                    walk(r.code)

        me = next((r for r in rows if r.code == self.me.code), None)
        if me is not None:
            seen.add(me.code)
            out.append(me)
        walk(self.me.code)
        return out

    async def shape(self) -> dict[str, str | None]:
        """Every node of this subtree → its parent, read again only when ``shape_version``
        moved (the fabric asks for it at every stream it opens; at the province it is every node
        of the network). The mapping is shared: do not change it."""
        version = self.shape_version
        if self._shape is None or self._shape[0] != version:
            self._shape = (version, {n.code: n.parent_code for n in await self.subtree()})
        return self._shape[1]

    async def children(self) -> list[str]:
        async with self.db.sessions() as s:
            return list(
                (
                    await s.scalars(
                        select(KnownNode.code).where(
                            KnownNode.parent_code == self.me.code, KnownNode.code != self.me.code
                        )
                    )
                ).all()
            )

    # --- the parent's side ----------------------------------------------------------------------

    async def serve(self) -> None:
        await self.bus.serve(ANNOUNCE, self._on_announce)
        await self.bus.serve(PING, self._on_ping)

    async def _on_ping(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"code": self.me.code, "at": _now().isoformat()}

    async def _on_announce(self, body: dict[str, Any]) -> dict[str, Any]:
        child = NodeInfo.from_body(body.get("node"))
        if child.code == self.me.code:
            raise InvalidInput.one("node.code", "is this node's own code", child.code)
        subtree = body.get("subtree") or []
        if not isinstance(subtree, list):
            raise InvalidInput.one("subtree", "must be a list")
        now = _now()
        await self._upsert(
            child,
            parent_code=self.me.code,
            link={"state": "up", "rtt_ms": body.get("rtt_ms"), "last_seen": now},
            reported_by=self.me.code,
            announced_at=now,
        )
        for i, item in enumerate(subtree):
            info = NodeInfo.from_body(item, f"subtree[{i}]")
            parent = item.get("parent_code")
            if info.code in (self.me.code, child.code) or not isinstance(parent, str):
                continue
            link = item.get("link") if isinstance(item.get("link"), dict) else None
            if await self._moved_away(info.code, parent, link):
                continue
            announced = item.get("announced_at")
            await self._upsert(
                info,
                parent_code=parent,
                link=link,
                reported_by=child.code,
                announced_at=datetime.fromisoformat(announced)
                if isinstance(announced, str)
                else None,
            )
        if child.code not in self._known_children:
            self._known_children.add(child.code)
            log.info("network node=%s child=%s announced", self.me.code, child.code)
            if self.on_child is not None:
                await self.on_child(child.code)
        return {"code": self.me.code, "name": self.me.name, "tier": self.me.tier}

    async def _moved_away(self, code: str, parent: str, link: dict[str, Any] | None) -> bool:
        """Whether a report of ``code`` under ``parent`` is older than what this node knows of
        it under another parent: a dual-homed node that moved to its second parent is still
        reported (link down, last seen before the cut) by the first. Newest evidence wins."""
        async with self.db.sessions() as s:
            row = await s.get(KnownNode, code)
        if row is None or row.parent_code in (None, parent):
            return False
        known = _utc(row.last_seen)
        seen = link.get("last_seen") if link else None
        try:
            reported = _utc(datetime.fromisoformat(seen)) if isinstance(seen, str) else None
        except ValueError:
            reported = None
        return known is not None and (reported is None or reported < known)

    async def _drop_dead_leaf(self, code: str) -> None:
        """Child ``code`` did not answer a ping: close its leaf link here if nats-server still
        holds it (found by the child's announced addresses), so that a dual-homed child can move
        to its second parent (nats-server 2.9 calls that a loop while the dead link stays, and
        the child then waits 30 s). It must happen before the child's own nats-server gives the
        link up (``ping_interval`` × 3); a live child just dials again (``reconnect``: 1 s)."""
        if self.drop_leafs_from is None:
            return
        async with self.db.sessions() as s:
            row = await s.get(KnownNode, code)
        hosts = {urlsplit(a).hostname for a in json.loads(row.addresses or "[]")} if row else set()
        for host in sorted(h for h in hosts if h):
            try:
                n = await self.drop_leafs_from(host)
            except Exception as e:
                log.warning("network node=%s child=%s leaf not closed: %s", self.me.code, code, e)
                continue
            if n:
                log.info("network node=%s child=%s dead leaf link closed", self.me.code, code)

    async def check_children(self) -> None:
        """Ping every direct child once; record up (with RTT) or down."""

        async def one(code: str) -> None:
            t0 = time.perf_counter()
            try:
                await self.bus.call(code, PING, {}, timeout=self.call_timeout)
            except VmeshError as e:
                link: dict[str, Any] = {"state": "down", "rtt_ms": None}
                log.debug("network node=%s child=%s ping failed: %s", self.me.code, code, e)
                self._failed_pings[code] = failed = self._failed_pings.get(code, 0) + 1
                if failed == 1:  # before the child's own nats-server gives the link up
                    await self._drop_dead_leaf(code)
            else:
                self._failed_pings.pop(code, None)
                link = {
                    "state": "up",
                    "rtt_ms": round((time.perf_counter() - t0) * 1000, 3),
                    "last_seen": _now(),
                }
            async with self.db.transaction() as s:
                row = await s.get(KnownNode, code)
                if row is None:
                    return
                if row.link_state != link["state"]:
                    log.info(
                        "network node=%s child=%s link %s -> %s",
                        self.me.code,
                        code,
                        row.link_state,
                        link["state"],
                    )
                row.link_state = link["state"]
                row.rtt_ms = link["rtt_ms"]
                if "last_seen" in link:
                    row.last_seen = link["last_seen"]
                row.reported_by = self.me.code
                row.updated_at = _now()

        await asyncio.gather(*(one(c) for c in await self.children()))

    # --- the child's side -----------------------------------------------------------------------

    async def _connected_parent(self) -> list[str]:
        """The parent URL the node's nats-server's leaf remote is connected to (``/leafz``: the
        spoke link's ip:port), as a one-item list; ``[]`` when not connected (yet); every URL
        when that cannot be told (no monitor, a DNS name in the URL)."""
        if self.leafz is None or len(self.parents) < 2:
            return self.parents
        try:
            leafs = await self.leafz()
        except Exception as e:
            log.debug("network node=%s leafz failed: %s", self.me.code, e)
            return self.parents
        links = {(str(x.get("ip")), x.get("port")) for x in leafs}
        by_ip = True
        for url in self.parents:
            _, host, port = parse_parent_url(url)
            if (host, port) in links:
                return [url]
            by_ip = by_ip and _is_ip(host)
        return [] if by_ip else self.parents

    async def _identify(self) -> None:
        assert self.uplink is not None and self.tls is not None
        errors = []
        urls = await self._connected_parent()
        if not urls:
            raise OSError("the leaf link to a parent is not connected")
        for url in urls:
            try:
                code = await self._ask_parent(url)
            except (OSError, ValueError, ssl.SSLError) as e:
                errors.append(str(e) or type(e).__name__)
                continue
            self.uplink.parent_code, self.uplink.url = code, url
            return
        raise OSError("; ".join(errors))

    async def _ask_parent(self, url: str) -> str:
        """The code of the parent at leaf ``url`` (``identify_parent``), kept by URL for
        ``parent_codes``."""
        assert self.tls is not None
        ident = await identify_parent(url, *self.tls, timeout=self.call_timeout)
        self._parent_codes[url] = ident.code
        return ident.code

    async def parent_codes(self) -> list[str]:
        """The codes of this node's configured parents, in configuration order: each parent's
        leaf port is asked once (``identify_parent``), a parent that does not answer is left out
        and asked again next time. The fabric's hot standby uses them (a dual-homed node)."""
        if self.tls is None:
            return [self.uplink.parent_code] if self.uplink and self.uplink.parent_code else []
        out = []
        for url in self.parents:
            code = self._parent_codes.get(url)
            if code is None:
                try:
                    code = await self._ask_parent(url)
                except (OSError, ValueError, ssl.SSLError) as e:
                    log.debug("network node=%s parent %s not identified: %s", self.me.code, url, e)
                    continue
            out.append(code)
        return out

    async def announce(self) -> None:
        """Announce this node (and its subtree) to its parent once; updates ``uplink``."""
        up = self.uplink
        if up is None:
            await self.record_self()
            return
        try:
            if up.parent_code is None:
                await self._identify()
            assert up.parent_code is not None
            subtree = [node_row_dict(n) for n in await self.subtree() if n.code != self.me.code]
            body = {
                "node": asdict(self.me),
                "rtt_ms": up.rtt_ms,
                "subtree": json.loads(json.dumps(subtree, default=str)),
            }
            t0 = time.perf_counter()
            await self.bus.call(up.parent_code, ANNOUNCE, body, timeout=self.call_timeout)
        except (VmeshError, OSError) as e:
            if up.state != "down":
                log.info("network node=%s uplink down: %s", self.me.code, e)
            up.state, up.rtt_ms, up.last_error = "down", None, str(e)
            if len(self.parents) > 1:
                up.parent_code = None  # the leaf may have moved to the other parent
        else:
            if up.state != "up":
                log.info("network node=%s uplink up to %s", self.me.code, up.parent_code)
            up.state, up.last_error = "up", ""
            up.rtt_ms = round((time.perf_counter() - t0) * 1000, 3)
            up.last_seen = _now()
        await self.record_self()

    async def run(self, announce_seconds: float, link_check_seconds: float) -> None:
        """Announce and check children periodically until cancelled."""
        next_check = next_announce = 0.0
        while True:
            try:
                if time.monotonic() >= next_announce:
                    next_announce = time.monotonic() + announce_seconds
                    await self.announce()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + link_check_seconds
                    await self.check_children()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("network node=%s round failed", self.me.code)
            await asyncio.sleep(min(announce_seconds, link_check_seconds))
