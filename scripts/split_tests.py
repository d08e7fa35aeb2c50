"""Split the test files for ``make test``'s two pytest processes (scripts/test.sh).

``root``: the integration and end-to-end modules that may bind media ports in the root network
namespace — Janus, switch inputs, the demo, GB/T 28181 simulators, fixed UDP blocks — so they
run one after another in one process.
``side``: the modules whose nodes live in network namespaces of their own (``netns.lab`` /
``netns.vnet``), the other integration and end-to-end modules (API, databases, loopback
nats-server, console pages in Chromium without media, on ports the kernel hands out) and the
unit tests, which share no fixed port with the first group and run beside it. Prints one path
per line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
USES_NAMESPACES = re.compile(r"\bnetns\.(vnet|lab)\b")
# What a module uses that binds UDP media ports or fixed ports in the root namespace: a media node
# (Janus, switch inputs), a switch transport, ffmpeg or ingest, an RTSP server or SIPp peer, the
# GB/T 28181 stack, recordings, the demo. A module that only mentions media (an ``rtsp_url`` in a
# directory row, a console page in Chromium with no media) runs beside them.
MAY_BIND_MEDIA_PORTS = re.compile(
    r"media_node|media_site|free_udp|[Jj]anus|ffmpeg|RtspPeer|peers\.rtsp|sipp|gb_|port_range"
    r"|demo|SwitchTransport|switch\.transport|ingest|recording|dataplane|udp"
)


def split() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"root": [], "side": [str(TESTS / "unit")]}
    for kind in ("e2e", "integration"):
        for path in sorted((TESTS / kind).glob("test_*.py")):
            text = path.read_text(encoding="utf-8")
            root = not USES_NAMESPACES.search(text) and MAY_BIND_MEDIA_PORTS.search(text)
            out["root" if root else "side"].append(str(path))
    return out


if __name__ == "__main__":
    print("\n".join(split()[sys.argv[1]]))
