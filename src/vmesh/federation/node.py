"""``Federation``: a node's part in the network, started before its HTTP API, stopped after it.

Start order: nats-server (``NatsServer``, rendered into the data folder, supervised) → the
``Bus`` to it → the node's catalogue stream ``CAT_<node>`` (created, or updated to source every
known child) → the responders (``network.announce``, ``network.ping``) → the background tasks:
announcing to the parent and pinging children (``NetworkRegistry``), publishing directory
changes (``CataloguePublisher``), applying the stream (``CatalogueApplier``), the downward org
tree (``orgtree.OrgTree``: its ``ORG_<node>`` stream sourcing the parent's, passing units down,
applying what came down). ``stop()`` undoes
them in reverse order.

A child's first announcement adds its stream as a source of this node's stream (the stream's
configuration is kept by JetStream, and the children are in ``federation_nodes``, so a restart
keeps sourcing them).

``view()`` is what ``GET /api/network`` shows. Public: ``Federation``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from vmesh import __version__
from vmesh.federation import catalogue, orgtree
from vmesh.federation.bus import Bus
from vmesh.federation.links import NetworkRegistry, NodeInfo, node_row_dict
from vmesh.federation.service import NatsServer
from vmesh.node.context import NodeContext
from vmesh.node.tasks import cancel_tasks

log = logging.getLogger(__name__)


class Federation:
    def __init__(self, ctx: NodeContext, *, server: NatsServer | None = None) -> None:
        self.ctx = ctx
        self.code = ctx.config.node.code
        self.server = server or NatsServer.for_node(ctx.config)
        self.bus: Bus | None = None
        self.js: Any = None
        self.registry: NetworkRegistry | None = None
        self.publisher: catalogue.CataloguePublisher | None = None
        self.applier: catalogue.CatalogueApplier | None = None
        self.orgtree: orgtree.OrgTree | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stream_lock = asyncio.Lock()

    async def start(self) -> None:
        cfg = self.ctx.config
        fed = cfg.federation
        await self.server.start()
        try:
            self.bus = await Bus.connect(self.server.client_url, self.code)
            self.js = self.bus.nc.jetstream(domain=self.code)
            s = self.server.settings
            me = NodeInfo(
                code=self.code,
                tier=str(cfg.node.tier),
                name=cfg.node.name,
                addresses=list(fed.addresses),
                versions={"vmesh": __version__, "nats-server": self.server.version or ""},
                lat=fed.lat,
                lon=fed.lon,
            )
            self.registry = NetworkRegistry(
                self.ctx.db,
                self.bus,
                me,
                parents=s.parents,
                tls=(s.ca_file, s.cert_file, s.key_file),
                on_child=self._source_child,
                leafz=self.server.leafz,
                drop_leafs_from=self.server.drop_leafs_from,
            )
            await self.registry.record_self()
            await self._ensure_stream(await self.registry.children())
            await self.registry.serve()
            self.publisher = catalogue.CataloguePublisher(self.ctx.db, self.js, self.code)
            self.applier = catalogue.CatalogueApplier(self.ctx.db, self.js, self.code)
            await self.applier.start()
            registry = self.registry
            self.orgtree = orgtree.OrgTree(
                self.ctx.db,
                self.js,
                self.code,
                parent=lambda: registry.uplink.parent_code if registry.uplink else None,
                children=self._children,
                interval=fed.announce_seconds,
            )
            await self.orgtree.start(fed.catalogue_scan_seconds)
            self._tasks = [
                asyncio.create_task(
                    self.registry.run(fed.announce_seconds, fed.link_check_seconds),
                    name="federation.network",
                ),
                asyncio.create_task(
                    self.publisher.run(fed.catalogue_scan_seconds), name="federation.publish"
                ),
                asyncio.create_task(self.applier.run(), name="federation.apply"),
            ]
        except BaseException:
            await self.stop()
            raise
        log.info("federation node=%s started", self.code)

    async def _ensure_stream(self, children: Sequence[str]) -> None:
        from nats.js.errors import NotFoundError

        async with self._stream_lock:
            name = catalogue.stream_name(self.code)
            try:
                info = await self.js.stream_info(name)
            except NotFoundError:
                await self.js.add_stream(catalogue.stream_config(self.code, children))
                return
            have = {src.name for src in info.config.sources or []}
            want = {catalogue.stream_name(c) for c in children}
            if not want <= have:
                known = list(children) + [
                    n[4:] for n in have if n.startswith("CAT_") and n[4:] not in children
                ]
                await self.js.update_stream(catalogue.stream_config(self.code, known))

    async def _source_child(self, child: str) -> None:
        await self._ensure_stream([*(await self._children()), child])

    async def _children(self) -> list[str]:
        assert self.registry is not None
        return await self.registry.children()

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)
        if self.orgtree is not None:
            await self.orgtree.stop()
            self.orgtree = None
        if self.applier is not None:
            await self.applier.stop()
        if self.bus is not None:
            await self.bus.close()
            self.bus = None
        await self.server.stop()
        log.info("federation node=%s stopped", self.code)

    # --- what the network map shows ---------------------------------------------------------------

    async def sources(self) -> dict[str, dict[str, Any]]:
        """Per child: the catalogue stream source's lag (messages not yet copied here)."""
        try:
            info = await self.js.stream_info(catalogue.stream_name(self.code))
        except Exception as e:  # the local server restarting: show no numbers rather than fail
            log.debug("federation node=%s stream info: %s", self.code, e)
            return {}
        out = {}
        for src in info.sources or []:
            code = src.name[4:] if src.name.startswith("CAT_") else src.name
            out[code] = {
                "pending": src.lag,
                "active_ms": None if src.active is None else round(src.active / 1e6, 1),
                "error": getattr(src.error, "description", None) if src.error else None,
            }
        out[self.code] = {"stream_messages": info.state.messages}
        return out

    async def view(self, division_prefix: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(about this node, the subtree's nodes within ``division_prefix``, tree order)."""
        assert self.registry is not None
        nodes = await self.registry.subtree()
        stats = await catalogue.origin_stats(self.ctx.db)
        sources = await self.sources()
        items = []
        for n in nodes:
            if not n.code.startswith(division_prefix):
                continue
            d = node_row_dict(n)
            d["self"] = n.code == self.code
            st = stats.get(n.code, {})
            src = sources.get(n.code, {})
            d["sync"] = {
                "pending": src.get("pending"),
                "source_error": src.get("error"),
                "applied": st.get("applied", 0),
                "ignored": st.get("ignored", 0),
                "entries": st.get("entries", 0),
                "last_applied_at": st.get("last_applied_at"),
            }
            items.append(d)
        up = self.registry.uplink
        about = {
            "code": self.code,
            "name": self.ctx.config.node.name,
            "tier": str(self.ctx.config.node.tier),
            "uplink": None
            if up is None
            else {
                "parent_code": up.parent_code,
                "state": up.state,
                "rtt_ms": up.rtt_ms,
                "last_seen": up.last_seen,
                "last_error": up.last_error or None,
            },
            "catalogue": {
                "stream_messages": sources.get(self.code, {}).get("stream_messages"),
                "applied_seq": self.applier.stats.last_seq if self.applier else None,
                "published": self.publisher.stats.published if self.publisher else 0,
                "publish_error": (self.publisher.stats.last_error or None)
                if self.publisher
                else None,
            },
        }
        return about, items
