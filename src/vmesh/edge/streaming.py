"""Typed requests of the Janus Streaming plugin: RTP mountpoints (the channels browsers watch).

A mountpoint receives plain RTP on UDP ports of its own (one per stream, plus RTCP) and relays it
to its WebRTC viewers. ``RtpMountpoint`` validates the ports, payload types and codecs
(``InvalidInput`` naming the field) and renders the multistream ``create`` body of Janus 1.1.2;
``bufferkf`` keeps the last keyframe so that a new viewer's first frame needs no wait for the next.

Janus 1.1.2 frees a mountpoint's UDP ports synchronously on ``destroy`` (docs/edge.md has the
200-cycle check), so channels can be created and destroyed freely and ports reused at once.

Request/response (Janus 1.1.2)::

    -> {"request": "create", "admin_key": "...", "type": "rtp", "id": 101, "name": "ch-101",
        "permanent": false, "is_private": true,
        "media": [{"type": "video", "mid": "v", "port": 40000, "rtcpport": 40001, "pt": 96,
                   "codec": "h264", "fmtp": "profile-level-id=42e01f;packetization-mode=1",
                   "iface": "127.0.0.1", "bufferkf": true},
                  {"type": "audio", "mid": "a", "port": 40002, "pt": 111, "codec": "opus",
                   "iface": "127.0.0.1"}]}
    <- {"streaming": "created", "created": "ch-101", "stream": {"id": 101, "type": "live", ...,
        "ports": [{"type": "video", "mid": "v", "port": 40000, "rtcp_port": 40001}, ...]}}
    -> {"request": "destroy", "id": 101, "permanent": false}
    <- {"streaming": "destroyed", "destroyed": 101}

Public: ``RtpStream``, ``RtpMountpoint``, ``create_mountpoint``, ``destroy_mountpoint``,
``mountpoint_info``, ``list_mountpoints``, ``STREAMING``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

from vmesh.edge.janus import JanusHandle
from vmesh.errors import ErrorList, FieldError

STREAMING = "janus.plugin.streaming"
VIDEO_CODECS = frozenset({"h264", "h265", "vp8", "vp9", "av1"})
AUDIO_CODECS = frozenset({"opus", "pcmu", "pcma", "g722"})
H264_FMTP = "profile-level-id=42e01f;packetization-mode=1"


@dataclass(frozen=True)
class RtpStream:
    type: Literal["video", "audio"]
    mid: str
    port: int
    pt: int
    codec: str
    rtcp_port: int | None = None
    fmtp: str | None = None
    bufferkf: bool = False

    def body(self, iface: str) -> dict[str, Any]:
        b: dict[str, Any] = {
            "type": self.type,
            "mid": self.mid,
            "port": self.port,
            "pt": self.pt,
            "codec": self.codec,
            "iface": iface,
        }
        if self.rtcp_port is not None:
            b["rtcpport"] = self.rtcp_port
        if self.fmtp:
            b["fmtp"] = self.fmtp
        if self.bufferkf and self.type == "video":
            b["bufferkf"] = True
        return b


@dataclass(frozen=True)
class RtpMountpoint:
    id: int
    name: str
    streams: tuple[RtpStream, ...]
    description: str = ""
    iface: str = "127.0.0.1"
    is_private: bool = True

    @classmethod
    def video_audio(
        cls,
        id: int,
        name: str,
        *,
        video_port: int,
        audio_port: int,
        iface: str = "127.0.0.1",
        description: str = "",
    ) -> RtpMountpoint:
        """H.264 video (RTP on ``video_port``, RTCP on the next port) + Opus audio."""
        return cls(
            id=id,
            name=name,
            description=description,
            iface=iface,
            streams=(
                RtpStream(
                    "video",
                    "v",
                    video_port,
                    96,
                    "h264",
                    rtcp_port=video_port + 1,
                    fmtp=H264_FMTP,
                    bufferkf=True,
                ),
                RtpStream("audio", "a", audio_port, 111, "opus"),
            ),
        )

    def validate(self) -> None:
        errs = ErrorList()
        if not 1 <= self.id <= 2**53:
            errs.add(FieldError("id", "must be a positive integer", str(self.id)))
        if not self.name.strip():
            errs.add(FieldError("name", "must not be empty"))
        try:
            ipaddress.ip_address(self.iface)
        except ValueError:
            errs.add(FieldError("iface", "must be an IP address", self.iface))
        if not self.streams:
            errs.add(FieldError("streams", "at least one stream is needed"))
        seen_ports: set[int] = set()
        seen_mids: set[str] = set()
        for i, s in enumerate(self.streams):
            f = f"streams[{i}]"
            for name, port in (("port", s.port), ("rtcp_port", s.rtcp_port)):
                if port is None:
                    continue
                if not 1 <= port <= 65535:
                    errs.add(FieldError(f"{f}.{name}", "must be a port number 1-65535", str(port)))
                elif port in seen_ports:
                    errs.add(FieldError(f"{f}.{name}", "port used twice", str(port)))
                seen_ports.add(port)
            if not s.mid or s.mid in seen_mids:
                errs.add(FieldError(f"{f}.mid", "must be non-empty and unique", s.mid))
            seen_mids.add(s.mid)
            if not 0 <= s.pt <= 127:
                errs.add(FieldError(f"{f}.pt", "must be an RTP payload type 0-127", str(s.pt)))
            allowed = VIDEO_CODECS if s.type == "video" else AUDIO_CODECS
            if s.type not in ("video", "audio"):
                errs.add(FieldError(f"{f}.type", "must be video or audio", s.type))
            elif s.codec not in allowed:
                errs.add(
                    FieldError(
                        f"{f}.codec",
                        f"not a {s.type} codec of Janus; allowed: {', '.join(sorted(allowed))}",
                        s.codec,
                    )
                )
        errs.raise_if_any(f"mountpoint {self.id} cannot be created")

    def create_body(self, admin_key: str) -> dict[str, Any]:
        self.validate()
        return {
            "request": "create",
            "admin_key": admin_key,
            "type": "rtp",
            "id": self.id,
            "name": self.name,
            "description": self.description or self.name,
            "is_private": self.is_private,
            "permanent": False,
            "media": [s.body(self.iface) for s in self.streams],
        }


async def create_mountpoint(
    handle: JanusHandle, mountpoint: RtpMountpoint, admin_key: str
) -> dict[str, Any]:
    """Create ``mountpoint``; returns Janus's ``stream`` description (with its ``ports``)."""
    reply = await handle.request(mountpoint.create_body(admin_key))
    stream = reply.data.get("stream")
    return stream if isinstance(stream, dict) else {}


async def destroy_mountpoint(handle: JanusHandle, mountpoint_id: int) -> None:
    await handle.request({"request": "destroy", "id": mountpoint_id, "permanent": False})


async def mountpoint_info(handle: JanusHandle, mountpoint_id: int) -> dict[str, Any]:
    reply = await handle.request({"request": "info", "id": mountpoint_id})
    info = reply.data.get("info")
    return info if isinstance(info, dict) else {}


async def list_mountpoints(
    handle: JanusHandle, admin_key: str | None = None
) -> list[dict[str, Any]]:
    """The mountpoints; private ones (our channels) only when ``admin_key`` is given."""
    body: dict[str, Any] = {"request": "list"}
    if admin_key:
        body["admin_key"] = admin_key
    reply = await handle.request(body)
    items = reply.data.get("list")
    return items if isinstance(items, list) else []
