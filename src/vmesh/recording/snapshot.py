"""Snapshots: a JPEG of a live camera decoded (PyAV) from the switch's GOP cache.

The switch keeps every RTP packet of the camera's current GOP (``Switch.gop``), keyframe first, so
the newest picture is decoded without waiting for the camera: RTP payloads are turned back into an
H.264/H.265 Annex B stream (RFC 6184 single NAL / STAP-A / FU-A; RFC 7798 single NAL / AP / FU),
decoded, and the last frame encoded as JPEG. A camera nobody watches has no GOP yet: the API
holds its source (``SNAPSHOT_HOLDER``) until a GOP is cached, then lets it linger out.

Public: ``depacketize``, ``jpeg_from_gop``, ``SNAPSHOT_HOLDER``.
"""

from __future__ import annotations

from fractions import Fraction

import av

from vmesh.errors import Conflict
from vmesh.switch.rtp import payload_bounds

SNAPSHOT_HOLDER = -3
_START = b"\x00\x00\x00\x01"


def depacketize(datagrams: list[bytes], codec: str = "h264") -> bytes:
    """RTP datagrams of one stream, in order, as an Annex B byte stream."""
    out = bytearray()
    for d in datagrams:
        start, end = payload_bounds(d)
        p = d[start:end]
        if not p:
            continue
        if codec == "h264":
            t = p[0] & 0x1F
            if t == 24:  # STAP-A
                i = 1
                while i + 2 <= len(p):
                    n = int.from_bytes(p[i : i + 2], "big")
                    out += _START + p[i + 2 : i + 2 + n]
                    i += 2 + n
            elif t == 28:  # FU-A
                if p[1] & 0x80:
                    out += _START + bytes([(p[0] & 0xE0) | (p[1] & 0x1F)])
                out += p[2:]
            else:
                out += _START + p
        else:  # h265
            t = (p[0] >> 1) & 0x3F
            if t == 48:  # AP
                i = 2
                while i + 2 <= len(p):
                    n = int.from_bytes(p[i : i + 2], "big")
                    out += _START + p[i + 2 : i + 2 + n]
                    i += 2 + n
            elif t == 49:  # FU
                if p[2] & 0x80:
                    ft = p[2] & 0x3F
                    out += _START + bytes([(p[0] & 0x81) | (ft << 1), p[1]])
                out += p[3:]
            else:
                out += _START + p
    return bytes(out)


def jpeg_from_gop(datagrams: list[bytes], codec: str = "h264", quality: int = 5) -> bytes:
    """The last decodable picture of the GOP as JPEG bytes (``Conflict`` when none decodes)."""
    stream = depacketize(datagrams, codec)
    dec = av.CodecContext.create(codec.lower(), "r")
    frames = []
    # parse(None) flushes the parser: it holds the last access unit until the next one starts,
    # so a GOP of one frame (a snapshot just after a keyframe) would otherwise decode nothing
    for pkt in dec.parse(stream) + dec.parse(None):
        frames += dec.decode(pkt)
    frames += dec.decode(None)
    if not frames:
        raise Conflict("no picture could be decoded from the camera's current GOP")
    frame = frames[-1].reformat(format="yuvj420p")
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height = frame.width, frame.height
    enc.pix_fmt = "yuvj420p"
    enc.time_base = Fraction(1, 25)
    enc.options = {"qscale": str(quality)}
    enc.qmin = enc.qmax = quality  # type: ignore[attr-defined]
    packets = enc.encode(frame) + enc.encode(None)
    return b"".join(bytes(p) for p in packets)
