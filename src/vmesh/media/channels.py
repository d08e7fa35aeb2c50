"""The channel pool: long-lived Janus Streaming mountpoints fed by switch outputs, lent to viewers.

A ``Channel`` is one mountpoint (H.264 video with RTCP + Opus audio on loopback ports) and the two
switch outputs feeding it, each with an SSRC that never changes: the browser's
``RTCPeerConnection`` stays the same while the camera behind the channel changes (polling).
``ChannelPool`` is pure bookkeeping: which channel is lent to whom; no I/O.

Ports: channel ``i`` uses ``base + 4 i`` (video RTP), ``+1`` (video RTCP), ``+2`` (audio RTP).

Public: ``Channel``, ``ChannelPool``, ``NoFreeChannel``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmesh.errors import Conflict

MOUNTPOINT_BASE_ID = 7000
SSRC_BASE = 0x564D0000  # "VM" + channel number: stable and recognisable on the wire


class NoFreeChannel(Conflict):
    title = "No free channel"


@dataclass
class Channel:
    index: int
    video_port: int
    audio_port: int
    owner: str | None = None
    source: str | None = None  # camera code routed into it

    @property
    def mountpoint_id(self) -> int:
        return MOUNTPOINT_BASE_ID + self.index

    @property
    def name(self) -> str:
        return f"channel-{self.index}"

    @property
    def video_output(self) -> str:
        return f"{self.name}/video"

    @property
    def audio_output(self) -> str:
        return f"{self.name}/audio"

    @property
    def video_ssrc(self) -> int:
        return SSRC_BASE + 2 * self.index + 1

    @property
    def audio_ssrc(self) -> int:
        return SSRC_BASE + 2 * self.index + 2


class ChannelPool:
    """``size`` channels on ports from ``port_base``; lent first-free, lowest index first."""

    def __init__(self, size: int, port_base: int) -> None:
        self.channels = [
            Channel(i, video_port=port_base + 4 * i, audio_port=port_base + 4 * i + 2)
            for i in range(size)
        ]

    def acquire(self, owner: str) -> Channel:
        for ch in self.channels:
            if ch.owner is None:
                ch.owner = owner
                return ch
        raise NoFreeChannel(
            f"all {len(self.channels)} channels of this node are in use; "
            "close a tile or raise [media] channels"
        )

    def release(self, ch: Channel) -> None:
        ch.owner = None
        ch.source = None

    @property
    def busy(self) -> int:
        return sum(1 for ch in self.channels if ch.owner is not None)

    @property
    def size(self) -> int:
        return len(self.channels)
