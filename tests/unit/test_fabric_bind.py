"""A link end's port search (``links._bind`` over ``[fabric] port_range``) steps over a port in
use on uvloop too, which reports it as "could not bind to local_addr" with the EADDRINUSE as its
cause (the node runs on uvloop: a netns run's open failed "internal error" this way)."""

from __future__ import annotations

import socket

import pytest
import uvloop

from vmesh.fabric.links import _bind

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
