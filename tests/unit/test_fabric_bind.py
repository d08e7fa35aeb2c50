"""A link end's port search (``links._bind`` over ``[fabric] port_range``) steps over ports in use
and names the range when none is free; ``LinkOut.open`` binds its network socket in the range and
reads it in the running loop (the node's uvloop)."""

from __future__ import annotations

import socket

import pytest
import uvloop

from vmesh.fabric.links import LinkOut, _bind

pytestmark = pytest.mark.unit


def test_a_link_socket_steps_over_ports_in_use_and_names_the_range_when_none_is_free() -> None:
    taken = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        taken[0].bind(("127.0.0.1", 0))
        port = taken[0].getsockname()[1]
        got = [_bind("127.0.0.1", lambda d, a: None, (port - 1, port + 1)) for _ in range(2)]
        ports = {s.port for s in got}
        assert port not in ports and len(ports) == 2
        with pytest.raises(
            OSError,
            match=f"no free UDP port on 127.0.0.1 in \\[fabric\\] port_range {port - 1}-{port + 1}",
        ):
            _bind("127.0.0.1", lambda d, a: None, (port - 1, port + 1))
        for s in got:
            s.close()
    finally:
        for s in taken:
            s.close()


def test_a_link_out_on_uvloop_binds_in_the_range_and_hands_peer_rtcp_to_the_switch() -> None:
    """RTCP from the neighbour reaches the switch output's RTCP socket through ``lo_rtcp``, and
    the output's own RTCP leaves from ``wan`` to the neighbour, with the loop reading both."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    switch = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (taken, peer, switch):
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
    port = taken.getsockname()[1]
    rr = bytes([0x81, 201, 0, 7]) + bytes(28)  # an RTCP receiver report (one block)
    sr = bytes([0x80, 200, 0, 6]) + bytes(24)  # a sender report, no blocks

    async def exchange() -> tuple[int, bytes, bytes]:
        import asyncio

        link = await LinkOut.open("127.0.0.1", peer.getsockname(), (port - 1, port + 1))
        try:
            loop = asyncio.get_running_loop()
            # The output's SR, sent to lo_rtcp, goes on to the peer from wan.
            switch.sendto(sr, ("127.0.0.1", link.lo_rtcp.port))
            got_sr, at = await loop.run_in_executor(None, peer.recvfrom, 2048)
            assert at[1] == link.wan.port
            # The peer's RR, sent to wan, reaches the output's RTCP socket (where the SR came from).
            peer.sendto(rr, ("127.0.0.1", link.wan.port))
            got_rr, _ = await loop.run_in_executor(None, switch.recvfrom, 2048)
            assert link.stats()["rtcp_in"] == 1
            return link.wan.port, got_sr, got_rr
        finally:
            link.close()

    try:
        wan_port, got_sr, got_rr = uvloop.run(exchange())
    finally:
        for s in (taken, peer, switch):
            s.close()
    assert wan_port in (port - 1, port + 1)
    assert (got_sr, got_rr) == (sr, rr)
