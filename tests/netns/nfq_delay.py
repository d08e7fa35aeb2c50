"""Delay and loss for one NFQUEUE queue, stdlib only: the stand-in for ``tc netem`` on kernels
without ``sch_netem`` (research/netns_testbed.md §4).

Run inside a node's namespace with an iptables rule sending its eth0 egress to the queue
(``netns.lab.Lab.impair`` does both). Each packet's id is held for ``--delay`` ms (order kept),
then gets an ACCEPT verdict, or DROP with probability ``--loss`` (the loss is decided here, not
with ``-m statistic -j DROP``: a DROP in OUTPUT fails the sender's ``sendto`` with EPERM, real
loss is silent). Protocol: nfnetlink_queue over a raw ``AF_NETLINK``/``NETLINK_NETFILTER``
socket, ``NFQNL_COPY_META`` (no payload copied).

    python3 nfq_delay.py --queue 7 --delay 50 --loss 0.05
"""

from __future__ import annotations

import argparse
import collections
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_DROP, NF_ACCEPT = 0, 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def _attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def _msg(msg: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 0, 0) + body


def _check_ack(sock: socket.socket) -> None:
    data = sock.recv(65536)
    _, kind, _, _, _ = struct.unpack_from("=IHHII", data)
    if kind == NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", data, 16)
        if err != 0:
            raise OSError(-err, f"nfnetlink_queue config refused: {-err}")


def open_queue(queue: int) -> socket.socket:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((0, 0))
    bind = _attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET))
    s.send(_msg(NFQNL_MSG_CONFIG, queue, bind, NLM_F_REQUEST | NLM_F_ACK))
    _check_ack(s)
    params = _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
    s.send(_msg(NFQNL_MSG_CONFIG, queue, params, NLM_F_REQUEST | NLM_F_ACK))
    _check_ack(s)
    return s


def packet_ids(data: bytes) -> list[int]:
    """The packet ids of the NFQNL_MSG_PACKET messages in one netlink read."""
    out = []
    off = 0
    while off + 16 <= len(data):
        n, kind, _, _, _ = struct.unpack_from("=IHHII", data, off)
        if n < 16:
            break
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = off + 20  # nlmsghdr + nfgenmsg
            while a + 4 <= off + n:
                alen, akind = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if akind & 0x7FFF == NFQA_PACKET_HDR:
                    out.append(struct.unpack_from("!I", data, a + 4)[0])
                a += (alen + 3) & ~3
        off += (n + 3) & ~3
    return out


def verdict(sock: socket.socket, queue: int, pid: int, v: int) -> None:
    sock.send(_msg(NFQNL_MSG_VERDICT, queue, _attr(NFQA_VERDICT_HDR, struct.pack("!II", v, pid))))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queue", type=int, required=True)
    ap.add_argument("--delay", type=float, default=0.0, help="milliseconds")
    ap.add_argument("--loss", type=float, default=0.0, help="probability 0..1")
    a = ap.parse_args(argv)
    sock = open_queue(a.queue)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    held: collections.deque[tuple[float, int]] = collections.deque()
    delay = a.delay / 1000.0
    print(f"nfq_delay queue={a.queue} delay={a.delay}ms loss={a.loss}", flush=True)
    while True:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, pid = held.popleft()
            verdict(sock, a.queue, pid, NF_DROP if random.random() < a.loss else NF_ACCEPT)
        timeout = max(0.0, held[0][0] - now) if held else 1.0
        r, _, _ = select.select([sock], [], [], timeout)
        if r:
            try:
                data = sock.recv(1 << 16)
            except OSError:  # ENOBUFS: the kernel dropped queued packets (counts as loss)
                continue
            due = time.monotonic() + delay
            held.extend((due, pid) for pid in packet_ids(data))


if __name__ == "__main__":
    main()
