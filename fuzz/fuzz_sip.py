"""Fuzz the SIP parser (``message.py``) and what the transaction layer reads of a message.

``parse_message`` on the bytes, then every header accessor the stack uses (Call-ID, CSeq, From,
To, Via, Contact, Expires, Content-Type), ``make_response`` for requests, serialisation, the TCP
``StreamFramer`` over the same bytes, and the digest server's check of an ``Authorization``
header. Allowed: ``SipParseError`` (and ``InvalidInput``, its base). Run:
``python fuzz/fuzz_sip.py -runs=1000000 -timeout=5 /tmp/corpus-sip``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import guarded, instrumented, main

with instrumented():
    from vmesh.errors import InvalidInput
    from vmesh.gb28181.digest import DigestServer
    from vmesh.gb28181.message import SipRequest, StreamFramer, make_response, parse_message

DIGEST = DigestServer("3402000000", secret=b"fuzz" * 8)


def target(data: bytes) -> None:
    try:
        framer = StreamFramer(max_message=1 << 16)
        framer.feed(data)
    except InvalidInput:
        pass
    msg = parse_message(data)
    _ = (msg.call_id, msg.cseq, msg.from_, msg.to, msg.vias, msg.top_via, msg.contacts)
    _ = (msg.expires, msg.content_type, msg.to_bytes())
    if isinstance(msg, SipRequest):
        make_response(msg, 400).to_bytes()
        auth = msg.headers.get("Authorization")
        if auth is not None:
            DIGEST.verify(auth, msg.method, lambda user: "pw", 0.0)


if __name__ == "__main__":
    main("sip", guarded(target, (InvalidInput,)))
