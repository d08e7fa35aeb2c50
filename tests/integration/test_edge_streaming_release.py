"""Does Janus release what a Streaming RTP mountpoint holds? Create/feed/destroy it 200 times.

The issue's question (docs/edge.md): VideoRoom remote publishers in Janus 1.1.2 keep their UDP
ports after removal once RTP has flowed (#3345). Channels are Streaming RTP mountpoints created and
destroyed for the life of a node, so this checks, with media flowing into every mountpoint and a
viewer attached on some of them, that after every ``destroy`` the mountpoint's UDP ports are free
(re-created on the very same ports at once), and that after the loop Janus holds no more file
descriptors and no more UDP sockets than before it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import pytest
from edge_helpers import ICE_RANGE, fd_count, free_udp_block, make_edge, udp_ports

from vmesh.edge.streaming import STREAMING, RtpMountpoint, create_mountpoint, destroy_mountpoint

pytestmark = pytest.mark.integration

CYCLES = 200
VIEWER_EVERY = 10
WAIT = 60  # liveness bound only


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 0x80 | pt, seq & 0xFFFF, ts, ssrc) + payload


def rx_queues(ports: set[int]) -> dict[int, int]:
    """Bytes waiting unread in the receive queue of UDP sockets bound to ``ports``."""
    out: dict[int, int] = {}
    for name in ("udp", "udp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            cols = line.split()
            port = int(cols[1].rsplit(":", 1)[1], 16)
            if port in ports:
                out[port] = out.get(port, 0) + int(cols[4].split(":")[1], 16)
    return out


async def test_streaming_mountpoints_release_ports_and_fds(tmp_path: Path) -> None:
    edge = make_edge(tmp_path / "data")
    await edge.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        pid = edge.status.pid
        assert pid is not None
        key = edge.settings.secrets.plugin_admin_key
        session = await edge.client.create_session()
        control = await session.attach(STREAMING)
        base = free_udp_block(4)
        ports = {base, base + 1, base + 2}

        async def cycle(i: int, with_viewer: bool) -> None:
            mp = RtpMountpoint.video_audio(
                1000 + i, f"ch-{i}", video_port=base, audio_port=base + 2
            )
            stream = await create_mountpoint(control, mp, key)
            assert [p["port"] for p in stream["ports"]] == [base, base + 2]
            assert ports <= udp_ports(pid)
            # Media flows in: H.264 (a small IDR NAL unit) and Opus packets.
            for n in range(5):
                sender.sendto(
                    rtp(96, n, n * 3600, 0x1000 + i, b"\x65" + bytes(40)), ("127.0.0.1", base)
                )
                sender.sendto(rtp(111, n, n * 960, 0x2000 + i, bytes(30)), ("127.0.0.1", base + 2))
            # Janus read them: nothing stays queued on its sockets.
            async with asyncio.timeout(WAIT):
                while any(rx_queues(ports).values()):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            viewer = None
            if with_viewer:
                viewer = await session.attach(STREAMING)
                reply = await viewer.request({"request": "watch", "id": mp.id})
                assert reply.jsep is not None and reply.jsep["type"] == "offer"
            await destroy_mountpoint(control, mp.id)
            # Released at once: the ports are free as soon as destroy has answered.
            assert not (ports & udp_ports(pid)), f"cycle {i}: ports still bound after destroy"
            if viewer is not None:
                await viewer.detach()

        ice = set(range(ICE_RANGE[0], ICE_RANGE[1] + 1))
        await cycle(0, with_viewer=True)  # warm-up: lazily created state is not a leak
        async with asyncio.timeout(WAIT):
            while udp_ports(pid) & ice:  # noqa: ASYNC110 (the warm-up viewer's ICE sockets)
                await asyncio.sleep(0.05)
        fds_before = fd_count(pid)
        udp_before = udp_ports(pid)

        for i in range(1, CYCLES + 1):
            await cycle(i, with_viewer=i % VIEWER_EVERY == 0)

        # Viewers' ICE agents are torn down by Janus's loop after detach: wait until they go.
        async with asyncio.timeout(WAIT):
            while fd_count(pid) > fds_before or udp_ports(pid) != udp_before:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert fd_count(pid) <= fds_before
        assert udp_ports(pid) == udp_before
        assert edge.status.starts == 1  # Janus never crashed on the way
        await session.destroy()
    finally:
        sender.close()
        await edge.stop()
