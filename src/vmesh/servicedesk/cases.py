"""The case (办件) state machine, with no I/O: states, events and the one table that says which
event moves a case from which state to which.

The main line follows the research's proposal (govservices.md §1.3)::

    created -identify-> identified -enqueue-> queued -accept-> in_service -check-> materials_checked
      -sign-> signed -submit-> submitted -rate-> rated -close-> closed

Side exits: ``abandon`` (the villager left, from waiting or from the call) → abandoned, from which
``callback`` puts the case back in its queue at its original ticket time; ``transfer`` (to another
item's queue or agent) → transferred, a waiting state that ``accept`` leaves like queued;
``escalate`` (to a higher level) → escalated, which only ``close`` leaves. ``hold`` and
``requeue`` (the agent's page died) put a case in service back in its queue, at the head; a case
on hold is ``queued`` again with ``at_head`` set. ``close`` also ends a case that never got
further than being identified (the villager changed their mind at the kiosk).

``step(state, event)`` returns the next state or raises ``Conflict`` naming the state, the event
and what the state allows. ``WAITING`` are the states a queue holds; ``LIVE`` those with a call.

Public: ``State``, ``Event``, ``TRANSITIONS``, ``WAITING``, ``LIVE``, ``FINAL``, ``step``,
``allowed``, ``case_number``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from typing import TypeVar

from vmesh.errors import Conflict


class State(StrEnum):
    created = "created"
    identified = "identified"
    queued = "queued"
    in_service = "in_service"
    materials_checked = "materials_checked"
    signed = "signed"
    submitted = "submitted"
    rated = "rated"
    closed = "closed"
    abandoned = "abandoned"
    transferred = "transferred"
    escalated = "escalated"


class Event(StrEnum):
    identify = "identify"
    enqueue = "enqueue"
    accept = "accept"
    check = "check"
    sign = "sign"
    submit = "submit"
    rate = "rate"
    close = "close"
    abandon = "abandon"
    callback = "callback"
    transfer = "transfer"
    escalate = "escalate"
    hold = "hold"
    requeue = "requeue"


S, E = State, Event
_CALL = (S.in_service, S.materials_checked, S.signed)

TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.created, E.identify): S.identified,
    (S.identified, E.identify): S.identified,  # read the card again
    (S.identified, E.enqueue): S.queued,
    (S.queued, E.accept): S.in_service,
    (S.transferred, E.accept): S.in_service,
    (S.in_service, E.check): S.materials_checked,
    (S.materials_checked, E.sign): S.signed,
    (S.signed, E.submit): S.submitted,
    (S.submitted, E.rate): S.rated,
    (S.rated, E.close): S.closed,
    # A villager may leave without rating; an escalated case is closed by the desk.
    (S.submitted, E.close): S.closed,
    (S.escalated, E.close): S.closed,
    (S.created, E.close): S.closed,
    (S.identified, E.close): S.closed,
    (S.abandoned, E.close): S.closed,
    (S.queued, E.abandon): S.abandoned,
    (S.transferred, E.abandon): S.abandoned,
    (S.abandoned, E.callback): S.queued,
    **{(s, E.abandon): S.abandoned for s in _CALL},
    **{(s, E.transfer): S.transferred for s in _CALL},
    **{(s, E.escalate): S.escalated for s in _CALL},
    **{(s, E.hold): S.queued for s in _CALL},
    **{(s, E.requeue): S.queued for s in _CALL},
}

WAITING = frozenset({S.queued, S.transferred})
LIVE = frozenset(_CALL)
FINAL = frozenset({S.closed})


St = TypeVar("St", bound=StrEnum)
Ev = TypeVar("Ev", bound=StrEnum)


def allowed(state: State) -> list[Event]:
    """The events ``state`` accepts, in declaration order."""
    return [e for e in Event if (state, e) in TRANSITIONS]


def transition(
    table: Mapping[tuple[St, Ev], St],
    states: type[St],
    events: type[Ev],
    state: St | str,
    event: Ev | str,
    *,
    noun: str,
    final: str,
) -> St:
    """The state after ``event`` in ``table``; ``Conflict`` naming both and the events ``state``
    accepts (``final`` when none) otherwise. Shared by the case and petition state machines."""
    try:
        st = states(state)
    except ValueError:
        raise Conflict(f"unknown {noun} state {state!r}") from None
    try:
        ev = events(event)
    except ValueError:
        raise Conflict(
            f"unknown event {event!r}; events: {', '.join(e.value for e in events)}"
        ) from None
    nxt = table.get((st, ev))
    if nxt is None:
        ok = ", ".join(e.value for e in events if (st, e) in table) or final
        raise Conflict(f"a {noun} that is {st.value} cannot {ev.value}; it can: {ok}")
    return nxt


def step(state: State | str, event: Event | str) -> State:
    """The state after ``event``; ``Conflict`` (naming both and what is allowed) otherwise."""
    return transition(TRANSITIONS, State, Event, state, event, noun="case",
                      final="nothing (the case is closed)")  # fmt: skip


def case_number(division: str, day: date, serial: int) -> str:
    """办件编号: 6-digit division of the serving node, date, 6-digit serial of that day."""
    if not (len(division) == 6 and division.isdigit()):
        raise ValueError(f"division must be 6 digits, got {division!r}")
    if not 0 < serial < 1_000_000:
        raise ValueError(f"serial must be 1..999999, got {serial}")
    return f"{division}{day:%Y%m%d}{serial:06d}"
