"""Fuzz the RTP receive path of GB media: RFC 4571 deframing (TCP), ``parse_rtp``, and the
PS-over-RTP receiver (reassembly by timestamp/marker/sequence, then the demuxer). The input is
a TCP byte stream of length-prefixed packets. Allowed: ``MalformedPacket`` from ``parse_rtp``
(the transport drops those); nothing from the receiver. Run:
``python fuzz/fuzz_rtp.py -runs=1000000 -timeout=5 /tmp/corpus-rtp``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import guarded, instrumented, main

with instrumented():
    from vmesh.gb28181.ps import Rfc4571Deframer, RtpPsReceiver
    from vmesh.switch.rtp import MalformedPacket, parse_rtp


def target(data: bytes) -> None:
    receivers = [RtpPsReceiver(None), RtpPsReceiver(0)]
    for packet in Rfc4571Deframer().feed(data):
        try:
            pkt = parse_rtp(packet)
        except MalformedPacket:
            continue
        for r in receivers:
            r.receive(pkt)


if __name__ == "__main__":
    main("rtp", guarded(target, ()))
