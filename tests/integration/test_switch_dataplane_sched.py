"""The data plane thread's scheduling (docs/switch.md, "Scheduling"), over real loopback sockets.

What an operator notices: with ``cpus`` and ``realtime_priority`` the thread named
``vmesh-dataplane`` runs only on those CPUs under SCHED_FIFO at that priority (where the process
may: root, CAP_SYS_NICE or an RLIMIT_RTPRIO; otherwise a warning says it was refused and it runs
as before) while every output still gets every copy; the node's other threads keep their own
scheduling. A CPU the process may not use is refused with a warning, and forwarding goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import threading
from pathlib import Path

import pytest

from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, OutputSpec, Switch
from vmesh.switch.rtp import RtpPacket
from vmesh.switch.transport import SwitchTransport

pytest.importorskip("vmesh.switch._dataplane")
pytestmark = pytest.mark.integration

OUTPUTS = 10
PACKETS = 50


def _thread_name(tid: int) -> str:
    return Path(f"/proc/self/task/{tid}/comm").read_text().strip()


def _may_use_fifo() -> bool:
    return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_RTPRIO)[0] >= 1


async def _forward(t: SwitchTransport) -> list[int]:
    """PACKETS Opus packets into one input routed to OUTPUTS outputs: copies per output."""
    sinks = []
    for _ in range(OUTPUTS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        sinks.append(s)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        port = await t.add_input(InputSpec("cam", Codec.opus))
        for i, s in enumerate(sinks):
            await t.add_output(OutputSpec(f"o{i}", Codec.opus, ssrc=i + 1, dest=s.getsockname()))
            t.route(f"o{i}", "cam")
        for n in range(PACKETS):
            pkt = RtpPacket(111, n, n * 960, 0xABC, False, payload=b"\xfc" + bytes(60))
            sender.sendto(pkt.serialize(), ("127.0.0.1", port))
            await asyncio.sleep(0.005)
        copies = [0] * OUTPUTS
        for _ in range(100):  # until every copy is in (loopback loses none), at most ~5 s
            await asyncio.sleep(0.05)
            for i, s in enumerate(sinks):
                while True:
                    try:
                        s.recv(2048)
                    except BlockingIOError:
                        break
                    copies[i] += 1
            if copies == [PACKETS] * OUTPUTS:
                break
        return copies
    finally:
        sender.close()
        for s in sinks:
            s.close()


async def test_pinned_realtime_data_plane_forwards_every_copy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cpu = max(os.sched_getaffinity(0))
    mine = (os.sched_getscheduler(0), os.sched_getaffinity(0))
    t = SwitchTransport(Switch(), cpus={cpu}, realtime_priority=1)
    caplog.set_level(logging.INFO, logger="vmesh.switch.transport")
    await t.start()
    try:
        assert await _forward(t) == [PACKETS] * OUTPUTS
        tid = t.plane_tid
        assert tid is not None and tid != threading.get_native_id()
        assert _thread_name(tid) == "vmesh-dataplane"
        assert os.sched_getaffinity(tid) == {cpu}
        if _may_use_fifo():
            assert os.sched_getscheduler(tid) == os.SCHED_FIFO
            assert os.sched_getparam(tid).sched_priority == 1
            assert f"switch data plane tid={tid} cpus={cpu} policy=fifo:1" in caplog.text
        else:
            assert os.sched_getscheduler(tid) == os.SCHED_OTHER
            assert "SCHED_FIFO priority 1 refused" in caplog.text
        assert (os.sched_getscheduler(0), os.sched_getaffinity(0)) == mine  # only that thread
    finally:
        await t.close()


async def test_a_cpu_the_process_may_not_use_is_refused_and_forwarding_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ValueError, match="realtime_priority must be 1 to 99"):
        SwitchTransport(Switch(), realtime_priority=0)
    allowed = os.sched_getaffinity(0)
    t = SwitchTransport(Switch(), cpus={4095})  # no such CPU here (the kernel's limit is 4096+)
    await t.start()
    try:
        assert await _forward(t) == [PACKETS] * OUTPUTS
        assert "switch data plane: cpus [4095] refused" in caplog.text
        assert t.plane_tid is not None and os.sched_getaffinity(t.plane_tid) == allowed
    finally:
        await t.close()
