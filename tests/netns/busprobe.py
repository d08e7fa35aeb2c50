"""A federation bus client to run inside a node's namespace (where its loopback nats-server is).

    python busprobe.py serve URL NODE [SERVICE]      answer SERVICE (default echo) as NODE;
                                                     prints "ready" once subscribed, runs until
                                                     SIGTERM
    python busprobe.py call URL FROM TO SERVICE JSON [TIMEOUT]
                                                     one request; prints one JSON line:
                                                     {"ok": true, "result": ...} or
                                                     {"ok": false, "error": CLASS, "node": ...,
                                                      "detail": ...}

It uses ``vmesh.federation.bus.Bus``, the real client of the node.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

from vmesh.errors import VmeshError
from vmesh.federation.bus import Bus, NodeUnreachable


async def _serve(url: str, node: str, service: str) -> None:
    bus = await Bus.connect(url, node, name="busprobe")

    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return {"echo": body, "node": node}

    await bus.serve(service, echo)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await bus.close()


async def _call(url: str, src: str, dst: str, service: str, body: str, wait: float) -> None:
    bus = await Bus.connect(url, src, name="busprobe")
    try:
        result = await bus.call(dst, service, json.loads(body), timeout=wait)
        out: dict[str, Any] = {"ok": True, "result": result}
    except NodeUnreachable as e:
        out = {"ok": False, "error": type(e).__name__, "node": e.node_code, "detail": e.detail}
    except VmeshError as e:
        out = {"ok": False, "error": type(e).__name__, "node": dst, "detail": e.detail}
    finally:
        await bus.close()
    print(json.dumps(out, ensure_ascii=False), flush=True)


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve"] and len(argv) in (3, 4):
        asyncio.run(_serve(argv[1], argv[2], argv[3] if len(argv) == 4 else "echo"))
    elif argv[:1] == ["call"] and len(argv) in (6, 7):
        timeout = float(argv[6]) if len(argv) == 7 else 3.0
        asyncio.run(_call(argv[1], argv[2], argv[3], argv[4], argv[5], timeout))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
