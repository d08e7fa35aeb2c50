"""A bare nats-server on loopback (no JetStream, no TLS), for tests and benchmarks whose nodes
share one bus in one process (fabric and conference media across tiers without namespaces).

``async with local_nats() as url:`` starts ``nats-server -a 127.0.0.1 -p <free port>``, waits until
it accepts connections and yields ``nats://127.0.0.1:<port>``; the server is ended on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from peers.rtp import LOCAL, free_tcp_port

# How long to wait for the server to listen: a readiness bound, not a performance assertion.
LISTEN_WAIT_S = 10.0


@contextlib.asynccontextmanager
async def local_nats() -> AsyncIterator[str]:
    port = free_tcp_port()
    proc = await asyncio.create_subprocess_exec(
        "nats-server", "-a", LOCAL, "-p", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(int(LISTEN_WAIT_S / 0.1)):
            with contextlib.suppress(OSError), socket.create_connection((LOCAL, port), 0.2):
                break
            await asyncio.sleep(0.1)
        yield f"nats://{LOCAL}:{port}"
    finally:
        proc.terminate()
        await proc.wait()
