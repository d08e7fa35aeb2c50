"""Time to first frame: from the click on a video-wall tile to the first decoded frame in Chromium,
for a camera with a 2 s GOP, with the switch's GOP cache on and off in the same run.

Two real nodes are started (``tests/media_site.py``: switch + Janus + ffmpeg, ``[media]
gop_cache = true`` and ``false``), each with one synthetic camera of ``--fps`` frames per second
and a keyframe every ``--gop-seconds`` (attrs ``gop = fps x gop_seconds``). One Debian Chromium
(Playwright) opens the console's video wall on each node, logged in as the county operator.

Warm-up: the camera is watched once (its ffmpeg source starts, plays, is stopped; the source keeps
running through a long ``source_linger_seconds``), so source start-up is not measured. Then
``--runs`` trials per node, alternating between the nodes so both see the same machine load: pick
the camera in the list, click the tile (Playwright mouse click; t0 = the click event's
``timeStamp``), wait for the first frame, stop the tile, sleep a random fraction of the GOP (the
source's GOP phase at the next click is random) plus a short settle time.

Per trial, in the page's clock (``performance.now()``, relative to the click):

- ``watch``: the ``watch`` message leaves the WebSocket; ``offer``: Janus's offer arrives;
  ``answer``: the browser's answer leaves; ``ice``: ICE connected; ``dtls``: the peer connection
  is connected (DTLS done); ``rtp``: the video track unmutes (first RTP packet of the track);
  ``decoded``: ``framesDecoded > 0`` (``getStats`` polled every 5 ms);
  ``frame``: the first ``requestVideoFrameCallback`` (its ``presentationTime``: when the frame was
  handed to the compositor) -- the measured time to first frame;
- ``playing``: the node's ``status playing`` message.

Then the presented frames are followed for 3 s: ``fluent`` is the first of 10 frames in a row with
no gap over 200 ms (moving video), ``max_gap`` the longest freeze, ``first_step_media`` the RTP
time between the first and second frames. These matter because Janus's mountpoints keep the last
keyframe (``bufferkf``) and send it to a new viewer at once: without the GOP cache the first
"frame" is often an old keyframe from an earlier viewing, frozen until the source's next keyframe.

Run: ``.venv/bin/python bench/ttff.py [--runs 20] [--seed 1]``; prints JSON (median and p90 --
nearest rank -- of ``frame`` and ``fluent`` for both nodes, the ratios off/on, the median of every
stage, every trial). About 4 minutes for 20 runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from e2e.console_node import CHROMIUM, Node, log_in, media_browser_args  # noqa: E402
from media_site import XIHU_OPERATOR, camera_code, media_node  # noqa: E402

log = logging.getLogger("bench.ttff")

CAMERA = camera_code(40)
STAGES = ("watch", "offer", "answer", "ice", "dtls", "rtp", "decoded", "frame", "playing")
# How long to wait for a trial's first frame before calling it failed (a bound, not a result).
TRIAL_TIMEOUT_MS = 30_000
# How long after the first frame the presented frames are recorded.
FOLLOW_MS = 3000
# "Moving video": this many presented frames in a row, none more than this apart (25 fps = 40 ms).
FLUENT_FRAMES = 10
FLUENT_GAP_MS = 200

# Installed in every page before the console's scripts: timestamps of the signalling messages and
# of the peer connection's events for the current trial (window.__ttff.t, reset per trial).
HOOKS = """
(() => {
  const T = { t: {}, pcs: [], poll: null };
  window.__ttff = T;
  const mark = (k, v) => {
    if (T.t[k] === undefined) T.t[k] = v === undefined ? performance.now() : v;
  };
  T.mark = mark;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      const m = JSON.parse(data);
      if (m.type === "watch") mark("watch");
      else if (m.type === "answer") mark("answer");
    } catch {}
    return send.call(this, data);
  };
  const OrigWS = window.WebSocket;
  window.WebSocket = class extends OrigWS {
    constructor(...a) {
      super(...a);
      this.addEventListener("message", (ev) => {
        try {
          const m = JSON.parse(ev.data);
          if (m.type === "offer") mark("offer");
          else if (m.type === "status" && m.state === "playing") mark("playing");
        } catch {}
      });
    }
  };
  const OrigPC = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends OrigPC {
    constructor(...a) {
      super(...a);
      T.pcs.push(this);
      this.addEventListener("iceconnectionstatechange", () => {
        const s = this.iceConnectionState;
        if (s === "connected" || s === "completed") mark("ice");
      });
      this.addEventListener("connectionstatechange", () => {
        if (this.connectionState === "connected") mark("dtls");
      });
      this.addEventListener("track", (ev) => {
        if (ev.track.kind !== "video") return;
        if (!ev.track.muted) mark("rtp");
        else ev.track.addEventListener("unmute", () => mark("rtp"), { once: true });
      });
    }
  };
  // The click on the tile: the event's own timestamp (same clock as performance.now()).
  document.addEventListener("click", (ev) => {
    const tile = ev.target.closest && ev.target.closest('[data-testid="tile-0"]');
    if (tile && !ev.target.closest("button")) mark("click", ev.timeStamp);
  }, true);
  // Arm a trial: clear the marks, watch the tile's <video> for its first frame, poll getStats.
  T.arm = () => {
    T.t = {};
    T.stats = null;
    const v = document.querySelector('[data-testid="tile-0-video"]');
    T.frames = [];
    T.armed = true;
    const onFrame = (now, md) => {
      T.frames.push([md.presentationTime, md.rtpTimestamp === undefined ? null : md.rtpTimestamp]);
      if (T.frames.length === 1) {
        mark("frame", md.presentationTime);
        T.frameMeta = { width: md.width, height: md.height };
      }
      if (T.armed) v.requestVideoFrameCallback(onFrame);
    };
    v.requestVideoFrameCallback(onFrame);
    if (T.poll) clearInterval(T.poll);
    let busy = false;
    T.poll = setInterval(async () => {
      const pc = T.pcs[T.pcs.length - 1];
      if (busy || !pc || T.t.click === undefined || pc.connectionState === "closed") return;
      busy = true;
      try {
        const r = await pc.getStats();
        r.forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded > 0) {
            mark("decoded");
            if (!T.stats) T.stats = {
              framesDecoded: s.framesDecoded, framesReceived: s.framesReceived,
              keyFramesDecoded: s.keyFramesDecoded, packetsReceived: s.packetsReceived,
              jitterBufferDelay: s.jitterBufferDelay,
              jitterBufferEmittedCount: s.jitterBufferEmittedCount,
              pliCount: s.pliCount, firCount: s.firCount, nackCount: s.nackCount };
          }
        });
      } finally { busy = false; }
    }, 5);
  };
  T.disarm = () => { T.armed = false; if (T.poll) clearInterval(T.poll); T.poll = null; };
})();
"""


def camera_attrs(fps: int, gop_seconds: float, width: int, height: int) -> dict[str, Any]:
    return {
        "source": "synthetic",
        "width": width,
        "height": height,
        "fps": fps,
        "gop": round(fps * gop_seconds),
        "color": "#e02020",
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p90 of 20 values is the 18th smallest)."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


class Wall:
    """One browser context logged in to one node's video wall, one tile."""

    def __init__(self, browser: Any, node: Node, label: str) -> None:
        self.node = node
        self.label = label
        self.context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
        self.context.set_default_timeout(30_000)
        self.context.add_init_script(HOOKS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        p = self.page
        log_in(p, node.base_url, *XIHU_OPERATOR, "#/wall", timeout_ms=30_000)
        p.get_by_test_id("layout-1").click()
        p.get_by_test_id(f"camera-{CAMERA}").wait_for()

    def trial(self) -> dict[str, Any]:
        p = self.page
        p.evaluate("window.__ttff.arm()")
        p.get_by_test_id(f"camera-{CAMERA}").click()
        p.get_by_test_id("tile-0").click(position={"x": 60, "y": 60})
        try:
            p.wait_for_function(
                "() => { const t = window.__ttff.t;"
                " return t.frame !== undefined && t.decoded !== undefined"
                " && t.rtp !== undefined; }",
                timeout=TRIAL_TIMEOUT_MS,
            )
        except Exception as e:
            seen = p.evaluate(
                "() => ({ t: window.__ttff.t, state: document.querySelector("
                "'[data-testid=\"tile-0-state\"]').textContent })"
            )
            raise RuntimeError(f"{self.label}: no first frame: {seen}") from e
        # Then watch what follows for FOLLOW_MS: a first frame followed by a freeze (a lone
        # keyframe whose successors cannot be decoded) is not a picture a user would call playing.
        p.wait_for_function(
            f"() => performance.now() - window.__ttff.t.frame > {FOLLOW_MS}",
            timeout=TRIAL_TIMEOUT_MS,
        )
        raw = p.evaluate(
            "async () => { window.__ttff.disarm(); const T = window.__ttff;"
            " const pc = T.pcs[T.pcs.length - 1]; let end = null;"
            " (await pc.getStats()).forEach((s) => {"
            "   if (s.type === 'inbound-rtp' && s.kind === 'video') end = {"
            "     framesReceived: s.framesReceived, framesDecoded: s.framesDecoded,"
            "     framesDropped: s.framesDropped, keyFramesDecoded: s.keyFramesDecoded,"
            "     packetsReceived: s.packetsReceived, packetsLost: s.packetsLost,"
            "     nackCount: s.nackCount, pliCount: s.pliCount }; });"
            " return { t: T.t, stats: T.stats, end, frames: T.frames, meta: T.frameMeta }; }"
        )
        t = raw["t"]
        click = t["click"]
        out: dict[str, Any] = {k: round(t[k] - click, 1) for k in STAGES if k in t}
        out["ttff_ms"] = out["frame"]
        out.update(follow(raw["frames"], click))
        out["size"] = raw["meta"]
        out["stats"] = raw["stats"]  # inbound video at the first framesDecoded > 0
        out["stats_end"] = raw["end"]  # and at the end of the FOLLOW_MS window
        p.get_by_test_id("tile-0-stop").click()
        return out

    def close(self) -> None:
        self.context.close()


def _median(values: list[Any]) -> float | None:
    v = [x for x in values if x is not None]
    return round(statistics.median(v), 1) if v else None


def _p90(values: list[Any]) -> float | None:
    v = [x for x in values if x is not None]
    return round(percentile(v, 0.9), 1) if v else None


def follow(frames: list[list[float | None]], click: float) -> dict[str, Any]:
    """What the user saw after the first frame (presented frames within FOLLOW_MS of it):
    ``fluent_ms`` (from the click to the first of FLUENT_FRAMES frames in a row with no gap over
    FLUENT_GAP_MS: moving video), ``frame10_ms`` (10th frame, from the click), ``max_gap_ms``
    (longest time between two presented frames: a freeze), ``frames_follow`` (how many), and
    ``first_step_media_ms``: the RTP-timestamp step from the first frame to the second, in ms of
    media time (a large step means the first frame was an old picture, e.g. a keyframe Janus kept
    from an earlier viewing)."""
    first = frames[0][0]
    shown = [f for f in frames if f[0] is not None and f[0] - first <= FOLLOW_MS]  # type: ignore[operator]
    times = [float(f[0]) for f in shown]  # type: ignore[arg-type]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    fluent = None
    for i in range(len(times) - FLUENT_FRAMES + 1):
        if all(g <= FLUENT_GAP_MS for g in gaps[i : i + FLUENT_FRAMES - 1]):
            fluent = round(times[i] - click, 1)
            break
    out: dict[str, Any] = {
        "fluent_ms": fluent,
        "frames_follow": len(shown),
        "max_gap_ms": round(max(gaps), 1) if gaps else None,
        "frame10_ms": round(times[9] - click, 1) if len(times) >= 10 else None,
    }
    if len(shown) >= 2 and shown[0][1] is not None and shown[1][1] is not None:
        step = (int(shown[1][1]) - int(shown[0][1])) & 0xFFFFFFFF  # type: ignore[arg-type]
        out["first_step_media_ms"] = round(step / 90.0, 1)
    return out


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    ttff = [t["ttff_ms"] for t in trials]
    return {
        "runs": len(trials),
        "ttff_median_ms": round(statistics.median(ttff), 1),
        "ttff_p90_ms": round(percentile(ttff, 0.9), 1),
        "ttff_min_ms": min(ttff),
        "ttff_max_ms": max(ttff),
        "fluent_median_ms": _median([t["fluent_ms"] for t in trials]),
        "fluent_p90_ms": _p90([t["fluent_ms"] for t in trials]),
        "frame10_median_ms": _median([t["frame10_ms"] for t in trials]),
        "frame10_p90_ms": _p90([t["frame10_ms"] for t in trials]),
        "max_gap_median_ms": _median([t["max_gap_ms"] for t in trials]),
        "max_gap_p90_ms": _p90([t["max_gap_ms"] for t in trials]),
        "first_step_media_median_ms": _median([t.get("first_step_media_ms") for t in trials]),
        "stage_median_ms": {
            k: round(statistics.median(t[k] for t in trials), 1)
            for k in STAGES
            if all(k in t for t in trials)
        },
        "trials": trials,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--gop-seconds", type=float, default=2.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument(
        "--settle", type=float, default=0.5, help="seconds after a stop, plus the random GOP phase"
    )
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the nodes' folders (logs)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing (Debian package chromium)")
    rng = random.Random(args.seed)
    attrs = camera_attrs(args.fps, args.gop_seconds, args.width, args.height)
    extra = {CAMERA: {"name": "龙坞首帧测试摄像机", "attrs": attrs}}
    work = Path(tempfile.mkdtemp(prefix="vmesh-ttff-"))
    load_before = os.getloadavg()
    nodes: dict[str, Node] = {}
    walls: dict[str, Wall] = {}
    results: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    from playwright.sync_api import sync_playwright

    try:
        for label, cache in (("on", True), ("off", False)):
            base = work / f"gop-cache-{label}"
            base.mkdir()
            # A long linger: the source started by the warm-up keeps running between trials.
            nodes[label] = media_node(
                base, channels=2, linger=3600.0, extra_cameras=extra, gop_cache=cache
            )
            log.info("node gop_cache=%s at %s (%s)", cache, nodes[label].base_url, base)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM),
                args=media_browser_args(),
            )
            try:
                for label, node in nodes.items():
                    walls[label] = Wall(browser, node, label)
                    warm = walls[label].trial()  # starts the source; not counted
                    log.info("warm-up %s: %s ms (source start-up included)", label, warm["ttff_ms"])
                    time.sleep(1.0)
                for i in range(args.runs):
                    order = ["on", "off"] if i % 2 == 0 else ["off", "on"]
                    for label in order:
                        time.sleep(args.settle + rng.uniform(0, args.gop_seconds))
                        r = walls[label].trial()
                        results[label].append(r)
                        log.info(
                            "run %d %s: first frame %s ms, moving %s ms, 10th %s ms, max gap %s ms",
                            i + 1,
                            label,
                            r["ttff_ms"],
                            r["fluent_ms"],
                            r["frame10_ms"],
                            r["max_gap_ms"],
                        )
                errors = {label: w.errors for label, w in walls.items() if w.errors}
                for w in walls.values():
                    w.close()
            finally:
                browser.close()
    finally:
        for n in nodes.values():
            n.stop()
    on, off = summarise(results["on"]), summarise(results["off"])
    report = {
        "benchmark": "ttff",
        "camera": {**attrs, "gop_seconds": args.gop_seconds},
        "runs": args.runs,
        "gop_cache_on": on,
        "gop_cache_off": off,
        "ratio_off_over_on_median": round(off["ttff_median_ms"] / on["ttff_median_ms"], 2),
        "ratio_off_over_on_fluent_median": (
            round(off["fluent_median_ms"] / on["fluent_median_ms"], 2)
            if off["fluent_median_ms"] and on["fluent_median_ms"]
            else None
        ),
        "goal_ms": 300,
        "goal_met_p90": on["ttff_p90_ms"] <= 300,
        "page_errors": errors,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
