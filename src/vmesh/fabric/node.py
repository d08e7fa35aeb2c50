"""The fabric's part in ``vmesh node run``: a ``FabricService`` wired to the node's federation bus,
media switch, directory and audit log (started after federation and media, stopped before them).

- the tree: this node's subtree from ``federation_nodes`` (what its children announce) and its
  parent (the uplink identified by the federation, else its own row);
- local sources: ``vmesh.media.remote.FabricSources`` (cameras of this node's directory and
  browser publications here, video and audio);
- ``fabric.serve`` rows are written by the actor ``fabric``;
- the media service gets the agent as its ``fabric`` so that viewers here reach other nodes'
  cameras;
- ``/metrics``: per stream arriving over a link, its repair counters (``vmesh_fabric_link_in_*``:
  packets, NACKed sequence numbers, recovered, given up, duplicates dropped, the measured repair
  round trip and retry interval), and its hot standby (``vmesh_fabric_standby_packets_total``
  by standby neighbour, ``vmesh_fabric_standby_promotions_total``).

Public: ``start_fabric``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vmesh.audit.log import Actor
from vmesh.fabric.route import Parents
from vmesh.fabric.service import FabricService
from vmesh.media.remote import FabricSources

if TYPE_CHECKING:
    from vmesh.node.context import NodeContext

log = logging.getLogger(__name__)

ACTOR = Actor("fabric")

_LINK_IN = {
    "packets": ("counter", "RTP packets that came over the link"),
    "nack_requested": ("counter", "sequence numbers asked for again (each try)"),
    "nack_recovered": ("counter", "asked-for packets that came"),
    "nack_given_up": ("counter", "asked-for packets given up"),
    "duplicates": ("counter", "packets that came twice, dropped"),
    "rtt_ms": ("gauge", "smoothed NACK to retransmission time, ms"),
    "retry_ms": ("gauge", "current NACK retry interval, ms"),
}


class _FabricCollector(Collector):
    """Per carried stream, its link-in repair counters, read at scrape time."""

    def __init__(self, fabric: FabricService) -> None:
        self.fabric = fabric

    def collect(self) -> Iterator[Metric]:
        fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for key, (kind, doc) in _LINK_IN.items():
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            fams[key] = cls(f"vmesh_fabric_link_in_{key}", doc, labels=["stream", "upstream"])
        standby = CounterMetricFamily(
            "vmesh_fabric_standby_packets",
            "RTP packets that came over a stream's standby leg (hot standby, dual homing)",
            labels=["stream", "standby"],
        )
        promotions = CounterMetricFamily(
            "vmesh_fabric_standby_promotions",
            "times a stream's standby leg became its upstream",
            labels=["stream"],
        )
        for stream, s in self.fabric.snapshot().items():
            stats = s["link_in"]
            if not stats:
                continue
            for key, fam in fams.items():
                if stats.get(key) is not None:
                    fam.add_metric([stream, str(s["upstream"])], float(stats[key]))
            if s["standby_upstream"] is not None and stats.get("standby_packets") is not None:
                standby.add_metric([stream, s["standby_upstream"]], float(stats["standby_packets"]))
            promotions.add_metric([stream], float(stats.get("promotions") or 0))
        yield from fams.values()
        yield standby
        yield promotions


async def start_fabric(ctx: NodeContext) -> FabricService:
    cfg = ctx.config
    federation, media = ctx.federation, ctx.media
    if federation is None or media is None or federation.bus is None:
        raise RuntimeError("[fabric] needs federation and media running")
    registry = federation.registry
    assert registry is not None
    code = cfg.node.code

    async def tree() -> tuple[Parents, str | None]:
        parents = await registry.shape()
        up = registry.uplink
        parent = up.parent_code if up is not None and up.parent_code else parents.get(code)
        if parents.get(code, ...) != parent:
            parents = {**parents, code: parent}
        return parents, parent

    async def audit(action: str, target: str, result: str, detail: dict[str, Any]) -> None:
        await ctx.audit.write(ACTOR, action, target, result, detail)

    sources = FabricSources(media, ctx.db)  # cameras and browser publications, video and audio
    fabric = FabricService(
        node_code=code,
        bus=federation.bus,
        transport=media.transport,
        address=cfg.fabric.address,
        tree=tree,
        cameras=sources,
        audit=audit,
        linger=cfg.fabric.linger_seconds,
        rpc_timeout=cfg.fabric.rpc_timeout_seconds,
        port_range=cfg.fabric.port_range,
        failover_after=cfg.fabric.failover_seconds,
        standby_after=cfg.fabric.standby_takeover_seconds if cfg.fabric.hot_standby else None,
        parents=registry.parent_codes,
    )
    sources.rebind = fabric.rebind
    await fabric.start()
    media.fabric = fabric
    ctx.metrics.register(_FabricCollector(fabric))
    return fabric
