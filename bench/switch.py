"""Benchmark of the switch's sans-IO core: packets per second through ``Switch.on_rtp`` on one
core at fan-out 1, 10 and 100, and the per-packet latency of the core (p50/p99 of one
``on_rtp`` call, which produces every output's copy). No sockets: this is the ceiling the UDP
transport and the kernel then eat into.

With ``--udp`` (``bench_switch_udp.py``) it then runs the real thing: the switch's UDP transport
and Janus VideoRoom ``rtp_forward`` side by side over loopback at the same fan-outs, in the same
run (packets per core-second of each forwarder process, the ratio, one-way latency p50/p99).

Run: ``.venv/bin/python bench/switch.py [--seconds 3] [--udp --udp-seconds 20] [--also-python]
[--with-rtcp] [--nice -10] [--pin 1 --rt 10] [--fanouts 1,10,100]``; prints JSON
(docs/BENCHMARKS.md has the exact commands).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time

from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, OutputSpec, Switch
from vmesh.switch.rtp import RtpPacket

PAYLOAD = 1160  # bytes of H.264 per packet, as ffmpeg sends with pkt_size=1200
PER_FRAME = 4  # 16384 frames make exactly one 65536-packet sequence cycle, so looping is seamless
GOP_FRAMES = 50


def stream(n_frames: int) -> list[bytes]:
    """An H.264-shaped stream: keyframe (STAP-A + FU-A IDR) every 50 frames, deltas between."""
    out = []
    seq, ts = 0, 0
    body = bytes(random.Random(1).getrandbits(8) for _ in range(PAYLOAD))
    for f in range(n_frames):
        key = f % GOP_FRAMES == 0
        for i in range(PER_FRAME):
            if key and i == 0:
                head = b"\x18\x00\x02\x67\x42\x00\x02\x68\xce"
            else:
                nal = 0x7C if key else 0x5C
                fu = (
                    (5 if key else 1)
                    | (0x80 if i == 0 else 0)
                    | (0x40 if i == PER_FRAME - 1 else 0)
                )
                head = bytes((nal, fu))
            pkt = RtpPacket(96, seq & 0xFFFF, ts, 0xCAFE, i == PER_FRAME - 1, payload=head + body)
            out.append(pkt.serialize())
            seq += 1
        ts = (ts + 3600) & 0xFFFFFFFF
    return out


def run(fanout: int, packets: list[bytes], seconds: float) -> dict[str, float]:
    sw = Switch(rng=random.Random(2))
    sw.add_input(InputSpec("cam", Codec.h264))
    for i in range(fanout):
        sw.add_output(OutputSpec(f"o{i}", Codec.h264, ssrc=i + 1, dest=("127.0.0.1", 20000 + i)))
        sw.route(f"o{i}", "cam", 0.0)
    on_rtp = sw.on_rtp
    clock = time.perf_counter_ns
    lat: list[int] = []
    sent = 0
    n = 0
    now = 0.0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for data in packets[n % len(packets) :][:2000]:
            now += 0.01
            t0 = clock()
            sent += len(on_rtp("cam", data, now))
            lat.append(clock() - t0)
            n += 1
    elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "fanout": fanout,
        "packets_in_per_s": round(n / elapsed),
        "packets_out_per_s": round(sent / elapsed),
        "latency_p50_us": round(lat[len(lat) // 2] / 1000, 2),
        "latency_p99_us": round(lat[int(len(lat) * 0.99)] / 1000, 2),
        "packets_in": n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="per fan-out (default 3)")
    ap.add_argument("--udp", action="store_true", help="also switch vs Janus over real UDP")
    ap.add_argument("--rate", type=int, default=200, help="input packets/s for --udp")
    ap.add_argument("--udp-seconds", type=float, default=8.0, help="window per fan-out")
    ap.add_argument(
        "--also-python",
        action="store_true",
        help="with --udp: also the switch without its C data plane (the pure-Python path)",
    )
    ap.add_argument(
        "--with-rtcp",
        action="store_true",
        help="with --udp: also the switch with an RTCP destination per output (sender reports "
        "every interval, as the node's media channels have)",
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=None,
        help="with --udp: every thread and process started from here (sender, Janus, the "
        "switch) and the scheduler autogroups of this session, Janus's and the switch's at this "
        "nice value, the sink threads 5 lower (negative: root); the same for both forwarders, "
        "so on a busy machine the latency is the forwarders' and less the CPU queue's",
    )
    ap.add_argument(
        "--pin",
        type=int,
        default=None,
        metavar="CPU",
        help="with --udp: the forwarders on this CPU (the switch's data plane thread, as "
        "[media] dataplane_cpus does; every thread of Janus and of the Python path), this "
        "process (sender, sinks) on the others",
    )
    ap.add_argument(
        "--rt",
        type=int,
        default=None,
        metavar="PRIO",
        help="with --udp: the forwarders at this SCHED_FIFO priority (the switch's data plane "
        "thread, as [media] dataplane_priority does; every thread of Janus and of the Python "
        "path); needs root. Without --pin the forwarder may preempt the sender between the "
        "two packets of a burst, which shortens the second one's measured wait: use both",
    )
    ap.add_argument(
        "--python-sink",
        action="store_true",
        help="with --udp: read every output's copies with recvmsg in Python (the sink before "
        "2026-11-30), not only output 0's; the others counted with recvmmsg in batches",
    )
    ap.add_argument(
        "--fanouts",
        type=lambda v: tuple(int(x) for x in v.split(",")),
        default=(1, 10, 100),
        help="comma-separated (default 1,10,100)",
    )
    ap.add_argument("--serve-switch", nargs=3, type=int, metavar=("IN", "SINK", "N"))
    ap.add_argument("--plane-cpu", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--plane-rt", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-dataplane", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rtcp", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_switch:
        from bench_switch_udp import serve_switch

        serve_switch(
            *args.serve_switch,
            dataplane=not args.no_dataplane,
            rtcp=args.rtcp,
            cpu=args.plane_cpu,
            rt=args.plane_rt,
        )
        return
    if args.python_sink:
        from bench_switch_udp import PYTHON_SINK

        PYTHON_SINK["on"] = True
    if args.pin is not None or args.rt is not None:
        from bench_switch_udp import SCHED

        SCHED["cpu"], SCHED["rt"] = args.pin, args.rt
        if args.pin is not None:  # sender and sink threads (started later) inherit it
            os.sched_setaffinity(0, os.sched_getaffinity(0) - {args.pin})
    autogroup = None
    if args.nice is not None:  # inherited by the threads and processes started from here on
        from bench_switch_udp import NICE, set_nice

        NICE["value"] = args.nice  # the switch's and Janus's sessions get it too
        autogroup = set_nice(args.nice)
    try:
        report(args, autogroup)
    finally:
        if autogroup is not None:  # the session's group outlives this process: put it back
            set_nice(0)


def report(args: argparse.Namespace, autogroup: str | None) -> None:
    packets = stream(0x10000 // PER_FRAME)
    results = [run(f, packets, args.seconds) for f in args.fanouts]
    udp = None
    if args.udp:
        from bench_switch_udp import side_by_side

        udp = side_by_side(
            packets,
            args.rate,
            args.udp_seconds,
            args.fanouts,
            also_python=args.also_python,
            with_rtcp=args.with_rtcp,
        )
    print(
        json.dumps(
            {
                "bench": "switch-core",
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "payload_bytes": PAYLOAD,
                "results": results,
                "udp": udp,
                "loadavg": os.getloadavg(),
                "nice": os.getpriority(os.PRIO_PROCESS, 0),
                "autogroup": autogroup,
                "python_sink": args.python_sink,
                "pin": args.pin,
                "rt": args.rt,
                "bench_cpus": sorted(os.sched_getaffinity(0)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
