"""Issue 4's first acceptance check: Chromium at the province plays a county camera through its
city (2 hops), decoded frames verified.

The province ← city ← county network of ``tests/integration/test_fabric_netns.py`` (three real
``vmesh node run`` in network namespaces, with nats-server, Janus and ``[fabric] enabled``);
Debian's Chromium runs in the root namespace and reaches the province's console and Janus over
the lab's root leg. The console's wall page plays the county camera (found in the province's
catalogue, not its directory); the test reads what the user sees: the tile's state, the frames
the browser decoded, and the colour of the camera's patch in the decoded picture.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from test_fabric_netns import CAM, CAM2, CAMERAS, COUNTY, Net, net  # noqa: F401

from e2e.console_node import CHROMIUM
from netns.fednodes import wait_until
from netns.vnet import console

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs {CHROMIUM}"),
]

PLAY_TIMEOUT_MS = 60_000  # readiness bound, not a performance assertion

PATCH_JS = """() => {
  const v = document.querySelector('[data-testid="tile-0-video"]');
  if (!v || !v.videoWidth) return null;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0);
  const x = Math.floor(c.width / 8) - 4, y = Math.floor(c.height / 8) - 4;
  const d = g.getImageData(x, y, 9, 9).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) { sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2]; }
  return sum.map((s) => Math.round(s / (d.length / 4)));
}"""


def _rgb(hex_: str) -> tuple[int, int, int]:
    return (int(hex_[1:3], 16), int(hex_[3:5], 16), int(hex_[5:7], 16))


async def test_chromium_at_the_province_plays_a_county_camera(net: Net) -> None:  # noqa: F811
    async def ready() -> bool:
        page = await net.get("prov", "/api/network/catalogue", code_prefix=CAM)
        nodes = (await net.get("prov", "/api/network"))["nodes"]["items"]
        county_up = any(n["code"] == COUNTY and n["link"]["state"] == "up" for n in nodes)
        return page["total"] == 1 and county_up

    await wait_until(ready, "the county camera and the county known at the province", within=60)

    async with console(net, "prov") as page:
        base = net.url("prov")
        await page.goto(f"{base}/#/wall/{CAM}")
        await page.wait_for_function(
            """() => Number(document.querySelector('[data-testid="tile-0"]')
                ?.dataset.framesDecoded || 0) > 50""",
            timeout=PLAY_TIMEOUT_MS,
        )
        state = await page.get_by_test_id("tile-0").get_attribute("data-state")
        assert state == "playing"
        px = await page.evaluate(PATCH_JS)
        assert px is not None
        dist = {
            code: sum((a - b) ** 2 for a, b in zip(px, _rgb(color), strict=True))
            for code, (_, color) in CAMERAS.items()
        }
        assert min(dist, key=dist.__getitem__) == CAM, (px, dist)  # its picture, not CAM2's
        assert dist[CAM] < dist[CAM2]

    views = await net.get("prov", "/api/audit", action="live.view", target=CAM)
    assert [r["username"] for r in views["items"]] == ["admin-prov"]

    async def recorded() -> bool:
        page = await net.get("county", "/api/audit", action="fabric.serve", target=CAM)
        return [r["detail"]["user"] for r in page["items"]] == ["admin-prov"]

    await wait_until(recorded, "the view recorded at the county")
