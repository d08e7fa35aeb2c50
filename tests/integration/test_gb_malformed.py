"""Malformed SIP through the node's real UDP socket: garbage is dropped with a log line, a
request whose headers do not parse gets 400 naming the header, a MESSAGE whose MANSCDP body is
not XML gets 400, a NOTIFY without ``Event`` gets 400, malformed headers nothing reads do not stop
a request — and the registrar still answers the next good REGISTER. (The fuzz harnesses under
fuzz/ cover the parsers themselves.)

"No answer" is shown without waiting for a time: after each dropped datagram a good request is
sent, and the first datagram that comes back must be the good request's answer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import pytest
from test_gb_device import IPC, IPC_CHANNEL, REGION, device, node, start_gb  # noqa: F401

from vmesh.gb28181.message import SipResponse, parse_message
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration


class Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.put_nowait(data)


def request(method: str, *, cseq: str | None = None, extra: str = "", body: bytes = b"") -> bytes:
    call = secrets.token_hex(6)
    head = (
        f"{method} sip:33000000002006000001@3300000000 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK{call}\r\n"
        f"From: <sip:{IPC}@3300000000>;tag=t{call}\r\n"
        "To: <sip:33000000002006000001@3300000000>\r\n"
        f"Call-ID: {call}\r\n"
        f"CSeq: {cseq or '1 ' + method}\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def answer(peer: Peer) -> SipResponse:
    data = await asyncio.wait_for(peer.inbox.get(), 10)  # a hung-test guard, not a measurement
    msg = parse_message(data)
    assert isinstance(msg, SipResponse)
    return msg


async def test_malformed_requests_get_400_or_are_dropped(
    node: NodeContext,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vmesh.gb28181")
    gb = await start_gb(node)
    ipc = await device(gb, IPC, channels=[(IPC_CHANNEL, "大门")])
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    dest = ("127.0.0.1", gb.port)
    try:
        assert await ipc.register() == 200
        # Garbage: dropped with a log line; the next good REGISTER's 401 is the first answer.
        for junk in (b"\x00\xff" * 40, b"REGISTER\r\n\r\n", "注册 请求\r\n".encode("gb18030")):
            transport.sendto(junk, dest)
            transport.sendto(request("REGISTER"), dest)
            assert (await answer(peer)).status == 401
        assert "sip malformed datagram" in caplog.text

        # A CSeq that does not parse cannot be answered (a response echoes it): dropped, logged.
        transport.sendto(request("REGISTER", cseq="abc REGISTER"), dest)
        transport.sendto(request("REGISTER"), dest)
        assert (await answer(peer)).status == 401
        assert "CSeq: must be" in caplog.text
        # Other headers that do not parse: 400 naming the header.
        good = request("REGISTER")
        for broken, header in (
            (good.replace(b"127.0.0.1:5999;", b"127.0.0.1:99999;"), "Via"),
            (good.replace(b"From: <sip:", b"From: <zzz:"), "From"),
        ):
            transport.sendto(broken, dest)
            bad = await answer(peer)
            assert bad.status == 400 and header in bad.reason, bad.reason

        # Headers nothing on the REGISTER path reads, malformed: values are parsed when read
        # (message.py), so they do not stop the request — it is answered as before (401).
        unused = "Contact: <zzz:not-a-uri\r\nRecord-Route: ,<\r\nX-Odd: \u00b2\r\n"
        transport.sendto(request("REGISTER", extra=unused), dest)
        assert (await answer(peer)).status == 401
        # A line that is not "Name: value" still makes the datagram malformed: dropped, logged.
        transport.sendto(request("REGISTER", extra="no colon on this line\r\n"), dest)
        transport.sendto(request("REGISTER"), dest)
        assert (await answer(peer)).status == 401
        assert "line is not 'Name: value'" in caplog.text

        # A digest answer with a non-ASCII nonce (found by fuzz/fuzz_sip.py): a new challenge.
        auth = (
            f'Authorization: Digest username="{IPC}", realm="3300000000", '
            f'nonce="{"象" * 40}", uri="sip:x@3300000000", response="{"0" * 32}"\r\n'
        )
        transport.sendto(request("REGISTER", extra=auth), dest)
        assert (await answer(peer)).status == 401

        # MESSAGE from the registered IPC whose body is not XML: 400, logged.
        ctype = "Content-Type: Application/MANSCDP+xml\r\n"
        transport.sendto(request("MESSAGE", extra=ctype, body=b"<Notify><CmdType>Kee"), dest)
        assert (await answer(peer)).status == 400
        assert "gb bad MANSCDP" in caplog.text
        # NOTIFY without an Event header: 400.
        transport.sendto(request("NOTIFY", extra=ctype, body=b"<Notify/>"), dest)
        assert (await answer(peer)).status == 400

        # The node still works: the device keeps alive and registers again.
        assert await ipc.keepalive() == 200
        assert await ipc.register() == 200
    finally:
        transport.close()
        await ipc.close()


async def test_a_burst_queued_at_once_is_answered_whole_to_each_sender(
    node: NodeContext,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Datagrams that queue on the node's socket while its loop is busy are read several per
    wake-up (transport.py drains the socket): each gets its answer, sent to its own sender, and
    the malformed ones among them are dropped without stopping the rest."""
    caplog.set_level(logging.INFO, logger="vmesh.gb28181")
    gb = await start_gb(node)
    loop = asyncio.get_running_loop()
    dest = ("127.0.0.1", gb.port)
    senders = [
        await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0)) for _ in range(2)
    ]
    try:
        sent: list[set[str]] = [set(), set()]
        # No await in this loop: the node's loop cannot run, so all 90 queue on its socket
        # (transport.sendto writes to the socket at once when nothing is buffered).
        for i in range(90):
            k = i % 2
            if i % 9 == 4:
                senders[k][0].sendto(b"REGISTER sip:x SIP/2.0\r\nVia: \x00\r\n\r\n", dest)
                continue
            data = request("REGISTER")
            sent[k].add(parse_message(data).call_id)
            senders[k][0].sendto(data, dest)
        for k, (_, peer) in enumerate(senders):
            got = [await answer(peer) for _ in sent[k]]
            assert {r.status for r in got} == {401}
            assert {r.call_id for r in got} == sent[k]  # each its own, none lost
        assert caplog.text.count("sip malformed datagram") == 10
        # Nothing else was answered: the next answer each sender gets is its next request's.
        for transport, peer in senders:
            data = request("REGISTER")
            transport.sendto(data, dest)
            assert (await answer(peer)).call_id == parse_message(data).call_id
    finally:
        for transport, _ in senders:
            transport.close()
