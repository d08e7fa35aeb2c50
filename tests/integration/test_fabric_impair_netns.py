"""A 3-hop stream through impaired links: township → county → city → province, each a real
``vmesh node run`` (nats-server, Janus, switch, fabric) in its own namespace (``netns.vnet``),
with 50 ms delay and 5 % loss on every node's egress (``Lab.impair``: netem, or NFQUEUE on this
kernel), i.e. on every link of the path in both directions.

A viewer at the province (a ``/api/live/ws`` watch, no browser) watches the township's
camera. Over a 10 s window the test samples the viewer's channel every 100 ms and reports the
frozen time (stretches of samples without a new packet on the channel) and the longest one.
It asserts what a user would notice: the tile is playing at the end of the window and the
province gets at least 90 % of the camera's packets in that window, counted from sequence gaps at
the province's input (per-link NACK repair: without it three 5 % links lose about 14 %). Each
link's repair counters (``vmesh_fabric_link_in_*``: NACKs, recovered, given up, duplicates
dropped, measured repair round trip) are printed.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from netns.fednodes import wait_until
from netns.vnet import (
    NEEDS_MEDIA_NETWORK,
    WENZHOU_CHAIN,
    Net,
    NodeSpec,
    Topology,
    camera,
    network_fixture,
)
from vmesh.directory.store import Directory

pytestmark = [
    pytest.mark.integration,
    *NEEDS_MEDIA_NETWORK,
]

TOPO = Topology(
    {
        **WENZHOU_CHAIN,
        "town": NodeSpec(
            "33032810002006000001", "township", "33032810002166000001", "玉壶镇", ("county",)
        ),
    },
    media=True,
    channels=2,
)
CAM = "33032810001320000001"
DELAY_MS, LOSS_PCT = 50, 5


async def _camera(name: str, directory: Directory, org: str) -> None:
    if name == "town":
        await camera(directory, org, CAM, "玉壶镇路口")


net = network_fixture(TOPO, _camera)


def _channel(m: dict[str, float]) -> float:
    return sum(
        v
        for k, v in m.items()
        if k.startswith('vmesh_switch_output_packets_total{output="channel-')
    )


def _prov_input(m: dict[str, float]) -> tuple[float, float]:
    """(packets received, packets lost) of the camera's video input at the province."""
    inputs = [k.split("{", 1)[1] for k in m if k.startswith("vmesh_switch_input_packets_total{")]
    key = next((k for k in inputs if f'fabric/{CAM}"' in k), None)
    assert key is not None, f"no fabric input for {CAM} at the province: {inputs}"
    return m["vmesh_switch_input_packets_total{" + key], m["vmesh_switch_input_lost_packets{" + key]


async def test_a_three_hop_stream_keeps_playing_through_loss_and_delay(net: Net) -> None:
    town = net.code("town")

    async def ready() -> bool:
        page = await net.get("prov", "/api/network/catalogue", code_prefix=CAM)
        nodes = (await net.get("prov", "/api/network"))["nodes"]["items"]
        up = any(n["code"] == town and n["link"]["state"] == "up" for n in nodes)
        return page["total"] == 1 and up

    await wait_until(ready, "the township's camera and node known at the province", within=60)
    mechanisms = {n: net.lab.impair(n, DELAY_MS, LOSS_PCT) for n in TOPO.nodes}
    print("impairment:", mechanisms)

    async with net.live("prov") as v:
        offer = await v.watch("t", CAM)
        assert offer["type"] == "offer", offer
        first = _channel(await net.metrics("prov"))

        async def playing() -> bool:
            return _channel(await net.metrics("prov")) > first + 50

        await wait_until(playing, "frames at the province through 3 impaired hops")

        cam_in = f'vmesh_switch_input_packets_total{{input="{CAM}/video"}}'
        sent0 = (await net.metrics("town"))[cam_in]
        at_prov0 = _prov_input(await net.metrics("prov"))
        samples: list[tuple[float, float]] = []
        end = time.monotonic() + 10
        while time.monotonic() < end:
            samples.append((time.monotonic(), _channel(await net.metrics("prov"))))
            await asyncio.sleep(0.1)
        sent = (await net.metrics("town"))[cam_in] - sent0
        got = samples[-1][1] - samples[0][1]
        at_prov1 = _prov_input(await net.metrics("prov"))
        received, lost = (b - a for a, b in zip(at_prov0, at_prov1, strict=True))
        # A stall: samples in a row with no new packet; it lasts from the last sample that had
        # one to the next that has one.
        frozen, longest, stalled_from = 0.0, 0.0, None
        for (t0, n0), (t1, n1) in itertools.pairwise(samples):
            if n1 == n0 and stalled_from is None:
                stalled_from = t0
            elif n1 > n0 and stalled_from is not None:
                frozen += t1 - stalled_from
                longest = max(longest, t1 - stalled_from)
                stalled_from = None
        print(
            f"3 hops, {DELAY_MS} ms + {LOSS_PCT} % per link: camera sent {sent:.0f} packets, "
            f"the channel got {got:.0f}; frozen {frozen:.2f} s of 10 s, longest {longest:.2f} s; "
            f"the province's input received {received:.0f}, lost {lost:.0f} (sequence gaps)"
        )
        # Counted from sequence numbers at the province, so the scrapes' own delays (TCP over the
        # same impaired links) do not skew it as comparing two nodes' counters would.
        assert received > 0 and lost <= 0.1 * (received + lost), (received, lost, got, sent)
        for n in ("county", "city", "prov"):
            m = await net.metrics(n)
            repair = {
                k.split("{")[0].removeprefix("vmesh_fabric_link_in_"): v
                for k, v in m.items()
                if k.startswith("vmesh_fabric_link_in_") and CAM in k
            }
            print(f"link into {n}:", repair)
        states = [s["state"] for s in v.of("t")]
        print("tile states:", states)
        assert states[-1] not in ("no_signal", "error"), v.of("t")
    for n in TOPO.nodes:
        net.lab.clear_impair(n)
