"""Three nodes' fabric agents (province ← city ← county) over a real nats-server and real UDP:
a county camera watched at the province and the city crosses each link once, keyframe-started,
NACK-able, recorded at the county, and its leases close hop by hop after the last viewer + linger.

Each node has its own switch (``SwitchTransport`` on loopback) and ``FabricService``; they share
one nats-server (subjects are per node, as through leaf links). The county's camera is an RTP
sender of H.264-shaped packets (a keyframe a second) into a switch input.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from peers.nats_server import local_nats
from peers.rtp import RtpCollector, wait_until
from vmesh.fabric.service import FabricService
from vmesh.federation.bus import Bus
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, OutputSpec, Switch
from vmesh.switch.transport import SwitchTransport

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs nats-server"),
]

PROV, CITY, COUNTY = "33000000002006000001", "33030000002006000001", "33032800002006000001"
CAM = "33032800001310000001"
PARENTS = {PROV: None, CITY: PROV, COUNTY: CITY}
LINGER = 1.0


class Camera:
    """The county's camera: RTP into a switch input, 25 frames/s, 2 packets a frame."""

    def __init__(self, transport: SwitchTransport) -> None:
        self.transport = transport
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        self.users = 0

    async def acquire(self, code: str) -> str:
        self.users += 1
        if self.task is None:
            port = await self.transport.add_input(InputSpec("cam/video", Codec.h264), port=0)
            self.task = asyncio.create_task(self._run(port))
        return "cam/video"

    def release(self, code: str) -> None:
        self.users -= 1
        if self.users == 0 and self.task is not None:
            self.task.cancel()
            self.task = None
            self.transport.remove_input("cam/video")

    async def _run(self, port: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        seq, frame = 0, 0
        try:
            while True:
                nal = 0x65 if frame % 25 == 0 else 0x41
                for k in range(2):
                    hdr = struct.pack(
                        "!BBHII", 0x80, 96 | (0x80 if k == 1 else 0), seq, frame * 3600, 0xCA11
                    )
                    s.sendto(hdr + bytes([nal]) + bytes(900), ("127.0.0.1", port))
                    seq = (seq + 1) & 0xFFFF
                    self.sent += 1
                frame += 1
                await asyncio.sleep(0.04)
        finally:
            s.close()


@dataclass
class Node:
    code: str
    transport: SwitchTransport
    fabric: FabricService
    bus: Bus
    audit: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def fabric_agents(
    parents: dict[str, str | None], camera_parents: dict[str, list[str]] | None = None
) -> AsyncIterator[dict[str, Node]]:
    """A fabric agent for every node of ``parents`` (code → parent), each with its own switch
    and ``Camera``, on one real nats-server; ``camera_parents``: what a node answers ``parents``
    with (a dual-homed node's two), else its one parent."""
    out: dict[str, Node] = {}
    async with local_nats() as url:
        try:
            for code in parents:
                tr = SwitchTransport(Switch())
                await tr.start()
                bus = await Bus.connect(url, code)
                audit: list[tuple[str, str, str, dict[str, Any]]] = []

                async def tree(code: str = code) -> tuple[dict[str, str | None], str | None]:
                    return parents, parents[code]

                async def record(
                    a: str, t: str, r: str, d: dict[str, Any], log: Any = audit
                ) -> None:
                    log.append((a, t, r, d))

                async def parents_of(code: str = code) -> list[str]:
                    if camera_parents and code in camera_parents:
                        return camera_parents[code]
                    return [p for p in (parents[code],) if p]

                fab = FabricService(
                    node_code=code,
                    bus=bus,
                    transport=tr,
                    address="127.0.0.1",
                    tree=tree,
                    cameras=Camera(tr),
                    audit=record,
                    linger=LINGER,
                    parents=parents_of,
                )
                await fab.start()
                out[code] = Node(code, tr, fab, bus, audit)
            yield out
        finally:
            for n in out.values():
                await n.fabric.stop()
                await n.bus.close()
                await n.transport.close()


@pytest.fixture
async def nodes() -> AsyncIterator[dict[str, Node]]:
    async with fabric_agents(PARENTS) as out:
        yield out


async def _viewer(node: Node, name: str, input_id: str) -> RtpCollector:
    """A local viewer: a switch output of the node routed from the fabric's input."""
    col, port = await RtpCollector.bind()
    await node.transport.add_output(
        OutputSpec(
            f"view-{name}",
            Codec.h264,
            ssrc=0x5000 + len(name) * 7 + ord(name[-1]),
            dest=("127.0.0.1", port),
        )
    )
    node.transport.route(f"view-{name}", input_id)
    return col


async def test_a_county_camera_crosses_each_link_once_and_closes_hop_by_hop(
    nodes: dict[str, Node],
) -> None:
    prov, city, county = nodes[PROV], nodes[CITY], nodes[COUNTY]
    viewers = []
    for i in range(3):
        inp = await prov.fabric.acquire(CAM, COUNTY, f"p{i}", "alice")
        viewers.append(await _viewer(prov, f"p{i}", inp))
    for i in range(2):
        inp = await city.fabric.acquire(CAM, COUNTY, f"c{i}", "bob")
        viewers.append(await _viewer(city, f"c{i}", inp))

    # every viewer sees whole frames, the first a keyframe (GOP replay or next keyframe)
    await wait_until(lambda: all(v.frames() >= 50 for v in viewers), "50 frames at each viewer")
    for v in viewers:
        assert v.packets[0].payload[0] & 0x1F == 5, "a viewer must start on a keyframe"

    # one copy per link: one output county->city, one city->province
    ks, cs, ps = (
        county.fabric.snapshot()[CAM],
        city.fabric.snapshot()[CAM],
        prov.fabric.snapshot()[CAM],
    )
    assert list(ks["links_out"]) == [CITY] and list(cs["links_out"]) == [PROV]
    assert ps["links_out"] == {}
    assert cs["links_down"] == [PROV] and sorted(cs["viewers"]) == ["c0", "c1"]
    assert ks["links_down"] == [CITY] and ks["viewers"] == []
    assert sorted(ps["viewers"]) == ["p0", "p1", "p2"]
    sent = county.fabric.snapshot()[CAM]["links_out"][CITY]["packets"]
    cam_packets = county.transport.switch.snapshot().inputs["cam/video"].packets
    # the county->city link carries the camera's packets once (plus the GOP replay at the start)
    assert cam_packets <= sent <= cam_packets + 60
    city_in = city.fabric.snapshot()[CAM]["link_in"]
    city_out = city.fabric.snapshot()[CAM]["links_out"][PROV]
    assert abs(city_out["packets"] - city_in["packets"]) <= 60
    assert city_in["bytes"] <= sent * 1000  # and not 5 copies
    # the view was recorded at the camera's node, naming the requesting node and user
    await wait_until(
        lambda: len([a for a in county.audit if a[0] == "fabric.serve"]) == 5, "5 records"
    )
    served = sorted(
        (t, d["viewer_node"], d["user"]) for a, t, _, d in county.audit if a == "fabric.serve"
    )
    assert served == [(CAM, PROV, "alice")] * 3 + [(CAM, CITY, "bob")] * 2

    # everyone leaves: after the linger the leases are gone at every hop, camera stopped
    for i in range(3):
        await prov.fabric.release(CAM, f"p{i}")
    for i in range(2):
        await city.fabric.release(CAM, f"c{i}")
    assert CAM in prov.fabric.snapshot()  # lingering, not gone at once
    await wait_until(
        lambda: all(CAM not in n.fabric.snapshot() for n in nodes.values()), "leases gone"
    )
    assert "cam/video" not in county.transport.switch.snapshot().inputs
    assert f"fabric/{CAM}>{CITY}" not in county.transport.switch.snapshot().outputs
    assert f"fabric/{CAM}" not in prov.transport.switch.snapshot().inputs
    for v in viewers:
        v.close()


async def test_an_unreachable_camera_node_is_named_and_nothing_is_left(
    nodes: dict[str, Node],
) -> None:
    prov = nodes[PROV]
    # A viewer at the province watching the province's own camera asks for the county's: its
    # output is routed to the new input while the hops are asked (``on_input``).
    local = await prov.fabric.acquire("33000000001310000001", PROV, "p0", "alice")
    viewer = await _viewer(prov, "p0", local)
    await wait_until(lambda: viewer.frames() >= 5, "the province's own camera")
    routed: list[str] = []

    async def early(input_id: str) -> None:
        routed.append(input_id)
        prov.transport.route("view-p0", input_id)

    await nodes[COUNTY].fabric.stop()
    await nodes[COUNTY].bus.close()
    with pytest.raises(Exception, match=COUNTY):
        await prov.fabric.acquire(CAM, COUNTY, "p0", "alice", on_input=early)
    assert routed == [f"fabric/{CAM}"]
    assert list(prov.fabric.snapshot()) == ["33000000001310000001"]
    assert nodes[CITY].fabric.snapshot() == {}
    assert f"fabric/{CAM}" not in prov.transport.switch.snapshot().inputs
    assert f"fabric/{CAM}>{PROV}" not in nodes[CITY].transport.switch.snapshot().outputs
    # The viewer kept its picture: the province's camera goes on, same SSRC.
    n = viewer.frames()
    await wait_until(lambda: viewer.frames() >= n + 5, "the old picture going on")
    assert len({p.ssrc for p in viewer.packets}) == 1
    viewer.close()
