"""Federation nodes for tests: a network CA, node certificates and ``NatsServer``s, on loopback or
inside test-bed namespaces (``Lab``). Real nats-server processes, real certificates."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from vmesh.federation.ca import init_ca, issue_node_cert
from vmesh.federation.natsconf import NatsSettings
from vmesh.federation.service import NatsServer
from vmesh.node.supervisor import RestartPolicy

PROV = "33000000002006000001"
CITY = "33010000002006000001"
CITY2 = "33020000002006000001"

T = TypeVar("T")

WAIT = 90.0  # liveness bound only: how long a test waits for something that must happen


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_ca(root: Path, name: str = "测试网络") -> Path:
    ca_dir = root / "ca"
    init_ca(ca_dir, name=name)
    return ca_dir


def node_server(
    root: Path,
    code: str,
    *,
    ca_dir: Path,
    sans: Sequence[str],
    label: str | None = None,
    argv_prefix: Sequence[str] = (),
    **settings: Any,
) -> NatsServer:
    """Issue ``code``'s certificate from ``ca_dir`` and build its server under ``root/label``."""
    d = root / (label or code)
    files = issue_node_cert(ca_dir, code, out_dir=d / "tls", name=label or "", sans=sans)
    s = NatsSettings(
        node_code=code,
        store_dir=d / "federation",
        ca_file=files.ca,
        cert_file=files.cert,
        key_file=files.key,
        **settings,
    )
    return NatsServer(
        s,
        config_path=d / "federation" / "nats-server.conf",
        log_path=d / "logs" / "nats-server.log",
        argv_prefix=argv_prefix,
        health_interval=1.0,
        restart=RestartPolicy(initial_delay=0.2, max_delay=2.0),
    )


async def wait_until(
    check: Callable[[], Awaitable[T] | T], what: str, within: float = WAIT, every: float = 0.2
) -> T:
    """Poll ``check`` (plain or async) until it returns a truthy value; fail naming ``what``
    after ``within`` s. Exceptions count as "not yet"."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            got = check()
            value = await got if inspect.isawaitable(got) else got
        except Exception as e:  # the thing may not be there yet
            last = e
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not true after {within:g} s (last: {last!r})")
        await asyncio.sleep(every)


def log_text(server: NatsServer) -> str:
    try:
        return server.log_path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
