"""The case state machine, exhaustively: every (state, event) pair either moves where the table
says or is refused with a Conflict that names the state, the event and what is allowed."""

from __future__ import annotations

from datetime import date

import pytest

from vmesh.errors import Conflict
from vmesh.servicedesk.cases import (
    FINAL,
    LIVE,
    TRANSITIONS,
    WAITING,
    Event,
    State,
    allowed,
    case_number,
    step,
)

pytestmark = pytest.mark.unit

MAIN_LINE = [
    (Event.identify, State.identified),
    (Event.enqueue, State.queued),
    (Event.accept, State.in_service),
    (Event.check, State.materials_checked),
    (Event.sign, State.signed),
    (Event.submit, State.submitted),
    (Event.rate, State.rated),
    (Event.close, State.closed),
]


def test_the_main_line_runs_from_created_to_closed() -> None:
    state = State.created
    for event, expected in MAIN_LINE:
        state = step(state, event)
        assert state is expected
    assert state in FINAL


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(Event))
def test_every_pair_moves_as_the_table_says_or_is_refused(state: State, event: Event) -> None:
    expected = TRANSITIONS.get((state, event))
    if expected is not None:
        assert step(state, event) is expected
        assert event in allowed(state)
        return
    with pytest.raises(Conflict) as e:
        step(state, event)
    assert f"a case that is {state.value} cannot {event.value}" in e.value.detail
    for ok in allowed(state):
        assert ok.value in e.value.detail
    assert event not in allowed(state)


def test_closed_allows_nothing_and_says_so() -> None:
    assert allowed(State.closed) == []
    with pytest.raises(Conflict, match="nothing"):
        step(State.closed, Event.close)


@pytest.mark.parametrize("state", sorted(LIVE))
def test_side_exits_from_a_call(state: State) -> None:
    assert step(state, Event.abandon) is State.abandoned
    assert step(state, Event.transfer) is State.transferred
    assert step(state, Event.escalate) is State.escalated
    assert step(state, Event.hold) is State.queued
    assert step(state, Event.requeue) is State.queued


def test_abandoned_case_is_called_back_into_its_queue_and_a_transferred_one_is_accepted() -> None:
    assert step(State.queued, Event.abandon) is State.abandoned
    assert step(State.abandoned, Event.callback) is State.queued
    assert step(State.transferred, Event.accept) is State.in_service
    assert step(State.escalated, Event.close) is State.closed
    assert {State.queued, State.transferred} == WAITING


def test_a_result_cannot_be_issued_before_signing_nor_signed_before_materials_are_checked() -> None:
    with pytest.raises(Conflict):
        step(State.in_service, Event.submit)
    with pytest.raises(Conflict):
        step(State.in_service, Event.sign)
    with pytest.raises(Conflict):
        step(State.queued, Event.check)


def test_unknown_states_and_events_are_refused_by_name() -> None:
    with pytest.raises(Conflict, match="unknown event 'fly'"):
        step(State.created, "fly")
    with pytest.raises(Conflict, match="unknown case state 'lost'"):
        step("lost", Event.close)


def test_every_state_is_reachable_from_created() -> None:
    seen = {State.created}
    frontier = [State.created]
    while frontier:
        s = frontier.pop()
        for (a, _e), b in TRANSITIONS.items():
            if a is s and b not in seen:
                seen.add(b)
                frontier.append(b)
    assert seen == set(State)


def test_case_number_is_division_date_and_serial() -> None:
    assert case_number("330106", date(2026, 11, 29), 7) == "33010620261129000007"
    with pytest.raises(ValueError, match="division"):
        case_number("3301", date(2026, 11, 29), 1)
    with pytest.raises(ValueError, match="serial"):
        case_number("330106", date(2026, 11, 29), 0)
