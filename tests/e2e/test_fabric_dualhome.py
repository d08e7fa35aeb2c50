"""Dual homing (issue 4, item 6): a county with two parents loses its primary uplink while
Chromium at the province plays its camera; the stream comes back through the second parent in
the same peer connection (no renegotiation), and the gap is measured.

Four real ``vmesh node run`` in network namespaces (``netns.vnet``): the province, two city
nodes under it (``city``, the county's primary parent, and ``city2``, its second) and the county
with ``parents = [city, city2]``. Chromium (root namespace, the lab's root leg) logs in at the
province and plays the county camera on the wall. The test then blackholes county↔city both
ways and watches what the user sees: the picture freezes, then frames are decoded again in the
same ``RTCPeerConnection`` and the tile is ``playing``. Behind it (docs/fabric.md, "Hot
standby"): the province, where the county's two paths part, has the stream through ``city2`` too
(a standby leg ``via`` the county); its upstream silent for ``standby_takeover_seconds``, the
standby leg becomes the upstream into the same switch input (the channel keeps its SSRC;
``fabric.reroute`` with ``"standby": true`` in the province's audit). The control plane follows
later: the county's nats-server leaf moves to ``city2`` and the province's map puts the county
under ``city2``.

The gap is the longest stretch without a new decoded frame after the cut, sampled in the page
every 20 ms (``getVideoPlaybackQuality``); printed, not asserted (a shared 2-core machine).
"""

from __future__ import annotations

import itertools

import pytest

from e2e.console_node import CHROMIUM
from netns.fednodes import wait_until
from netns.vnet import (
    NEEDS_MEDIA_NETWORK,
    PROV_SPEC,
    WENZHOU_SPEC,
    Net,
    NodeSpec,
    Topology,
    camera,
    console,
    network_fixture,
)
from vmesh.directory.store import Directory

pytestmark = [
    pytest.mark.e2e,
    *NEEDS_MEDIA_NETWORK,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs {CHROMIUM}"),
]

TOPO = Topology(
    {
        "prov": PROV_SPEC,
        "city": WENZHOU_SPEC,
        "city2": NodeSpec(
            "33030000002006000002", "city", "33030000002166000002", "温州市备份", ("prov",)
        ),
        "county": NodeSpec(
            "33032800002006000001",
            "county",
            "33032800002166000001",
            "文成县",
            ("city", "city2"),
        ),
    },
    media=True,
    channels=2,
)
CAM = "33032800001320000001"
PLAY_TIMEOUT_MS = 60_000  # readiness bound, not a performance assertion

# Frame arrival times in the page: (performance.now() ms, total decoded frames) on every change.
RECORD_JS = """() => {
  const v = document.querySelector('[data-testid="tile-0-video"]');
  window.__frames = [];
  let last = -1;
  window.__timer = setInterval(() => {
    const n = v.getVideoPlaybackQuality().totalVideoFrames;
    if (n !== last) { last = n; window.__frames.push([performance.now(), n]); }
  }, 20);
  return performance.now();
}"""


async def _camera(name: str, directory: Directory, org: str) -> None:
    if name == "county":
        await camera(directory, org, CAM, "文成县府门口", color="#e02020")


net = network_fixture(TOPO, _camera)


async def _parent_at_province(net: Net) -> tuple[str | None, str | None]:
    nodes = (await net.get("prov", "/api/network"))["nodes"]["items"]
    county = next((n for n in nodes if n["code"] == net.code("county")), None)
    return (county["parent_code"], county["link"]["state"]) if county else (None, None)


async def test_a_dual_homed_county_moves_to_its_second_parent_during_playback(net: Net) -> None:
    city, city2 = net.code("city"), net.code("city2")

    async def ready() -> bool:
        page = await net.get("prov", "/api/network/catalogue", code_prefix=CAM)
        return page["total"] == 1 and await _parent_at_province(net) == (city, "up")

    await wait_until(ready, "the county camera known at the province, under city", within=60)

    async with console(net, "prov") as page:
        base = net.url("prov")
        await page.goto(f"{base}/#/wall/{CAM}")
        tile = page.get_by_test_id("tile-0")
        await page.wait_for_function(
            """() => Number(document.querySelector('[data-testid="tile-0"]')
                ?.dataset.framesDecoded || 0) > 30""",
            timeout=PLAY_TIMEOUT_MS,
        )
        pc = await tile.get_attribute("data-pc")

        async def standby_flowing() -> bool:  # the province's standby leg, through city2
            m = await net.metrics("prov")
            key = f'vmesh_fabric_standby_packets_total{{standby="{city2}",stream="{CAM}"}}'
            return m.get(key, 0.0) > 0

        await wait_until(standby_flowing, "the standby leg through city2 flowing", within=60)
        await page.evaluate(RECORD_JS)
        await page.wait_for_timeout(1000)  # frames before the cut, for the record

        cut_at = await page.evaluate("() => performance.now()")
        net.blackhole("county", "city", "add")
        try:
            moved = await wait_until(
                lambda: _moved(net, city2), "the county under city2 at the province", within=90
            )
            print("province's map after the cut:", moved)
            # Frames flow again: 50 more decoded after the county moved.
            n_moved = await page.evaluate("() => window.__frames.at(-1)[1]")
            await page.wait_for_function(
                f"() => window.__frames.at(-1)[1] > {n_moved + 50}", timeout=PLAY_TIMEOUT_MS
            )
            frames = await page.evaluate("() => window.__frames")
        finally:
            net.blackhole("county", "city", "del")
        before = [(t, n) for t, n in frames if t < cut_at][-1:]  # the last frame before it
        after = before + [(t, n) for t, n in frames if t >= cut_at]
        gaps = [(t1 - t0, t0) for (t0, _), (t1, _) in itertools.pairwise(after)]
        gap, at = max(gaps)
        print(
            f"failover: longest stretch without a new frame after the cut {gap / 1000:.2f} s, "
            f"from {(at - cut_at) / 1000:+.2f} s (relative to the cut); "
            f"{after[-1][1] - after[0][1]} frames decoded since the cut"
        )
        assert await tile.get_attribute("data-pc") == pc  # the same peer connection
        assert await tile.get_attribute("data-state") == "playing"
        assert frames[-1][1] > n_moved + 50

    async def rerouted() -> list[dict[str, object]]:
        rows = (await net.get("prov", "/api/audit", action="fabric.reroute", target=CAM))["items"]
        return [r["detail"] for r in rows]

    details = await wait_until(rerouted, "fabric.reroute audited at the province")
    assert details == [{"from": city, "to": city2, "standby": True}], details


async def _moved(net: Net, city2: str) -> tuple[str | None, str | None] | None:
    where = await _parent_at_province(net)
    return where if where == (city2, "up") else None
