"""Fuzz the MANSCDP codec (``manscdp.py``): decode (GB18030/UTF-8, lenient XML, every message
type), encode what decoded back in both charsets, and the catalogue assembler over decoded
Catalog pages. Allowed: ``ManscdpError`` (an ``InvalidInput``). Run:
``python fuzz/fuzz_manscdp.py -runs=1000000 -timeout=5 /tmp/corpus-manscdp``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import guarded, instrumented, main

with instrumented():
    from vmesh.errors import InvalidInput
    from vmesh.gb28181.manscdp import (
        CatalogAssembler,
        CatalogResponse,
        UnknownMessage,
        decode_manscdp,
        encode_manscdp,
        parse_ptz_cmd,
    )


def target(data: bytes) -> None:
    decoded = decode_manscdp(data)
    msg = decoded.message
    if not isinstance(msg, UnknownMessage):
        encode_manscdp(msg, "GB2312")
        encode_manscdp(msg, "UTF-8")
    if isinstance(msg, CatalogResponse):
        a = CatalogAssembler(1.0)
        a.expect(msg.device_id, msg.sn, 0.0)
        a.add(msg, 0.0)
        a.expire(10.0)
    cmd = getattr(msg, "command", None)
    if cmd is not None:
        cmd.to_bytes()
    if b"PTZCmd" in data:
        i = data.index(b"PTZCmd")
        parse_ptz_cmd(data[i + 7 : i + 23].decode("latin-1"))


if __name__ == "__main__":
    main("manscdp", guarded(target, (InvalidInput,)))
