"""The conference's floor control as a state machine with no I/O: chair events in, routing plan out.

``Floor`` holds one conference's state: the main venue and the sub-venues (directory codes of
conference terminals or service rooms), which of them are joined, the mode (``idle``,
``broadcast`` 广播, ``roll_call`` 点名, ``discussion`` 讨论, ``polling`` 轮巡), the featured venue,
the speakers, the muted set, the hand-raise queue (申请发言), the layout pushed to every screen,
the content source (双流) and the lock. ``Floor.apply(event)`` validates one event and changes the
state, or raises ``InvalidInput`` naming the field and leaves the state as it was.
``Floor.plan()`` says, for every venue, which source feeds each of its video tiles, each of its
audio slots and its content tile (``VenuePlan``). The service (``vmesh.conference.service``)
turns a plan into switch routes; nothing here knows about channels, ports or Janus.

Rules of the plan, for a venue ``V`` (only joined sources ever appear):

- Video: ``featured`` first, then the main venue, the speakers and every other joined venue in
  conference order; ``V`` itself is left out (its own page shows its camera locally); the first
  ``tiles(layout)`` of them, padded with ``None``.
- Audio (separate slots: the page plays them all, that is the mix): the main venue, the
  roll-called venue (``roll_call``), the speakers (``discussion``); muted venues and ``V`` itself
  are left out, so **no venue ever receives its own audio**. At most ``AUDIO_SLOTS``.
- Content: the content source for everyone but the venue sharing it.

Featured: the broadcast or roll-called venue, the current venue of the polling list, the first
speaker of a discussion, else the main venue; a featured venue that is not joined falls back to
the main venue. Roll call and approving a raised hand give the floor: the venue is unmuted, its
hand lowered, the previous roll-called venue steps back. ``Tick`` advances polling (the service
sends one every polling interval).

Public: ``Floor``, ``Plan``, ``VenuePlan``, ``Mode``, ``LAYOUTS``, ``AUDIO_SLOTS``,
``content_id`` and the event classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from vmesh.errors import Conflict, InvalidInput

LAYOUTS: dict[str, int] = {"1": 1, "1+1": 2, "2x2": 4, "3x3": 9}
AUDIO_SLOTS = 4  # the main venue + up to three speakers heard at once
MAX_SPEAKERS = AUDIO_SLOTS - 1
CONTENT_SUFFIX = "-content"
MIN_POLL_SECONDS = 2.0


def content_id(venue: str) -> str:
    """The source id of ``venue``'s second stream (its shared screen)."""
    return venue + CONTENT_SUFFIX


class Mode(StrEnum):
    idle = "idle"
    broadcast = "broadcast"
    roll_call = "roll_call"
    discussion = "discussion"
    polling = "polling"


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Joined:
    venue: str


@dataclass(frozen=True)
class Left:
    venue: str


@dataclass(frozen=True)
class Broadcast:
    venue: str | None  # None: stop broadcasting


@dataclass(frozen=True)
class RollCall:
    venue: str | None  # None: cancel the roll call


@dataclass(frozen=True)
class Discuss:
    venues: tuple[str, ...]  # empty: end the discussion


@dataclass(frozen=True)
class Poll:
    venues: tuple[str, ...]  # empty: stop polling
    seconds: float = 10.0


@dataclass(frozen=True)
class Tick:
    """The polling interval elapsed."""


@dataclass(frozen=True)
class Mute:
    venue: str | None  # None: every sub-venue


@dataclass(frozen=True)
class Unmute:
    venue: str | None  # None: every venue


@dataclass(frozen=True)
class RaiseHand:
    venue: str


@dataclass(frozen=True)
class LowerHand:
    venue: str


@dataclass(frozen=True)
class Approve:
    venue: str


@dataclass(frozen=True)
class Remove:
    venue: str


@dataclass(frozen=True)
class AddVenue:
    venue: str


@dataclass(frozen=True)
class SetLayout:
    layout: str


@dataclass(frozen=True)
class ContentStarted:
    venue: str


@dataclass(frozen=True)
class ContentStopped:
    venue: str


@dataclass(frozen=True)
class Lock:
    locked: bool


Event = (
    Joined
    | Left
    | Broadcast
    | RollCall
    | Discuss
    | Poll
    | Tick
    | Mute
    | Unmute
    | RaiseHand
    | LowerHand
    | Approve
    | Remove
    | AddVenue
    | SetLayout
    | ContentStarted
    | ContentStopped
    | Lock
)


# --- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VenuePlan:
    video: tuple[str | None, ...]
    audio: tuple[str | None, ...]
    content: str | None = None


@dataclass(frozen=True)
class Plan:
    mode: Mode
    layout: str
    featured: str | None
    venues: dict[str, VenuePlan]


# --- the state machine -----------------------------------------------------------------------


@dataclass
class Floor:
    main: str
    venues: list[str]  # sub-venues, in the order the chair listed them
    layout: str = "1+1"
    mode: Mode = Mode.idle
    subject: str | None = None  # the broadcast or roll-called venue
    speakers: list[str] = field(default_factory=list)
    polling: list[str] = field(default_factory=list)
    poll_index: int = 0
    poll_seconds: float = 10.0
    muted: set[str] = field(default_factory=set)
    hands: list[str] = field(default_factory=list)
    joined: set[str] = field(default_factory=set)
    content: str | None = None  # the venue sharing its screen
    locked: bool = False

    def __post_init__(self) -> None:
        if self.main in self.venues:
            raise InvalidInput.one("venues", "the main venue is not also a sub-venue", self.main)
        if len(set(self.venues)) != len(self.venues):
            raise InvalidInput.one("venues", "a venue is listed twice")
        if self.layout not in LAYOUTS:
            raise InvalidInput.one("layout", f"must be one of {', '.join(LAYOUTS)}", self.layout)

    @property
    def all(self) -> list[str]:
        return [self.main, *self.venues]

    @property
    def featured(self) -> str | None:
        if self.mode in (Mode.broadcast, Mode.roll_call):
            pick = self.subject
        elif self.mode is Mode.polling and self.polling:
            pick = self.polling[self.poll_index % len(self.polling)]
        elif self.mode is Mode.discussion and self.speakers:
            pick = self.speakers[0]
        else:
            pick = self.main
        if pick is None or pick not in self.joined:
            pick = self.main if self.main in self.joined else None
        return pick

    def _venue(self, name: str, code: str | None, *, main_ok: bool = True) -> str:
        if code is None or code not in self.all:
            raise InvalidInput.one(name, "not a venue of this conference", code)
        if not main_ok and code == self.main:
            raise InvalidInput.one(name, "the main venue has the floor already", code)
        return code

    def _step_back(self) -> None:
        self.mode, self.subject, self.speakers = Mode.idle, None, []
        self.polling, self.poll_index = [], 0

    # --- events --------------------------------------------------------------------------------

    def apply(self, ev: Event) -> None:
        """Apply one event; ``InvalidInput``/``Conflict`` (state unchanged) if it is not valid."""
        match ev:
            case Joined(v):
                self.joined.add(self._venue("venue", v))
            case Left(v):
                self._venue("venue", v)
                self.joined.discard(v)
                if self.content == v:
                    self.content = None
            case Broadcast(None) | RollCall(None):
                self._step_back()
            case Broadcast(v):
                self._venue("venue", v)
                self._step_back()
                self.mode, self.subject = Mode.broadcast, v
            case RollCall(v):
                called = self._venue("venue", v, main_ok=False)
                self._step_back()
                self.mode, self.subject = Mode.roll_call, called
                self._give_floor(called)
            case Discuss(vs):
                if not vs:
                    self._step_back()
                    return
                if len(vs) > MAX_SPEAKERS:
                    raise InvalidInput.one(
                        "venues", f"at most {MAX_SPEAKERS} venues speak at once", len(vs)
                    )
                if len(set(vs)) != len(vs):
                    raise InvalidInput.one("venues", "a venue is listed twice")
                for v in vs:
                    self._venue("venues", v, main_ok=False)
                self._step_back()
                self.mode, self.speakers = Mode.discussion, list(vs)
                for v in vs:
                    self._give_floor(v)
            case Poll(vs, seconds):
                if not vs:
                    self._step_back()
                    return
                if seconds < MIN_POLL_SECONDS:
                    raise InvalidInput.one(
                        "seconds", f"must be at least {MIN_POLL_SECONDS:g}", seconds
                    )
                for v in vs:
                    self._venue("venues", v)
                self._step_back()
                self.mode, self.polling, self.poll_seconds = Mode.polling, list(vs), seconds
            case Tick():
                if self.mode is Mode.polling and self.polling:
                    # Skip venues that are not joined: polling shows pictures, not gaps.
                    for _ in range(len(self.polling)):
                        self.poll_index = (self.poll_index + 1) % len(self.polling)
                        if self.polling[self.poll_index] in self.joined:
                            break
            case Mute(None):
                self.muted |= set(self.venues)
            case Mute(v):
                self.muted.add(self._venue("venue", v))
            case Unmute(None):
                self.muted.clear()
            case Unmute(v):
                self.muted.discard(self._venue("venue", v))
            case RaiseHand(v):
                self._venue("venue", v, main_ok=False)
                if v not in self.hands:
                    self.hands.append(v)
            case LowerHand(v):
                self._venue("venue", v)
                if v in self.hands:
                    self.hands.remove(v)
            case Approve(v):
                if v not in self.hands:
                    raise InvalidInput.one("venue", "has not raised its hand", v)
                if self.mode is Mode.discussion and len(self.speakers) < MAX_SPEAKERS:
                    self.speakers.append(v)
                    self._give_floor(v)
                else:
                    self.apply(RollCall(v))
                if v in self.hands:
                    self.hands.remove(v)
            case Remove(v):
                self._venue("venue", v, main_ok=False)
                self._remove(v)
            case AddVenue(v):
                if self.locked:
                    raise Conflict("the conference is locked: unlock it to add a venue")
                if v in self.all:
                    raise InvalidInput.one("venue", "is in the conference already", v)
                self.venues.append(v)
            case SetLayout(name):
                if name not in LAYOUTS:
                    raise InvalidInput.one("layout", f"must be one of {', '.join(LAYOUTS)}", name)
                self.layout = name
            case ContentStarted(v):
                self._venue("venue", v)
                self.content = v
            case ContentStopped(v):
                if self.content == v:
                    self.content = None
            case Lock(locked):
                self.locked = locked
            case _:
                raise InvalidInput.one("action", f"unknown event {type(ev).__name__}")

    def _give_floor(self, v: str) -> None:
        self.muted.discard(v)
        if v in self.hands:
            self.hands.remove(v)

    def _remove(self, v: str) -> None:
        self.venues.remove(v)
        self.joined.discard(v)
        self.muted.discard(v)
        if v in self.hands:
            self.hands.remove(v)
        if self.content == v:
            self.content = None
        if self.subject == v:
            self._step_back()
        if v in self.speakers:
            self.speakers.remove(v)
            if not self.speakers:
                self._step_back()
        if v in self.polling:
            at = self.polling.index(v)
            self.polling.remove(v)
            if at < self.poll_index:
                self.poll_index -= 1
            if not self.polling:
                self._step_back()
            else:
                self.poll_index %= len(self.polling)

    # --- the plan ------------------------------------------------------------------------------

    def audible(self) -> list[str]:
        """Who is heard (before leaving each listener's own audio out)."""
        heard = [self.main]
        if self.mode is Mode.roll_call and self.subject is not None:
            heard.append(self.subject)
        heard += self.speakers
        return [v for v in _dedupe(heard) if v in self.joined and v not in self.muted]

    def plan(self) -> Plan:
        featured = self.featured
        order = _dedupe(
            ([featured] if featured else []) + [self.main, *self.speakers, *self.venues]
        )
        shown = [v for v in order if v in self.joined]
        heard = self.audible()
        n = LAYOUTS[self.layout]
        venues: dict[str, VenuePlan] = {}
        for v in self.all:
            video = [s for s in shown if s != v][:n]
            audio = [s for s in heard if s != v][:AUDIO_SLOTS]
            content = (
                content_id(self.content)
                if self.content is not None and self.content != v and self.content in self.joined
                else None
            )
            venues[v] = VenuePlan(_pad(video, n), _pad(audio, AUDIO_SLOTS), content)
        return Plan(self.mode, self.layout, featured, venues)

    def state(self) -> dict[str, object]:
        """The state as plain data (pushed to the chair and venue pages, kept in the database)."""
        return {
            "main": self.main,
            "venues": list(self.venues),
            "layout": self.layout,
            "mode": self.mode.value,
            "featured": self.featured,
            "subject": self.subject,
            "speakers": list(self.speakers),
            "polling": list(self.polling),
            "poll_seconds": self.poll_seconds,
            "muted": sorted(self.muted),
            "hands": list(self.hands),
            "joined": sorted(self.joined),
            "content": self.content,
            "locked": self.locked,
        }


def _dedupe(xs: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for x in xs:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _pad(xs: list[str], n: int) -> tuple[str | None, ...]:
    return tuple(xs) + (None,) * (n - len(xs))
