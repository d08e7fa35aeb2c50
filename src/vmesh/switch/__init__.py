"""The media switch: RTP/RTCP from sources to output channels, without decoding.

Owns: RTP/RTCP wire formats (``rtp``, ``rtcp``), keyframe detection (``codecs``), the sans-IO
crossbar (``core.Switch``: routes, splices, GOP cache, keyframe relay, counters) and its asyncio
UDP adapter (``transport``). Calls nothing else in vmesh except ``vmesh.errors``.
"""
