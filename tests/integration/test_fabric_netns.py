"""A province viewer watches a county camera through its city: province ← city ← county as three
hosts (network namespaces), each a real ``vmesh node run`` with nats-server, Janus, its switch and
``[fabric] enabled``; viewers talk to ``/api/live/ws`` as the console does (no browser).

One topology (``netns.vnet``), one story:

1. the county's synthetic camera reaches the province's catalogue; 10 viewers at the province
   watch it: frames reach the province's channels, the views are audited at the province
   (``live.view``) and recorded at the county (``fabric.serve``);
2. 5 viewers at the city join (issue 4's link-efficiency acceptance): over one 8 s window the
   bytes on county→city and city→province each equal one copy of the camera's stream within
   5 %, by the switches' counters (``/metrics``) and by the kernel's counters of the nodes' veths
   (``ip -s link``: the county's eth0 tx, the province's eth0 rx, against the camera's RTP bytes
   plus Ethernet/IP/UDP headers);
3. the city↔province link is cut (both ends blackholed): the province's tiles report no signal
   naming the city; a new watch of another county camera fails naming the city; the cut-off
   city still serves a login and a new local viewer; the link returns: the tiles play again,
   and the other camera can be watched;
4. the county↔city link is cut: the city's tiles report no video from the county; the county
   serves a login and its own viewer of its camera; the link returns: the city plays again;
5. every viewer leaves: after the linger no fabric input or output is left at any node, and the
   county's camera sources stop.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from netns.fednodes import wait_until
from netns.vnet import NEEDS_MEDIA_NETWORK, WENZHOU_CHAIN, Net, Topology, camera, network_fixture
from vmesh.directory.store import Directory

pytestmark = [
    pytest.mark.integration,
    *NEEDS_MEDIA_NETWORK,
]

TOPO = Topology(
    dict(WENZHOU_CHAIN),
    media=True,
    channels=12,
    # Fewer announcements and pings on the links, so the video dominates their bytes.
    overrides={"federation": {"announce_seconds": 2, "link_check_seconds": 1}},
)
NODES = TOPO.nodes
PROV, CITY, COUNTY = (NODES[n].code for n in ("prov", "city", "county"))
CAM = "33032800001320000001"
CAM2 = "33032800001320000002"
CAMERAS = {
    CAM: ("文成县府门口", "#e02020"),
    CAM2: ("文成县车站", "#2040e0"),
}
LINGER = TOPO.linger
OUT_PACKETS = "vmesh_switch_output_packets_total"
ETH_UDP_IP = 14 + 20 + 8  # bytes the kernel counts around each RTP packet on a veth


async def _cameras(name: str, directory: Directory, org: str) -> None:
    if name == "county":
        for cam, (cam_name, color) in CAMERAS.items():
            # CAM's bitrate makes the video dwarf the links' control traffic (NATS pings,
            # announcements) in the kernel's counters.
            big = {"width": 640, "height": 360, "bitrate_kbps": 1200} if cam == CAM else {}
            await camera(directory, org, cam, cam_name, color=color, **big)


net = network_fixture(TOPO, _cameras)


def _out(code: str, node: str) -> str:
    return f'{OUT_PACKETS}{{output="fabric/{code}>{node}"}}'


def _out_bytes(code: str, node: str) -> str:
    return f'vmesh_switch_output_bytes_total{{output="fabric/{code}>{node}"}}'


def _fabric_series(m: dict[str, float]) -> list[str]:
    return [k for k in m if re.search(r'(input|output)="fabric/', k)]


async def _channel_packets(net: Net, node: str) -> float:
    m = await net.metrics(node)
    return sum(
        v
        for k, v in m.items()
        if k.startswith('vmesh_switch_output_packets_total{output="channel-')
    )


async def _grows(net: Net, node: str, what: str) -> None:
    first = await _channel_packets(net, node)

    async def more() -> bool:
        return await _channel_packets(net, node) > first + 25

    await wait_until(more, what)


def _within(got: float, want: float, tolerance: float) -> bool:
    return abs(got - want) <= tolerance * want


async def _one_copy_per_link(net: Net) -> dict[str, float]:
    """Bytes over one window on county→city and city→province, by the switches' counters and
    by the kernel's veth counters; each within 5 % of one copy of the camera's stream."""

    async def sample() -> tuple[Any, ...]:
        # All four at once: read one after another on a loaded machine, their windows drifted
        # apart by seconds (10 % of an 8 s window).
        return tuple(
            await asyncio.gather(
                net.metrics("county"),
                net.metrics("city"),
                asyncio.to_thread(net.veth, "county"),
                asyncio.to_thread(net.veth, "prov"),
            )
        )

    m_county0, m_city0, k_county0, k_prov0 = await sample()
    await asyncio.sleep(8)
    m_county1, m_city1, k_county1, k_prov1 = await sample()

    def fabric_outputs(m: dict[str, float]) -> list[str]:
        return [k for k in m if k.startswith(f'{OUT_PACKETS}{{output="fabric/')]

    assert fabric_outputs(m_county1) == [_out(CAM, CITY)]  # one output towards the city only
    assert fabric_outputs(m_city1) == [_out(CAM, PROV)]

    def delta(m0: dict[str, float], m1: dict[str, float], key: str) -> float:
        return m1[key] - m0[key]

    cam_in = f'{{input="{CAM}/video"}}'
    copy_bytes = delta(m_county0, m_county1, "vmesh_switch_input_bytes_total" + cam_in)
    copy_packets = delta(m_county0, m_county1, "vmesh_switch_input_packets_total" + cam_in)
    to_city = delta(m_county0, m_county1, _out_bytes(CAM, CITY))
    to_prov = delta(m_city0, m_city1, _out_bytes(CAM, PROV))
    # One copy on the wire: the RTP bytes plus Ethernet, IP and UDP headers per packet.
    wire = copy_bytes + ETH_UDP_IP * copy_packets
    # The county talks to the city only (the test reads nothing from it in the window); the
    # province hears from the city only (its 10 viewers' WebSockets are idle).
    k_to_city = k_county1["tx_bytes"] - k_county0["tx_bytes"]
    k_to_prov = k_prov1["rx_bytes"] - k_prov0["rx_bytes"]
    got = {
        "copy_bytes": copy_bytes,
        "switch_county_to_city": to_city,
        "switch_city_to_prov": to_prov,
        "wire_copy_bytes": wire,
        "veth_county_tx": k_to_city,
        "veth_prov_rx": k_to_prov,
    }
    assert copy_bytes > 50_000, got
    assert _within(to_city, copy_bytes, 0.05), got
    assert _within(to_prov, copy_bytes, 0.05), got
    assert _within(k_to_city, wire, 0.05), got
    assert _within(k_to_prov, wire, 0.05), got
    return got


PROV_TILES = [f"p{i}" for i in range(10)]
CITY_TILES = [f"c{i}" for i in range(5)]


async def test_province_watches_a_county_camera_through_its_city(net: Net) -> None:
    async def in_catalogue() -> bool:
        page = await net.get("prov", "/api/network/catalogue", code_prefix="3303280000132")
        return {i["code"] for i in page["items"]} == set(CAMERAS)

    async def county_known() -> bool:
        nodes = (await net.get("prov", "/api/network"))["nodes"]["items"]
        return any(n["code"] == COUNTY and n["link"]["state"] == "up" for n in nodes)

    await wait_until(in_catalogue, "the county's cameras in the province's catalogue", within=60)
    await wait_until(county_known, "the county on the province's network map", within=60)

    async with net.live("prov") as p, net.live("city") as c, net.live("county") as k:
        # 1. Ten viewers at the province.
        for tile in PROV_TILES:
            offer = await p.watch(tile, CAM)
            assert offer["type"] == "offer", offer
        await _grows(net, "prov", "frames of the county camera at the province's channels")
        views = await net.get("prov", "/api/audit", action="live.view", target=CAM)
        assert [r["result"] for r in views["items"]] == ["ok"] * 10
        assert {r["username"] for r in views["items"]} == {"admin-prov"}

        # 2. Five viewers at the city: each link still carries one copy.
        for tile in CITY_TILES:
            assert (await c.watch(tile, CAM))["type"] == "offer"
        await _grows(net, "city", "frames at the city's channels")

        async def fifteen_recorded() -> list[dict[str, Any]] | None:
            page = await net.get(
                "county", "/api/audit", action="fabric.serve", target=CAM, limit=100
            )
            return page["items"] if page["total"] == 15 else None

        county = await wait_until(fifteen_recorded, "15 views recorded at the county")
        by_node = sorted(r["detail"]["viewer_node"] for r in county)
        assert by_node == sorted([CITY] * 5 + [PROV] * 10)
        assert {r["detail"]["user"] for r in county} == {"admin-prov", "admin-city"}

        print("one copy per link:", await _one_copy_per_link(net))

        # 3. Cut city <-> province: the city is on its own.
        net.blackhole("city", "prov", "add")

        def no_signal() -> dict[str, Any] | None:
            st = p.last_state("p0")
            return st if st is not None and st["state"] == "no_signal" else None

        st = await wait_until(no_signal, "the province's tile reporting no signal")
        assert CITY in st["reason"], st
        await _grows(net, "city", "the city's own viewers still playing during the cut")
        # Autonomy: a local login and a new local viewer at the cut-off city.
        assert await net.login("city", "admin-city") == 200
        assert (await c.watch("c5", CAM2))["type"] == "offer"

        failed = await p.watch("pf", CAM2)
        assert failed["state"] == "error" and CITY in failed["reason"], failed

        net.blackhole("city", "prov", "del")
        mark = len(p.messages)

        def back() -> bool:
            return any(
                m.get("tile") == "p0" and m.get("state") not in (None, "no_signal")
                for m in p.messages[mark:]
            )

        await wait_until(back, "the province's tile out of no signal after the restore")
        await _grows(net, "prov", "frames at the province again")

        async def watch_again() -> bool:
            p.messages.clear()
            return (await p.watch("pf", CAM2))["type"] == "offer"

        await wait_until(watch_again, "the other county camera watchable again", every=1)

        # 4. Cut county <-> city: the county still serves its own viewer and login.
        net.blackhole("county", "city", "add")

        def city_no_signal() -> bool:
            st = c.last_state("c0")
            return st is not None and st["state"] == "no_signal" and COUNTY in st["reason"]

        await wait_until(city_no_signal, "the city's tile reporting no video from the county")
        assert await net.login("county", "admin-county") == 200
        assert (await k.watch("k0", CAM))["type"] == "offer"
        await _grows(net, "county", "the county's local viewer playing while cut off")
        net.blackhole("county", "city", "del")
        await _grows(net, "city", "frames at the city again after the county's link returns")

        # 5. Everyone leaves.
        tiles = [(p, [*PROV_TILES, "pf"]), (c, [*CITY_TILES, "c5"]), (k, ["k0"])]
        for v, names in tiles:
            for tile in names:
                await v.send(type="stop", tile=tile)

        def stopped() -> bool:
            return all(
                any(m["state"] == "stopped" for m in v.of(tile))
                for v, names in tiles
                for tile in names
            )

        await wait_until(stopped, "every tile stopped")

    left: dict[str, list[str]] = {}

    async def all_gone() -> bool:
        for node in NODES:
            m = await net.metrics(node)
            left[node] = _fabric_series(m) + [f"sources={m['vmesh_media_sources']}"] * bool(
                m.get("vmesh_media_sources")
            )
        return not any(left.values())

    try:
        await wait_until(all_gone, "no fabric input/output and no source left at any node")
    except AssertionError:
        raise AssertionError(f"left after the linger: {left}") from None
