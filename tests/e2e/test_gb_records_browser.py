"""GB/T 28181 device recordings in Chromium (issue 5 item 5), against a real node.

The node of tests/e2e/test_gb_live.py (``vmesh node run`` with ``[gb28181]`` and live video; its
module fixtures are reused) and a simulated NVR (tests/peers/gb_nvr_sim.py, in a thread of its
own) whose channel recorded 30 minutes in three 10-minute colours. What a user sees: the channel's
"device recordings" button, the day strip drawn from the device's RecordInfo (two spans), a click
on the strip playing back from that time — frames decoded in the browser, of the colour the NVR
recorded then — the pause button reaching the device as INFO PAUSE, and after Stop, BYE at the
device and no SSRC left allocated."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from playwright.sync_api import Page, expect

from e2e.console_node import Node
from e2e.test_gb_live import node, sip_port, ssrcs_in_use, until  # noqa: F401 - module fixtures
from e2e.test_live_wall import (  # noqa: F401 - browser: Chromium with autoplay, module scope
    PLAY_TIMEOUT_MS,
    browser,
    log_in,
)
from media_site import XIHU_OPERATOR
from peers.gb_device_sim import SimThread
from peers.gb_nvr_sim import COLOURS, GbNvrSim, colour_clips

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]

NVR = "33010601001180000088"  # an NVR of 龙坞村 (西湖区, the operator's scope)
CHANNEL = "33010601001310000088"
PASSWORD = "Gb-device-2024"
BLOCK = 600  # the recording's colour changes every 10 minutes

CENTRE_JS = """() => {
  const v = document.querySelector('[data-testid="gbrec-video"]');
  if (!v || !v.videoWidth) return null;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0);
  const d = g.getImageData(Math.floor(c.width / 2) - 4, Math.floor(c.height / 2) - 4, 9, 9).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) { sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2]; }
  return sum.map((s) => Math.round(s / (d.length / 4)));
}"""


# The viewport point of wall time ``t`` on the day strip, from the strip's own bounds, and the
# seconds one pixel of the strip stands for (a whole day across a few hundred pixels: ~6 min).
POINT_JS = """(t) => {
  const bar = document.querySelector('[data-testid="gbrec-day-bar"]');
  const r = bar.getBoundingClientRect();
  const from = Number(bar.dataset.start), to = Number(bar.dataset.end);
  return [r.left + (r.width * (t - from)) / (to - from), r.top + r.height / 2,
          (to - from) / r.width];
}"""


def recording_start() -> float:
    """40 minutes ago on a 10-minute boundary, but today (the page shows today)."""
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    return max((int(time.time()) // BLOCK - 4) * BLOCK, int(midnight) // BLOCK * BLOCK + BLOCK)


@pytest.fixture(scope="module")
def nvr(
    node: Node,  # noqa: F811 - the fixture imported above
    sip_port: int,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GbNvrSim, SimThread, float]]:
    t0 = recording_start()
    runner = SimThread()
    sim = GbNvrSim(
        NVR,
        PASSWORD,
        "33000000002006000001",
        ("127.0.0.1", sip_port),
        channels=[(CHANNEL, "龙坞录像通道")],
        name="龙坞录像机",
        recordings={CHANNEL: [(t0, t0 + 1200), (t0 + 1200, t0 + 1800), (t0 + 2100, t0 + 2160)]},
        colour_clip=colour_clips(tmp_path_factory.mktemp("colours")),
        colour_seconds=BLOCK,
        record_page_size=1,
    )
    runner.run(sim.start())
    try:
        assert runner.run(sim.register()) == 200
        yield sim, runner, t0
    finally:
        runner.run(sim.close())
        runner.stop()


def test_device_recordings_timeline_and_playback(  # type: ignore[no-untyped-def]
    pages,
    node: Node,  # noqa: F811
    nvr: tuple[GbNvrSim, SimThread, float],
) -> None:
    sim, _, t0 = nvr
    page: Page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_=f"#/dir/{CHANNEL}")
    page.get_by_test_id("detail-gb-records").click()
    # The day strip, from the device's RecordInfo (3 items, 1 per page): two spans.
    bar = page.get_by_test_id("gbrec-day-bar")
    expect(bar.get_by_test_id("rec-span")).to_have_count(2)
    assert sim.record_queries and sim.record_queries[-1].device_id == CHANNEL

    # Click 20 minutes in: the playback starts there, within a pixel's worth of time — the mouse
    # event's position is whole pixels, so the time the page reads may be up to a pixel off
    # (~6 min here: the fixed 300 s this allowed failed at times of day where the point lay
    # just short of the next pixel). 20 minutes, so even a pixel off it is inside the first
    # span (0-30 min) and past the first colour (0-10 min).
    # (where the time is on screen is read just before the click: the layout may have moved)
    aim = t0 + 1200
    x, y, per_px = page.evaluate(POINT_JS, aim)
    print(f"day strip: {per_px:.0f} s per pixel; aiming at x={x:.2f}")
    assert per_px < 600 - 1, per_px  # a narrower strip could not keep that promise
    page.mouse.click(x, y)
    tile = page.get_by_test_id("gbrec-tile")
    expect(tile).to_have_attribute("data-state", "playing", timeout=PLAY_TIMEOUT_MS)
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=\"gbrec-tile\"]')"
        ".dataset.framesDecoded || 0) > 10",
        timeout=PLAY_TIMEOUT_MS,
    )
    offer = sim.invites[-1]
    assert offer.session_name == "Playback" and offer.uri == f"{CHANNEL}:0"
    assert abs(offer.start - aim) <= per_px + 1 and offer.stop == t0 + 1800
    assert page.get_by_test_id("gbrec-tile").get_attribute("data-start") == str(offer.start)
    # The picture is the one recorded at the start — or a few seconds on, when the start lies
    # just before a colour change (10 frames decoded and read: well under 30 s of recording).
    want = {sim.colour_at(offer.start), sim.colour_at(offer.start + 30)}
    assert sim.colour_at(t0) not in want  # not simply the recording's first picture
    seen = page.evaluate(CENTRE_JS)
    assert seen is not None
    got = min(
        COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(COLOURS[n], seen, strict=True))
    )
    assert got in want, (seen, want)
    assert ssrcs_in_use(node) == 1

    # Pause goes to the device as MANSRTSP PAUSE; Stop hangs up after the linger.
    page.get_by_test_id("gbrec-pause").click()
    until(lambda: bool(sim.infos) and sim.infos[-1].method == "PAUSE", "PAUSE at the NVR")
    expect(page.get_by_test_id("gbrec-pause")).to_have_text("继续")
    page.get_by_test_id("gbrec-stop").click()
    until(lambda: offer_call(sim) in sim.byes, "BYE at the NVR")
    until(lambda: ssrcs_in_use(node) == 0, "no SSRC allocated")
    assert page.errors == []


def offer_call(sim: GbNvrSim) -> str:
    return next(iter(sim.playbacks))
