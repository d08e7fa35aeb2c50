"""CPU cost of synthetic cameras: live x264 encoding versus a pre-encoded clip looped with -c copy.

Runs ``--cameras`` cameras of each mode one mode after the other (same size, fps, GOP), sending
RTP to local UDP sockets that discard it, waits until all send, then samples the ffmpeg children's
CPU time with psutil over ``--seconds``. Prints JSON: cores used per camera for each mode and the
ratio. Clip encoding (once per camera) happens before the measurement and is reported separately.

    .venv/bin/python bench/ingest.py --cameras 4 --seconds 10 --size 1280x720 --fps 25
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

import psutil

from vmesh.ingest.ffmpeg import RtpTarget
from vmesh.ingest.status import IngestState
from vmesh.ingest.synthetic import ClipCache, SyntheticCamera, SyntheticSpec


def sink() -> tuple[socket.socket, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s, int(s.getsockname()[1])


async def measure(mode: str, args: argparse.Namespace, data: Path) -> dict[str, float]:
    width, height = (int(x) for x in args.size.split("x"))
    socks: list[socket.socket] = []
    cams: list[SyntheticCamera] = []
    clips = ClipCache(data / "clips")
    t0 = time.monotonic()
    for i in range(args.cameras):
        v, vp = sink()
        a, ap = sink()
        socks += [v, a]
        spec = SyntheticSpec(
            f"3301060000131{i + 1:07d}", f"测试 {i + 1}", width=width, height=height,
            fps=args.fps, gop=args.fps * 2, mode=mode,  # type: ignore[arg-type]
        )  # fmt: skip
        cam = SyntheticCamera(spec, RtpTarget("127.0.0.1", vp, ap), data_dir=data, clips=clips)
        await cam.start()
        cams.append(cam)
    try:
        for cam in cams:
            async with asyncio.timeout(600):
                await cam.wait_for(IngestState.SENDING)
        prepare = time.monotonic() - t0
        await asyncio.sleep(2)  # past start-up
        procs = [psutil.Process(c.pid) for c in cams if c.pid is not None]
        before = [p.cpu_times() for p in procs]
        t1 = time.monotonic()
        await asyncio.sleep(args.seconds)
        wall = time.monotonic() - t1
        after = [p.cpu_times() for p in procs]
    finally:
        for cam in cams:
            await cam.stop()
        for s in socks:
            s.close()
    used = sum(
        (b.user + b.system) - (a.user + a.system) for a, b in zip(before, after, strict=True)
    )
    return {
        "cores_per_camera": round(used / wall / len(procs), 4),
        "cores_total": round(used / wall, 3),
        "start_seconds": round(prepare, 1),
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=25)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        live = await measure("live", args, Path(tmp))
        clip = await measure("clip", args, Path(tmp))
    print(json.dumps({
        "cameras": args.cameras, "size": args.size, "fps": args.fps, "seconds": args.seconds,
        "live": live, "clip": clip,
        "live_over_clip": round(live["cores_per_camera"] / max(clip["cores_per_camera"], 1e-6), 1),
        "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
