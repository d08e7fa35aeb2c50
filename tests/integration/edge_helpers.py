"""Shared by the edge integration tests: a real Janus on free ports, and its sockets from /proc."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from vmesh.edge.service import JanusEdge
from vmesh.node.supervisor import RestartPolicy

# Below Linux's ephemeral range (32768-60999), so free-port picks never land in them.
ICE_RANGE = (21000, 21999)
STREAMING_RANGE = (22000, 22999)


def need_janus() -> None:
    if shutil.which("janus") is None:
        pytest.fail("janus is not installed: apt-get install janus (scripts/setup.sh does)")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_edge(data_dir: Path, **settings: object) -> JanusEdge:
    need_janus()
    http_port = free_tcp_port()
    admin_port = free_tcp_port()
    while admin_port == http_port:
        admin_port = free_tcp_port()
    opts: dict[str, object] = {
        "http_port": http_port,
        "admin_port": admin_port,
        "rtp_port_range": ICE_RANGE,
        "streaming_port_range": STREAMING_RANGE,
    }
    opts.update(settings)
    return JanusEdge.for_data_dir(
        data_dir,
        restart=RestartPolicy(initial_delay=0.2, max_delay=2.0, max_failures=5),
        health_interval=1.0,
        **opts,  # type: ignore[arg-type]
    )


def _proc_net(kind: str) -> dict[int, tuple[str, int]]:
    """inode -> (local address, port) of every socket in /proc/net/<kind> and <kind>6."""
    out: dict[int, tuple[str, int]] = {}
    for name in (kind, kind + "6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            addr, port = cols[1].rsplit(":", 1)
            out[int(cols[9])] = (addr, int(port, 16))
    return out


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def udp_ports(pid: int) -> set[int]:
    """UDP ports bound by process ``pid``."""
    table = _proc_net("udp")
    return {table[i][1] for i in socket_inodes(pid) if i in table}


def tcp_listen_addrs(pid: int) -> set[tuple[str, int]]:
    """(hex address, port) of the TCP sockets of ``pid`` in LISTEN state."""
    listening: dict[int, tuple[str, int]] = {}
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A":
                addr, port = cols[1].rsplit(":", 1)
                listening[int(cols[9])] = (addr, int(port, 16))
    return {listening[i] for i in socket_inodes(pid) if i in listening}


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def free_udp_block(n: int, start: int = 23000, end: int = 32000) -> int:
    """First port p in [start, end) such that p..p+n-1 are bound by no one."""
    used = {port for _, port in _proc_net("udp").values()}
    p = start
    while p + n < end:
        if not any(q in used for q in range(p, p + n)):
            return p
        p += n
    raise RuntimeError("no free UDP port block")
