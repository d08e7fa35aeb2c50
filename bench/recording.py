"""Recording: how many cameras one node records at once, playback start time, and cross-tier
playback start time (a province playing back a county's recording).

1. **Cameras at once** (one real node, ``tests/media_site.py``: switch + Janus + ffmpeg): synthetic
   cameras in clip mode (pre-encoded, looped with ``-c copy``: the camera's own encoding is not
   what is measured) at ``--size``/``--fps``/``--kbps``. For each step of ``--steps`` (1, 5, 10,
   20, …) the plans of that many cameras are set to ``always``; after ``--settle`` s the CPU of
   the node process, of the recorders' ffmpegs (``-f segment``) and of the sources' ffmpegs, and
   the recordings folder's growth, are measured over ``--seconds`` s. Steps stop when the node and
   its ffmpegs use more than ``--cpu-limit`` % of the machine's cores, or the recorders fall
   behind (fewer segments indexed than expected). The machine's own CPU use is reported too
   (other processes included).
2. **Playback start** at that node: ``GET play.mp4`` of the last ``--play-seconds`` s recorded —
   request → first byte (the node joins the segments: other segments each trial, nothing
   cached), and → first frame PyAV decodes from the body (downloaded whole: for a
   ``--play-seconds`` range this includes the transfer).
3. **Cross-tier** (``--cross``, needs root for network namespaces): a province and a county node
   (``tests/netns/vnet.py``, as ``tests/integration/test_recording_netns.py``); the county records
   one camera; the same two times at the county and through the province.

Run: ``.venv/bin/python bench/recording.py [--steps 1,5,10,20] [--cross]``; prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import av
import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from media_site import ADMIN, camera_code, login_cookie, media_node  # noqa: E402

RECORDING = (
    "\n[recording]\nenabled = true\nsegment_seconds = 2\nstall_seconds = 6\n"
    "min_free_percent = 0\nretention_interval_seconds = 3600\nhealth_sample_seconds = 3600\n"
)


def cameras(n: int, size: str, fps: int, kbps: int) -> dict[str, dict[str, Any]]:
    w, h = (int(x) for x in size.split("x"))
    return {
        camera_code(100 + i): {
            "name": f"录像压测{i:03d}",
            "attrs": {"source": "synthetic", "mode": "clip", "clip_seconds": 10, "width": w,
                      "height": h, "fps": fps, "gop": fps * 2, "bitrate_kbps": kbps},
        }
        for i in range(n)
    }  # fmt: skip


def call(base: str, method: str, path: str, cookie: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base + path, data=data, method=method,
        headers={"Cookie": cookie, "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def procs(node_pid: int) -> dict[str, list[psutil.Process]]:
    out: dict[str, list[psutil.Process]] = {"node": [], "recorders": [], "sources": []}
    root = psutil.Process(node_pid)
    out["node"].append(root)
    for p in root.children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "ffmpeg" not in cmd:
            continue
        out["recorders" if "-f segment" in cmd else "sources"].append(p)
    return out


def cpu_seconds(ps: list[psutil.Process]) -> float:
    total = 0.0
    for p in ps:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*.mp4") if f.is_file())


def segments(base: str, cookie: str, codes: list[str], since: float) -> int:
    now = time.time()
    return sum(
        call(base, "GET", f"/api/recordings/{c}/timeline?start={since}&end={now + 60}", cookie)[
            "segments"
        ]
        for c in codes
    )


def first_frame_time(body: bytes) -> None:
    with av.open(io.BytesIO(body)) as c:
        for _ in c.decode(video=0):
            return


async def play_start(
    url: str, headers: dict[str, str], code: str, end: float, seconds: float, trials: int
) -> dict[str, Any]:
    """Median request → first byte and → first decoded frame of ``play.mp4`` (new ranges)."""
    fb, ff = [], []
    async with httpx.AsyncClient(timeout=120, headers=headers) as c:
        for i in range(trials):
            # another set of segments each trial (2 s segments): nothing served from the cache
            t1 = end - i * 2.5
            t0 = t1 - seconds
            start = time.perf_counter()
            async with c.stream(
                "GET", f"{url}/api/recordings/{code}/play.mp4", params={"start": t0, "end": t1}
            ) as r:
                assert r.status_code == 200, await r.aread()
                chunks = []
                async for chunk in r.aiter_bytes():
                    if not chunks:
                        fb.append(time.perf_counter() - start)
                    chunks.append(chunk)
            first_frame_time(b"".join(chunks))
            ff.append(time.perf_counter() - start)
    return {
        "trials": trials,
        "first_byte_ms_median": round(1000 * statistics.median(fb), 1),
        "first_frame_ms_median": round(1000 * statistics.median(ff), 1),
        "first_byte_ms": [round(1000 * x, 1) for x in fb],
    }


def capacity(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    steps = [int(x) for x in args.steps.split(",")]
    cams = cameras(max(steps), args.size, args.fps, args.kbps)
    codes = list(cams)
    node = None
    for attempt in range(3):  # a port another process took meanwhile: another block, again
        base = tmp / f"node{attempt}"
        base.mkdir()
        try:
            node = media_node(base, channels=4, extra_cameras=cams, extra_toml=RECORDING)
            break
        except BaseException as e:  # pytest.fail raises a BaseException
            print(f"node start failed: {str(e)[-200:]}", file=sys.stderr)
    assert node is not None, "the node did not start"
    out: dict[str, Any] = {"steps": []}
    try:
        cookie = login_cookie(node, *ADMIN)
        folder = base / "data" / "recordings"
        assert node.proc is not None
        on = 0
        for k in steps:
            for c in codes[on:k]:
                call(node.base_url, "PUT", f"/api/recordings/{c}/plan", cookie, {"mode": "always"})
            on = k
            time.sleep(args.settle)
            ps = procs(node.proc.pid)
            cpu0 = {k2: cpu_seconds(v) for k2, v in ps.items()}
            b0, since, w0 = folder_bytes(folder), time.time(), time.monotonic()
            psutil.cpu_percent()
            time.sleep(args.seconds)
            machine = psutil.cpu_percent()
            dt = time.monotonic() - w0
            cpu1 = {k2: cpu_seconds(v) for k2, v in ps.items()}
            segs = segments(node.base_url, cookie, codes[:k], since)
            # half of the 2 s segments of the window: a bound for "falling behind" that a loaded
            # machine's slower ffprobe (indexing) does not trip
            expected = k * (args.seconds / 2 - 1) / 2
            row = {
                "cameras": k,
                "cores": {k2: round((cpu1[k2] - cpu0[k2]) / dt, 3) for k2 in cpu0},
                "recorder_cores_per_camera": round(
                    (cpu1["recorders"] - cpu0["recorders"]) / dt / k, 4
                ),
                "disk_write_kbytes_per_s": round((folder_bytes(folder) - b0) / dt / 1000, 1),
                "segments_indexed": segs,
                "segments_expected_at_least": int(expected),
                "machine_cpu_percent": machine,
                "load_average": os.getloadavg(),
            }
            out["steps"].append(row)
            print(json.dumps(row), file=sys.stderr)
            ours = sum(row["cores"].values())  # type: ignore[attr-defined]
            if ours > args.cpu_limit / 100 * (os.cpu_count() or 1) or segs < expected:
                out["stopped"] = f"at {k} cameras: {ours:.2f} cores used, or segments behind"
                break
        now = time.time()
        path = f"/api/recordings/{codes[0]}/timeline?start={now - 3600}&end={now}"
        tl = call(node.base_url, "GET", path, cookie)
        end = tl["spans"][-1]["end"] - 1  # the end of the last recording of the first camera
        out["playback"] = asyncio.run(
            play_start(node.base_url, {"Cookie": cookie}, codes[0], end, args.play_seconds,
                       args.trials)
        )  # fmt: skip
    finally:
        node.stop()
    return out


async def cross(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from test_recording_netns import CAM, TOPO, _setup

    from netns.fednodes import wait_until
    from netns.lab import Lab
    from netns.vnet import start_network

    lab = Lab(list(TOPO.nodes)).up()
    try:
        net = await start_network(tmp, lab, TOPO, _setup)

        async def known() -> bool:
            page = await net.get("prov", "/api/network/catalogue", code_prefix=CAM)
            return page["total"] == 1

        await wait_until(known, "the county camera at the province", within=60)
        await net.send("prov", "PUT", f"/api/recordings/{CAM}/plan", {"mode": "always"})
        t0 = time.time()

        async def recorded() -> bool:
            tl = await net.get("county", f"/api/recordings/{CAM}/timeline", start=t0 - 60,
                               end=t0 + 3600)  # fmt: skip
            return tl["recorded_seconds"] >= args.play_seconds + 5 * args.trials + 6

        await wait_until(recorded, "recorded at the county", within=180)
        end = time.time() - 3
        res = {}
        # each node its own ranges (the county's playback cache must not serve the province's)
        for name, last in (("county", end), ("prov", end - 2.5 * args.trials - 2.5)):
            h = {"Authorization": f"Bearer {net.tokens[name]}"}
            res[name] = await play_start(net.url(name), h, CAM, last, args.play_seconds,
                                         args.trials)  # fmt: skip
        return res
    finally:
        lab.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", default="1,5,10,20")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--kbps", type=int, default=1000)
    ap.add_argument("--settle", type=float, default=8.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--cpu-limit", type=float, default=90.0)
    ap.add_argument("--play-seconds", type=float, default=10.0)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--cross", action="store_true")
    ap.add_argument("--workdir", default=None, help="where the nodes' folders go (removed after)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rec-", dir=args.workdir) as d:
        tmp = Path(d)
        result: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "load_average_before": os.getloadavg()},
            "args": vars(args),
        }  # fmt: skip
        result["capacity"] = capacity(args, tmp)
        if args.cross:
            (tmp / "cross").mkdir()
            result["cross_tier"] = asyncio.run(cross(args, tmp / "cross"))
        result["machine"]["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
