"""Hot standby (issue 4, dual homing): a county with two parents (``city``, ``city2``) watched
at the province. Where the two paths part — the province — the stream also comes through
``city2``, ``via`` the county, into a standby leg; when the county→city link goes silent the
standby leg becomes the upstream by itself, with no signalling: the province's viewer output
goes on with the same SSRC and consecutive sequence numbers, from a keyframe, and the province
audits ``fabric.reroute`` with ``"standby": true``.

Four nodes' fabric agents over one real nats-server and real UDP on loopback (as in
``test_fabric_hops``: each its own ``SwitchTransport``). The county answers ``parents`` with its
two parents, as a dual-homed node does. The cut: the county's packets never reach the city
(the link dies silently; nothing on the bus notices it). The gap the viewer sees is printed,
not asserted (a shared machine).
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import AsyncIterator

import pytest

from integration.test_fabric_hops import Node, _viewer, fabric_agents
from peers.rtp import wait_until
from vmesh.errors import Conflict, InvalidInput

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs nats-server"),
]

PROV, CITY, CITY2 = "33000000002006000001", "33030000002006000001", "33030000002006000002"
COUNTY = "33032800002006000001"
CAM = "33032800001310000001"
PARENTS: dict[str, str | None] = {PROV: None, CITY: PROV, CITY2: PROV, COUNTY: CITY}


@pytest.fixture
async def nodes() -> AsyncIterator[dict[str, Node]]:
    async with fabric_agents(PARENTS, {COUNTY: [CITY, CITY2]}) as out:
        yield out


async def test_the_standby_leg_takes_over_when_the_primary_link_dies(
    nodes: dict[str, Node],
) -> None:
    prov, city, city2, county = nodes[PROV], nodes[CITY], nodes[CITY2], nodes[COUNTY]
    inp = await prov.fabric.acquire(CAM, COUNTY, "p0", "alice")
    viewer = await _viewer(prov, "p0", inp)
    arrivals: list[float] = []
    on = viewer.datagram_received

    def stamp(data: bytes, addr: tuple[str | object, ...]) -> None:
        arrivals.append(time.monotonic())
        on(data, addr)

    viewer.datagram_received = stamp  # type: ignore[method-assign]

    def standby_packets() -> int:
        return int(prov.fabric.snapshot()[CAM]["link_in"]["standby_packets"] or 0)

    await wait_until(lambda: viewer.frames() >= 25, "frames at the province")
    await wait_until(lambda: standby_packets() >= 50, "the standby leg flowing at the province")
    # Both county uplinks carry it; city2 takes it straight from the county, for the province.
    assert sorted(county.fabric.snapshot()[CAM]["links_out"]) == [CITY, CITY2]
    s2 = city2.fabric.snapshot()[CAM]
    assert s2["upstream"] == COUNTY and list(s2["links_out"]) == [PROV]
    assert prov.fabric.snapshot()[CAM]["upstream"] == CITY
    assert city.fabric.snapshot()[CAM]["links_out"].keys() == {PROV}

    # The county→city link dies silently: what the county sends the city never arrives.
    link = city.fabric._carried[CAM].link_in
    assert link is not None
    link.peer = ("127.0.0.1", 9)  # the county's packets are no longer its upstream's
    n_cut, cut_at = len(viewer.packets), time.monotonic()
    await wait_until(
        lambda: prov.fabric.snapshot()[CAM]["upstream"] == CITY2, "the standby leg promoted"
    )
    await wait_until(lambda: viewer.frames() >= 25 + 50, "frames again at the province")
    after = [i for i in range(n_cut, len(arrivals)) if arrivals[i] > cut_at]
    gap = max(b - a for a, b in zip(arrivals[n_cut - 1 : -1], arrivals[n_cut:], strict=True))
    print(f"standby take-over: longest gap at the viewer {gap * 1000:.0f} ms")

    # What the viewer's channel carried: one SSRC, consecutive sequence numbers through the
    # take-over, resuming on a keyframe (the standby leg's kept GOP).
    pk = viewer.packets
    assert {p.ssrc for p in pk} == {pk[0].ssrc}
    assert all(
        (b.sequence_number - a.sequence_number) & 0xFFFF == 1 for a, b in itertools.pairwise(pk)
    )
    gap_at = max(range(n_cut, len(arrivals)), key=lambda i: arrivals[i] - arrivals[i - 1])
    assert pk[gap_at].payload[0] & 0x1F == 5, "the stream must resume on a keyframe"
    assert after, "no packet after the cut"

    assert prov.fabric.snapshot()[CAM]["link_in"]["promotions"] == 1
    reroutes = [d for a, _, _, d in prov.audit if a == "fabric.reroute"]
    assert reroutes == [{"from": CITY, "to": CITY2, "standby": True}]
    # A new standby is sought through the old parent (the link is reachable again from the
    # city's side: its new leg is a new output at the county).
    await wait_until(
        lambda: prov.fabric.snapshot()[CAM]["standby_upstream"] == CITY and standby_packets() > 0,
        "a new standby leg through the city",
    )
    assert city.fabric.snapshot()[CAM]["upstream"] == COUNTY

    # Everyone leaves: every lease closes, the standby's hop at city2 included.
    await prov.fabric.release(CAM, "p0")
    await wait_until(
        lambda: all(CAM not in n.fabric.snapshot() for n in nodes.values()), "leases gone"
    )


async def test_a_standby_leg_that_carries_nothing_is_sought_again(
    nodes: dict[str, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standby leg whose path stops carrying (here: the province no longer takes city2's
    packets on it) while the upstream flows would protect nothing: the province closes it and
    opens a new one, which carries again."""
    from vmesh.fabric import service

    monkeypatch.setattr(service, "STANDBY_SILENT_S", 1.0)
    monkeypatch.setattr(service, "STANDBY_RETRY_S", 0.5)
    prov = nodes[PROV]
    inp = await prov.fabric.acquire(CAM, COUNTY, "p0", "alice")
    viewer = await _viewer(prov, "p0", inp)

    def leg():  # type: ignore[no-untyped-def]
        link_in = prov.fabric._carried[CAM].link_in
        return link_in.standby if link_in is not None else None

    await wait_until(lambda: viewer.frames() >= 25, "frames at the province")
    await wait_until(lambda: leg() is not None and leg().packets >= 25, "the standby flowing")
    first = leg()
    first.peer = ("127.0.0.1", 9)  # city2's packets are no longer this leg's
    await wait_until(
        lambda: leg() not in (None, first) and leg().packets >= 25,
        "a new standby leg through city2, flowing",
    )
    assert prov.fabric.snapshot()[CAM]["standby_upstream"] == CITY2
    assert prov.fabric.snapshot()[CAM]["upstream"] == CITY  # the viewer's path never moved
    frames = viewer.frames()
    await wait_until(lambda: viewer.frames() >= frames + 10, "frames still at the province")
    await prov.fabric.release(CAM, "p0")


async def test_a_standby_open_is_refused_when_it_names_the_wrong_node_or_loops(
    nodes: dict[str, Node],
) -> None:
    city2 = nodes[CITY2]
    body = {
        "op": "open",
        "stream": CAM,
        "camera_node": COUNTY,
        "from": PROV,
        "addr": "127.0.0.1",
        "port": 40000,
        "via": CITY,
    }
    with pytest.raises(InvalidInput) as e:
        await city2.fabric._on_rpc(body)
    assert e.value.errors[0].field == "via"
    assert CAM not in city2.fabric.snapshot()  # nothing opened

    # city2 carrying the stream from the province: the province cannot take a standby from it.
    await city2.fabric.acquire(CAM, COUNTY, "c0", "bob")
    with pytest.raises(Conflict):
        await city2.fabric._on_rpc(body | {"via": COUNTY})
    assert list(city2.fabric.snapshot()[CAM]["links_out"]) == []
    await city2.fabric.release(CAM, "c0")
