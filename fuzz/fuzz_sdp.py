"""Fuzz the GB SDP parser (``sdp.py``): parse, then encode what parsed (an offer the node would
answer). Allowed: ``SdpError`` (an ``InvalidInput``). Run:
``python fuzz/fuzz_sdp.py -runs=1000000 -timeout=5 /tmp/corpus-sdp``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import guarded, instrumented, main

with instrumented():
    from vmesh.errors import InvalidInput
    from vmesh.gb28181.sdp import parse_sdp


def target(data: bytes) -> None:
    sdp = parse_sdp(data)
    _ = (sdp.ssrc_value, sdp.is_playback)
    sdp.encode()


if __name__ == "__main__":
    main("sdp", guarded(target, (InvalidInput,)))
