"""The petition state machine and its deadlines, with no I/O.

::

    booked -approve-> scheduled -start-> in_session -end-> recorded -sign-> signed
      -assign-> assigned -follow_up-> follow_up -answer-> answered -rate-> rated -close-> closed
    booked -reject-> rejected              (a reason is required; final)
    booked | scheduled -withdraw-> withdrawn  (the petitioner withdrew; final)
    scheduled -reschedule-> scheduled      (another time or other officials)
    assigned -extend-> assigned            (once, +30 days, with a reason)
    answered -close-> closed               (the petitioner did not rate)

The case (交办) starts at ``assign``: a department and a deadline of ``HANDLING_DAYS``
(60, 信访工作条例) from then, extendable once by ``EXTENSION_DAYS`` (30). ``overdue`` says
whether an open case is past its deadline.

``step(state, event)`` returns the next state or raises ``Conflict`` naming the state, the event
and what the state allows.

Public: ``State``, ``Event``, ``TRANSITIONS``, ``OPEN_CASE``, ``FINAL``, ``step``, ``allowed``,
``deadline``, ``extended``, ``overdue``, ``petition_number``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum

from vmesh.errors import Conflict
from vmesh.servicedesk.cases import transition

HANDLING_DAYS = 60
EXTENSION_DAYS = 30


class State(StrEnum):
    booked = "booked"
    scheduled = "scheduled"
    in_session = "in_session"
    recorded = "recorded"
    signed = "signed"
    assigned = "assigned"
    follow_up = "follow_up"
    answered = "answered"
    rated = "rated"
    closed = "closed"
    rejected = "rejected"
    withdrawn = "withdrawn"


class Event(StrEnum):
    approve = "approve"
    reject = "reject"
    reschedule = "reschedule"
    withdraw = "withdraw"
    start = "start"
    end = "end"
    sign = "sign"
    assign = "assign"
    extend = "extend"
    follow_up = "follow_up"
    answer = "answer"
    rate = "rate"
    close = "close"


S, E = State, Event

TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.booked, E.approve): S.scheduled,
    (S.booked, E.reject): S.rejected,
    (S.booked, E.withdraw): S.withdrawn,
    (S.scheduled, E.withdraw): S.withdrawn,
    (S.scheduled, E.reschedule): S.scheduled,
    (S.scheduled, E.start): S.in_session,
    (S.in_session, E.end): S.recorded,
    (S.recorded, E.sign): S.signed,
    (S.signed, E.assign): S.assigned,
    (S.assigned, E.extend): S.assigned,
    (S.assigned, E.follow_up): S.follow_up,
    (S.follow_up, E.answer): S.answered,
    (S.answered, E.rate): S.rated,
    (S.answered, E.close): S.closed,
    (S.rated, E.close): S.closed,
}

# A case (交办) is open, and can be overdue, from assignment until it is answered.
OPEN_CASE = frozenset({S.assigned, S.follow_up})
FINAL = frozenset({S.closed, S.rejected, S.withdrawn})


def allowed(state: State) -> list[Event]:
    """The events ``state`` accepts, in declaration order."""
    return [e for e in Event if (state, e) in TRANSITIONS]


def step(state: State | str, event: Event | str) -> State:
    """The state after ``event``; ``Conflict`` (naming both and what is allowed) otherwise."""
    return transition(TRANSITIONS, State, Event, state, event, noun="petition",
                      final="nothing (it is final)")  # fmt: skip


def deadline(assigned_at: datetime) -> datetime:
    """The handling deadline of a case assigned at ``assigned_at``: 60 days later."""
    return assigned_at + timedelta(days=HANDLING_DAYS)


def extended(current: datetime, extensions: int) -> datetime:
    """The deadline after the one allowed extension; ``Conflict`` when it was extended already."""
    if extensions >= 1:
        raise Conflict("the deadline was extended once already; it can be extended only once")
    return current + timedelta(days=EXTENSION_DAYS)


def overdue(state: State | str, due: datetime | None, now: datetime) -> bool:
    """An open case past its deadline."""
    return due is not None and State(state) in OPEN_CASE and now > due


def petition_number(division: str, day: date, serial: int) -> str:
    """信访件编号: ``XF``, the node's 6-digit division, the date, a 5-digit serial of the day."""
    if not (len(division) == 6 and division.isdigit()):
        raise ValueError(f"division must be 6 digits, got {division!r}")
    if not 0 < serial < 100_000:
        raise ValueError(f"serial must be 1..99999, got {serial}")
    return f"XF{division}{day:%Y%m%d}{serial:05d}"
