"""What an ingest source reports: its state, why, and when it last sent.

A source (a synthetic camera or an RTSP pull) is always in one ``IngestState``:

    starting ──first packets──> sending ──source stops──> no_signal ─┐
    (connecting for RTSP)          │                                 │ retry with back-off
                                   └──ffmpeg fails──> error ─────────┤ (the state keeps the last
                                                                     │  failure until packets
    any ──stop()──> stopped                          sending <───────┘  flow again)

``error`` always carries a ``FailureKind`` and a human reason (``"wrong credentials: 401
Unauthorized"``); ``label`` is what a tile shows (``"error: wrong credentials"``). Reasons never
contain passwords (URLs are redacted). ``online`` is what the directory's status column gets.

Public: ``IngestState``, ``FailureKind``, ``Failure``, ``IngestStatus``, ``StatusCallback``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class IngestState(StrEnum):
    STARTING = "starting"
    CONNECTING = "connecting"
    SENDING = "sending"
    NO_SIGNAL = "no_signal"
    ERROR = "error"
    STOPPED = "stopped"


class FailureKind(StrEnum):
    UNREACHABLE = "unreachable"
    WRONG_CREDENTIALS = "wrong credentials"
    NOT_FOUND = "not found"
    UNSUPPORTED_CODEC = "unsupported codec"
    NO_SIGNAL = "no signal"
    BAD_STREAM = "bad stream"
    FFMPEG = "ffmpeg failed"


@dataclass(frozen=True)
class Failure(Exception):
    """Why an attempt failed: a kind a program can test and a reason a person can read."""

    kind: FailureKind
    reason: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.reason}" if self.reason else self.kind.value


@dataclass(frozen=True)
class IngestStatus:
    source_id: str
    state: IngestState
    failure: Failure | None = None
    since: float = field(default_factory=time.time)
    attempts: int = 0
    """ffmpeg starts so far (1 = the first attempt)."""
    last_packet_at: float | None = None
    """Unix time ffmpeg last reported new output (the directory's ``last_seen``)."""
    next_retry_in: float | None = None
    video_codec: str | None = None
    """Switch codec name of the video sent (``h264``/``h265``), once known."""
    audio_codec: str | None = None
    """Switch codec name of the audio sent (``opus``/``pcma``/``pcmu``), or None for no audio."""

    @property
    def online(self) -> bool:
        return self.state is IngestState.SENDING

    @property
    def label(self) -> str:
        """What a tile shows: ``sending``, ``connecting``, ``no signal``, ``error: <kind>``."""
        if self.state is IngestState.ERROR and self.failure is not None:
            return f"error: {self.failure.kind.value}"
        return self.state.value.replace("_", " ")

    def as_dict(self) -> dict[str, object]:
        return {
            "source_id": self.source_id,
            "state": self.state.value,
            "label": self.label,
            "online": self.online,
            "kind": self.failure.kind.value if self.failure else None,
            "reason": self.failure.reason if self.failure else None,
            "since": self.since,
            "attempts": self.attempts,
            "last_packet_at": self.last_packet_at,
            "next_retry_in": self.next_retry_in,
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec,
        }


StatusCallback = Callable[[IngestStatus], None]
"""Called on every state change (not on every packet); must not block."""
