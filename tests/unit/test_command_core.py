"""The incident core: actions checked against the state (refusals name the field), the log
folded to the same state in any order, hand-over moving the host, distances."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from vmesh.command import core
from vmesh.errors import Conflict, InvalidInput

pytestmark = pytest.mark.unit

HERE = "33010600002000000001"
CITY = "33010000002000000001"
CAM = "33010600001320000001"
T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
OPEN = {"type": "flood", "title": "西湖区内涝", "severity": "III", "lat": 30.25, "lon": 120.13}


def entry(n: int, action: str, detail: dict, node: str = HERE) -> core.Entry:
    return core.Entry(f"e{n:03d}", "inc1", T0 + timedelta(seconds=n), node, "cmdr", action, detail)


def log_of() -> list[core.Entry]:
    inc = None
    out: list[core.Entry] = []
    steps = [
        ("open", OPEN),
        ("feed_on", {"code": CAM, "name": "文三路口"}),
        ("unit_join", {"code": "33010600001380000001", "name": "单兵1"}),
        ("position", {"code": "33010600001380000001", "lat": 30.26, "lon": 120.14}),
        ("severity", {"severity": "II"}),
        ("feed_off", {"code": CAM}),
        ("status", {"status": "contained"}),
        ("hand_over", {"to": CITY, "direction": "up"}),
    ]
    for i, (action, body) in enumerate(steps):
        d = core.check(inc, action, body, here=HERE)
        out.append(entry(i, action, d))
        inc = core.fold("inc1", out)
    return out


def test_the_log_folds_to_the_state_in_any_order() -> None:
    log = log_of()
    inc = core.fold("inc1", log)
    assert (inc.type, inc.severity, inc.status) == ("flood", "II", "contained")
    assert inc.origin == HERE and inc.host == CITY
    assert inc.feeds == {}
    unit = inc.units["33010600001380000001"]
    assert (unit.lat, unit.lon) == (30.26, 120.14)
    shuffled = log[:]
    random.Random(7).shuffle(shuffled)
    assert core.fold("inc1", shuffled) == inc


def test_open_refuses_each_bad_field_by_name() -> None:
    with pytest.raises(InvalidInput) as e:
        core.check(
            None,
            "open",
            {"type": "alien", "title": " ", "severity": "V", "lat": 91, "lon": "x"},
            here=HERE,
        )
    assert [fe.field for fe in e.value.errors] == ["type", "title", "severity", "lat", "lon"]


def test_status_follows_its_table_and_a_closed_room_refuses_actions() -> None:
    inc = core.fold("inc1", [entry(0, "open", core.check(None, "open", OPEN, here=HERE))])
    with pytest.raises(InvalidInput) as e:
        core.check(inc, "status", {"status": "open"}, here=HERE)
    assert e.value.errors[0].reason == "cannot go from open to open"
    inc.status = "closed"
    with pytest.raises(Conflict, match="closed"):
        core.check(inc, "feed_on", {"code": CAM}, here=HERE)
    assert core.check(inc, "status", {"status": "open"}, here=HERE) == {"status": "open"}


def test_only_the_host_acts_and_another_node_may_reopen() -> None:
    inc = core.fold("inc1", log_of())  # handed to the city
    with pytest.raises(Conflict, match="hosted at node " + CITY):
        core.check(inc, "severity", {"severity": "I"}, here=HERE)
    with pytest.raises(Conflict, match="hosted at node " + CITY):
        core.check(inc, "feed_on", {"code": CAM}, here=HERE)
    # The old host follows the room: it may still report (a note), which reaches the host.
    assert core.check(inc, "note", {"text": "县里续报"}, here=HERE) == {"text": "县里续报"}
    assert core.check(inc, "note", {"text": "城市接管"}, here=CITY) == {"text": "城市接管"}
    d = core.check(inc, "reopen", {"reason": "county node lost"}, here="33000000002000000001")
    assert d["to"] == "33000000002000000001" and d["from"] == CITY
    with pytest.raises(Conflict, match="already hosted here"):
        core.check(inc, "reopen", {}, here=CITY)


def test_feed_off_and_leave_need_what_they_end() -> None:
    inc = core.fold("inc1", [entry(0, "open", core.check(None, "open", OPEN, here=HERE))])
    with pytest.raises(InvalidInput, match="not on the room's wall"):
        core.check(inc, "feed_off", {"code": CAM}, here=HERE)
    with pytest.raises(InvalidInput, match="has not joined"):
        core.check(inc, "unit_leave", {"code": CAM}, here=HERE)
    with pytest.raises(InvalidInput, match="20-digit"):
        core.check(inc, "feed_on", {"code": "123"}, here=HERE)


def test_distance() -> None:
    # 1/100 degree of latitude is about 1.11 km anywhere.
    assert core.distance_km(30.0, 120.0, 30.01, 120.0) == pytest.approx(1.112, abs=0.002)
    assert core.distance_km(30.0, 120.0, 30.0, 120.0) == 0.0
