"""A link end's port search (``links._bind`` over ``[fabric] port_range``) steps over a port in
use on uvloop too, which reports it as "could not bind to local_addr" with the EADDRINUSE as its
cause (the node runs on uvloop: a netns run's open failed "internal error" this way)."""

from __future__ import annotations

import socket

import pytest
import uvloop

from vmesh.fabric.links import _bind, _bind_plain

pytestmark = pytest.mark.unit


def test_a_port_in_use_is_stepped_over_on_uvloop() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]

    async def bind_twice() -> set[int]:
        got = set()
        for _ in range(2):  # from a random start in [port - 1, port + 1]: never ``port``
            sock = await _bind("127.0.0.1", lambda d, a: None, (port - 1, port + 1))
            got.add(sock.port)
        return got

    try:
        got = uvloop.run(bind_twice())
    finally:
        taken.close()
    assert port not in got and len(got) == 2


def test_a_link_in_socket_steps_over_ports_in_use_and_names_the_range_when_none_is_free() -> None:
    """``_bind_plain``: the ``LinkIn``'s sockets (plain, so the switch's data plane can read them)
    search ``[fabric] port_range`` the same way."""
    taken = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        taken[0].bind(("127.0.0.1", 0))
        port = taken[0].getsockname()[1]
        got = [_bind_plain("127.0.0.1", lambda d, a: None, (port - 1, port + 1)) for _ in range(2)]
        ports = {s.port for s in got}
        assert port not in ports and len(ports) == 2
        with pytest.raises(
            OSError,
            match=f"no free UDP port on 127.0.0.1 in \\[fabric\\] port_range {port - 1}-{port + 1}",
        ):
            _bind_plain("127.0.0.1", lambda d, a: None, (port - 1, port + 1))
        for s in got:
            s.close()
    finally:
        for s in taken:
            s.close()
