"""Fuzz the PS demuxer (``ps.py``): the bytes fed whole and in two pieces (a frame split across
RTP packets), flushed; every access unit's key-frame test. No exception is allowed: the demuxer
resyncs on junk and counts what it dropped. Run:
``python fuzz/fuzz_ps.py -runs=1000000 -timeout=5 /tmp/corpus-ps``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import guarded, instrumented, main

with instrumented():
    from vmesh.gb28181.ps import PsDemuxer, split_annexb


def target(data: bytes) -> None:
    d = PsDemuxer()
    units = d.feed(data) + d.flush()
    cut = data[0] % max(1, len(data)) if data else 0
    d2 = PsDemuxer()
    units += d2.feed(data[:cut]) + d2.feed(data[cut:]) + d2.flush()
    for au in units:
        split_annexb(au.data)


if __name__ == "__main__":
    main("ps", guarded(target, ()))
