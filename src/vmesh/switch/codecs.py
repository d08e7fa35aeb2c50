"""Codecs the switch forwards, and where a decoder can start in each. Pure, no I/O, no decoding.

Video: H.264 (RFC 6184) and H.265 (RFC 7798). A packet *starts a keyframe* when it carries, or
begins a fragment of, a NAL unit a decoder can start from:

- H.264: IDR slice (5) or SPS (7), as a single NAL unit packet, inside a STAP-A (24) or at the
  start of an FU-A (28). STAP-B/MTAP (25–27) and FU-B (29) carry decoding order numbers that
  only interleaved mode uses; they are not treated as keyframes.
- H.265: IRAP pictures (BLA/IDR/CRA, types 16–21) and parameter sets VPS/SPS/PPS (32–34), as a
  single NAL unit packet, inside an aggregation packet (48) or at the start of a fragmentation unit
  (49). DONL fields are assumed absent (``sprop-max-don-diff`` = 0, what every camera sends).

Audio: Opus, G.711 µ-law (PCMU) and A-law (PCMA). Every packet is a random access point.

Frame boundaries are not decided here: the switch takes a change of RTP timestamp, or the
marker bit on the last packet of a frame, as the end of a frame.

Public: ``Codec``, ``MediaKind``, ``CODEC_KIND``, ``DEFAULT_CLOCK_RATE``, ``starts_keyframe``.
"""

from __future__ import annotations

from enum import StrEnum


class MediaKind(StrEnum):
    audio = "audio"
    video = "video"


class Codec(StrEnum):
    h264 = "H264"
    h265 = "H265"
    opus = "opus"
    pcmu = "PCMU"
    pcma = "PCMA"


CODEC_KIND: dict[Codec, MediaKind] = {
    Codec.h264: MediaKind.video,
    Codec.h265: MediaKind.video,
    Codec.opus: MediaKind.audio,
    Codec.pcmu: MediaKind.audio,
    Codec.pcma: MediaKind.audio,
}

DEFAULT_CLOCK_RATE: dict[Codec, int] = {
    Codec.h264: 90000,
    Codec.h265: 90000,
    Codec.opus: 48000,
    Codec.pcmu: 8000,
    Codec.pcma: 8000,
}

H264_KEY_TYPES = frozenset({5, 7})
H264_STAP_A = 24
H264_FU_A = 28
H265_KEY_TYPES = frozenset({16, 17, 18, 19, 20, 21, 32, 33, 34})
H265_AP = 48
H265_FU = 49


def starts_keyframe(codec: Codec, payload: bytes) -> bool:
    """True if this RTP payload starts (part of) an access unit a decoder can begin with.

    Audio payloads are always True. Truncated or empty payloads are False, never an error: the
    switch forwards what it cannot classify as an ordinary packet.
    """
    if codec is Codec.h264:
        return _h264_key(payload)
    if codec is Codec.h265:
        return _h265_key(payload)
    return True


def _h264_key(p: bytes) -> bool:
    if not p:
        return False
    t = p[0] & 0x1F
    if 1 <= t <= 23:
        return t in H264_KEY_TYPES
    if t == H264_STAP_A:
        pos = 1
        while pos + 2 < len(p):
            size = (p[pos] << 8) | p[pos + 1]
            if size == 0 or pos + 2 + size > len(p):
                return False
            if p[pos + 2] & 0x1F in H264_KEY_TYPES:
                return True
            pos += 2 + size
        return False
    if t == H264_FU_A:
        return len(p) >= 2 and bool(p[1] & 0x80) and (p[1] & 0x1F) in H264_KEY_TYPES
    return False


def _h265_key(p: bytes) -> bool:
    if len(p) < 2:
        return False
    t = (p[0] >> 1) & 0x3F
    if t == H265_AP:
        pos = 2
        while pos + 3 < len(p):
            size = (p[pos] << 8) | p[pos + 1]
            if size < 2 or pos + 2 + size > len(p):
                return False
            if (p[pos + 2] >> 1) & 0x3F in H265_KEY_TYPES:
                return True
            pos += 2 + size
        return False
    if t == H265_FU:
        return len(p) >= 3 and bool(p[2] & 0x80) and (p[2] & 0x3F) in H265_KEY_TYPES
    return t in H265_KEY_TYPES
