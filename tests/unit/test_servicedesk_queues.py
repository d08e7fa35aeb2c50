"""Queue order and routing without I/O: priority across an agent's queues, first come first
served within one, the head for a case whose agent's page died, callback keeps the ticket,
positions and expected waits; the ID card check and the sample catalogue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vmesh.errors import InvalidInput
from vmesh.servicedesk.catalogue import load_sample, parse
from vmesh.servicedesk.idcard import SAMPLE_CARDS, check_id_number, parse_card
from vmesh.servicedesk.queues import (
    AgentQueues,
    Waiting,
    agents_per_item,
    expected_wait,
    next_case,
    order,
    positions,
)
from vmesh.servicedesk.stats import percentile

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
GROUPS = {"pension": "social", "dibao": "civil", "id-renew": "police"}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_first_come_first_served_within_a_queue() -> None:
    cases = [
        Waiting(3, "pension", at(2)),
        Waiting(1, "pension", at(5)),
        Waiting(2, "pension", at(1)),
    ]
    assert [w.id for w in order(cases)] == [2, 3, 1]


def test_an_agent_takes_the_higher_priority_queue_first() -> None:
    agent = AgentQueues("a", {"civil": 1, "social": 2})
    waiting = [Waiting(1, "pension", at(0)), Waiting(2, "dibao", at(9))]
    assert next_case(agent, waiting, GROUPS).id == 2  # civil is priority 1, though later
    other = AgentQueues("b", {"civil": 2, "social": 1})
    assert next_case(other, waiting, GROUPS).id == 1


def test_equal_priorities_take_the_longest_waiting() -> None:
    agent = AgentQueues("a", {"civil": 1, "social": 1})
    waiting = [Waiting(1, "pension", at(4)), Waiting(2, "dibao", at(3))]
    assert next_case(agent, waiting, GROUPS).id == 2


def test_an_agent_never_takes_from_a_queue_outside_its_groups() -> None:
    agent = AgentQueues("a", {"police": 1})
    assert next_case(agent, [Waiting(1, "pension", at(0))], GROUPS) is None
    assert next_case(agent, [Waiting(1, "unknown-item", at(0))], GROUPS) is None


def test_a_case_put_back_at_the_head_goes_before_older_tickets() -> None:
    cases = [Waiting(1, "pension", at(0)), Waiting(2, "pension", at(5), at_head=True)]
    assert [w.id for w in order(cases)] == [2, 1]
    agent = AgentQueues("a", {"social": 1})
    assert next_case(agent, cases, GROUPS).id == 2


def test_a_called_back_case_keeps_its_original_ticket() -> None:
    # Abandoned at 09:01 and called back later: its ticket time is still 09:01.
    cases = [Waiting(5, "pension", at(3)), Waiting(4, "pension", at(1))]
    assert positions(cases) == {4: 1, 5: 2}


def test_positions_are_per_item_queue() -> None:
    cases = [
        Waiting(1, "pension", at(0)),
        Waiting(2, "dibao", at(1)),
        Waiting(3, "pension", at(2)),
    ]
    assert positions(cases) == {1: 1, 2: 1, 3: 2}


def test_expected_wait_divides_by_the_agents_serving_the_queue() -> None:
    assert expected_wait(3, 10, 2) == 15.0
    assert expected_wait(3, 10, 0) == 30.0  # nobody serves it yet: as if one agent
    agents = [AgentQueues("a", {"social": 1}), AgentQueues("b", {"social": 2, "civil": 1})]
    assert agents_per_item(agents, GROUPS) == {"pension": 2, "dibao": 1, "id-renew": 0}


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50) == 5
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9


def test_sample_catalogue_has_40_items_of_9_departments_with_the_pension_statement() -> None:
    c = load_sample()
    assert len(c.departments) == 9 and len(c.items) == 40
    pension = next(i for i in c.items if i.name == "养老保险缴费结算单")
    assert pension.materials and pension.target_minutes > 0
    assert any(f.required for f in pension.form)


def test_a_bad_catalogue_names_every_bad_field() -> None:
    doc = {
        "departments": [{"code": "rsj", "name": "人社局"}],
        "items": [
            {
                "code": "Bad Code",
                "department": "nope",
                "name": "",
                "materials": "身份证",
                "agent_group": "social",
                "centre": "city",
                "target_minutes": 0,
            },
        ],
    }
    with pytest.raises(InvalidInput) as e:
        parse(doc)
    fields = {x.field for x in e.value.errors}
    assert fields == {
        "items[0].code",
        "items[0].department",
        "items[0].name",
        "items[0].materials",
        "items[0].centre",
        "items[0].target_minutes",
    }


def test_id_numbers_are_checked_by_gb_11643() -> None:
    for card in SAMPLE_CARDS:
        assert check_id_number(card.id_number) is None
    good = SAMPLE_CARDS[0].id_number
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    assert "check character" in (check_id_number(wrong) or "")
    assert "birth date" in (check_id_number("330483195213142510") or "")
    assert check_id_number("12345") == "must be 18 characters"
    with pytest.raises(InvalidInput) as e:
        parse_card({"name": "", "id_number": wrong})
    assert {x.field for x in e.value.errors} == {"card.name", "card.id_number"}
