"""The switch transport with its C data plane and per-output RTCP, over real loopback sockets.

What a receiver notices: every RTP copy arrives on every output, and every output's RTCP socket
gets sender reports about that output (its SSRC, counts that never go back), now that reports
are spread over ticks (RFC 3550 randomised intervals) instead of all made in one tick. The
process's GIL switch interval is lowered while a data plane runs (so other Python code yields
the GIL to it sooner) and put back when the last one stops; the data plane thread runs at the
nice value it was given.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading

import pytest

from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, OutputSpec, Switch
from vmesh.switch.rtcp import RtcpSenderReport, parse_compound
from vmesh.switch.rtp import RtpPacket, parse_rtp
from vmesh.switch.transport import GIL_INTERVAL, SwitchTransport

pytest.importorskip("vmesh.switch._dataplane")
pytestmark = pytest.mark.integration

OUTPUTS = 20


def _sock() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def _drain(s: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(s.recv(2048))
        except BlockingIOError:
            return got


async def test_every_output_gets_its_copies_and_its_sender_reports() -> None:
    before = sys.getswitchinterval()
    assert before > GIL_INTERVAL  # the interpreter's default, 5 ms
    other = SwitchTransport(Switch())
    await other.start()
    base = os.getpriority(os.PRIO_PROCESS, 0)  # this (the test's) thread
    nice = min(19, base + 3)  # raising it needs no privilege
    t = SwitchTransport(Switch(), nice=nice)
    await t.start()
    rtp = [_sock() for _ in range(OUTPUTS)]
    rtcp = [_sock() for _ in range(OUTPUTS)]
    sender = _sock()
    try:
        assert t.dataplane_counts() is not None
        assert sys.getswitchinterval() == GIL_INTERVAL
        port = await t.add_input(InputSpec("cam", Codec.opus))
        for i in range(OUTPUTS):
            await t.add_output(
                OutputSpec(
                    f"o{i}",
                    Codec.opus,
                    ssrc=0x100 + i,
                    dest=rtp[i].getsockname(),
                    rtcp_dest=rtcp[i].getsockname(),
                )
            )
            t.route(f"o{i}", "cam")
        copies = [0] * OUTPUTS
        srs: list[list[RtcpSenderReport]] = [[] for _ in range(OUTPUTS)]
        sent = 0
        # 20 ms Opus packets until every output has had two sender reports.
        while sent < 1000 and min(len(x) for x in srs) < 2:
            pkt = RtpPacket(111, sent, sent * 960, 0xABC, False, payload=b"\xfc" + bytes(60))
            sender.sendto(pkt.serialize(), ("127.0.0.1", port))
            sent += 1
            await asyncio.sleep(0.02)
            for i in range(OUTPUTS):
                copies[i] += len(_drain(rtp[i]))
                for data in _drain(rtcp[i]):
                    sr = parse_compound(data)[0]
                    assert isinstance(sr, RtcpSenderReport) and sr.ssrc == 0x100 + i
                    srs[i].append(sr)
        assert min(len(x) for x in srs) >= 2, "an output got no sender reports"
        for got in srs:
            counts = [sr.packet_count for sr in got]
            assert counts == sorted(counts) and 0 < counts[-1] <= sent
        await asyncio.sleep(0.2)
        for i in range(OUTPUTS):
            copies[i] += len(_drain(rtp[i]))
        assert copies == [sent] * OUTPUTS  # loopback: nothing lost
        assert t.switch.snapshot().outputs["o0"].packets == sent
        assert t.plane_tid is not None and t.plane_tid != threading.get_native_id()
        assert os.getpriority(os.PRIO_PROCESS, t.plane_tid) == nice
        assert os.getpriority(os.PRIO_PROCESS, 0) == base  # only that thread
        await t.close()
        assert sys.getswitchinterval() == GIL_INTERVAL  # the other data plane still runs
    finally:
        await t.close()
        await other.close()
        for s in (*rtp, *rtcp, sender):
            s.close()
    assert sys.getswitchinterval() == before


@pytest.mark.parametrize("dataplane", [True, False])
async def test_an_output_sent_from_its_own_socket_leaves_from_that_address(
    dataplane: bool,
) -> None:
    """``add_output(via_fd=)``, a fabric link's end: the copies come from that socket's address
    (the neighbour accepts only its upstream's), with the C data plane and without; the output
    keeps its counters, and removing it closes only the transport's duplicate of the socket."""
    t = SwitchTransport(Switch(), dataplane=dataplane)
    await t.start()
    via, receiver, other, sender = _sock(), _sock(), _sock(), _sock()
    try:
        assert (t.dataplane_counts() is not None) is dataplane
        port = await t.add_input(InputSpec("cam", Codec.opus))
        spec = OutputSpec("link", Codec.opus, ssrc=0x51, dest=receiver.getsockname())
        await t.add_output(spec, via_fd=via.fileno())
        await t.add_output(OutputSpec("plain", Codec.opus, ssrc=0x52, dest=other.getsockname()))
        t.route("link", "cam")
        t.route("plain", "cam")
        sources: set[tuple[str, int]] = set()
        got = 0
        for seq in range(40):
            pkt = RtpPacket(111, seq, seq * 960, 0xABC, False, payload=b"\xfc" + bytes(60))
            sender.sendto(pkt.serialize(), ("127.0.0.1", port))
            await asyncio.sleep(0.005)
            while True:
                try:
                    data, addr = receiver.recvfrom(2048)
                except BlockingIOError:
                    break
                assert parse_rtp(data).ssrc == 0x51
                sources.add(addr)
                got += 1
        assert got >= 35, got
        assert sources == {via.getsockname()}
        assert len(_drain(other)) >= 35  # the shared socket's outputs unchanged beside it
        assert t.switch.output_counts("link") == (got, got * 73, 0)
        t.remove_output("link")
        assert t.switch.output_counts("link") is None
        via.sendto(b"still open", receiver.getsockname())  # the caller's socket is untouched
        assert receiver.recv(2048) == b"still open"
    finally:
        await t.close()
        for s in (via, receiver, other, sender):
            s.close()
    with pytest.raises(ValueError, match="host, port"):
        t2 = SwitchTransport(Switch(), dataplane=dataplane)
        await t2.start()
        try:
            await t2.add_output(OutputSpec("x", Codec.opus, ssrc=1, dest="token"), via_fd=0)
        finally:
            await t2.close()
