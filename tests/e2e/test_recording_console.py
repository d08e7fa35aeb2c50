"""The recordings page in Debian's Chromium against a real node recording a synthetic camera
(switch + Janus + ffmpeg recorder, ``tests/media_site.py``) whose colour patch changes every
``N`` seconds (the issue's "every minute", scaled).

One story: the admin turns recording on from the page (plan form); once the node has recorded
a while, the day strip shows a recorded span and gaps; clicking a point of the zoomed strip seeks
the ``<video>`` there and the frame it shows (drawn onto a canvas) has the colour the camera
showed at that time; 2× sets the video's playbackRate; the clip link downloads an MP4 that
ffprobe reads. A bad plan is refused naming the field, in the page.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from e2e.console_node import Node
from media_site import ADMIN, camera_code, login_cookie, media_node
from vmesh.ingest.synthetic import patch_rect

pytestmark = pytest.mark.e2e

N = 4.0
COLOURS = ["#ff0000", "#00ff00", "#0000ff"]
CAM = camera_code(41)
W, H = 320, 180
EXTRA = {
    CAM: {
        "name": "录像回放测试摄像机",
        "attrs": {"source": "synthetic", "mode": "live", "width": W, "height": H, "fps": 25,
                  "gop": 25, "colors": COLOURS, "color_seconds": N},
    }
}  # fmt: skip
RECORDING = (
    "\n[recording]\nenabled = true\nsegment_seconds = 2\nstall_seconds = 6\n"
    "min_free_percent = 0\nretention_interval_seconds = 3600\nhealth_sample_seconds = 3600\n"
)
RECORD_S = 5 * N
# Readiness bounds (how long to wait for something to happen), not performance assertions.
WAIT_S = 120.0
PLAY_TIMEOUT_MS = 45_000

# The colour at the centre of the patch of the frame the <video> shows (paused), drawn onto a
# canvas, and the wall time of that frame (X-Vmesh-Start + currentTime).
SAMPLE_JS = """([x, y]) => {
  const v = document.querySelector('[data-testid="rec-video"]');
  v.pause();
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0);
  const d = g.getImageData(x - 2, y - 2, 5, 5).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) { sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2]; }
  return {rgb: sum.map((s) => Math.round(s / (d.length / 4))),
          at: Number(v.dataset.start) + v.currentTime};
}"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = media_node(tmp_path_factory.mktemp("recconsole"), extra_cameras=EXTRA, extra_toml=RECORDING)
    try:
        yield n
    finally:
        n.stop()


def _timeline(node: Node, cookie: str) -> dict[str, Any]:
    now = time.time()
    req = urllib.request.Request(
        f"{node.base_url}/api/recordings/{CAM}/timeline?start={now - 3600}&end={now + 60}",
        headers={"Cookie": cookie},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _colour_at(t: float) -> str:
    return COLOURS[math.floor(t / N) % len(COLOURS)]


def _nearest(rgb: list[int]) -> str:
    def dist(hexc: str) -> int:
        v = int(hexc[1:], 16)
        return sum(
            (a - b) ** 2 for a, b in zip(rgb, (v >> 16, (v >> 8) & 255, v & 255), strict=True)
        )

    return min(COLOURS, key=dist)


def _log_in(page: Page, node: Node) -> None:
    page.goto(node.base_url + "/")
    page.get_by_test_id("login-username").fill(ADMIN[0])
    page.get_by_test_id("login-password").fill(ADMIN[1])
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("current-user")).to_contain_text(ADMIN[0], timeout=30_000)


def test_timeline_seek_speed_and_clip(page: Page, node: Node, tmp_path: Path) -> None:
    _log_in(page, node)
    page.get_by_test_id("nav-recordings").click()
    page.get_by_test_id(f"rec-camera-{CAM}").click()
    expect(page.get_by_test_id("rec-plan-mode")).to_have_value("off")

    # the plan, from the page: a bad one refused naming the field, then "always"
    page.get_by_test_id("rec-plan-days").fill("0")
    page.get_by_test_id("rec-plan-save").click()
    expect(
        page.locator('[data-testid="rec-plan-error-field"][data-field="retention_days"]')
    ).to_be_visible()
    page.get_by_test_id("rec-plan-days").fill("30")
    page.get_by_test_id("rec-plan-mode").select_option("always")
    page.get_by_test_id("rec-plan-save").click()
    expect(page.get_by_test_id("rec-plan-saved")).to_be_visible()

    cookie = login_cookie(node, *ADMIN)
    deadline = time.monotonic() + WAIT_S
    while not any(s["end"] - s["start"] >= RECORD_S for s in _timeline(node, cookie)["spans"]):
        if time.monotonic() > deadline:
            pytest.fail(f"not {RECORD_S:g} s recorded within {WAIT_S:g} s:\n{node.log_text()}")
        time.sleep(1)

    # the day strip: a recorded span and the gaps around it
    page.reload()
    expect(page.get_by_test_id("rec-day-bar").get_by_test_id("rec-span").first).to_be_visible()
    expect(page.get_by_test_id("rec-day-bar").get_by_test_id("rec-gap").first).to_be_visible()
    page.get_by_test_id("rec-zoom").select_option("60")
    bar = page.get_by_test_id("rec-detail-bar")
    span = bar.get_by_test_id("rec-span").last
    s0, s1 = float(span.get_attribute("data-start")), float(span.get_attribute("data-end"))  # type: ignore[arg-type]

    # click a later point of the span: the middle of a colour period, two periods before its end
    target = (math.floor(s1 / N) - 2) * N + N / 2
    assert s0 + 1 < target < s1 - 1
    w0, w1 = float(bar.get_attribute("data-start")), float(bar.get_attribute("data-end"))  # type: ignore[arg-type]
    box = bar.bounding_box()
    assert box is not None
    bar.click(position={"x": (target - w0) / (w1 - w0) * box["width"], "y": box["height"] / 2})
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"rec-video\"]').dataset.seekedTo",
        timeout=PLAY_TIMEOUT_MS,
    )
    px, py, pw, ph = patch_rect(W, H)
    got = page.evaluate(SAMPLE_JS, [px + pw // 2, py + ph // 2])
    assert abs(got["at"] - target) < 1.0, (got, target)
    assert _nearest(got["rgb"]) == _colour_at(target), (got, target)

    # 2×
    page.get_by_test_id("rec-rate-2").click()
    assert (
        page.evaluate("() => document.querySelector('[data-testid=\"rec-video\"]').playbackRate")
        == 2
    )

    # a clip of the span's first 2N seconds downloads as an MP4 ffprobe reads
    def hms(t: float) -> str:
        return time.strftime("%H:%M:%S", time.localtime(t))

    page.get_by_test_id("rec-clip-from").fill(hms(s0 + 1))
    page.get_by_test_id("rec-clip-to").fill(hms(s0 + 1 + 2 * N))
    with page.expect_download() as dl:
        page.get_by_test_id("rec-clip-download").click()
    out = tmp_path / "clip.mp4"
    dl.value.save_as(out)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(out)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert float(probe.stdout.strip()) >= 2 * N - 0.5
    assert page.errors == []
