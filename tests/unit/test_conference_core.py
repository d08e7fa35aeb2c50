"""The conference floor (vmesh.conference.core): chair events in, what venues see and hear out."""

from __future__ import annotations

import contextlib
import copy
import itertools

import pytest

from vmesh.conference.core import (
    AUDIO_SLOTS,
    LAYOUTS,
    AddVenue,
    Approve,
    Broadcast,
    ContentStarted,
    ContentStopped,
    Discuss,
    Floor,
    Joined,
    Left,
    Lock,
    LowerHand,
    Mode,
    Mute,
    Poll,
    RaiseHand,
    Remove,
    RollCall,
    SetLayout,
    Tick,
    Unmute,
    content_id,
)
from vmesh.errors import Conflict, InvalidInput

pytestmark = pytest.mark.unit

MAIN, CITY, COUNTY, TOWN = "M", "C", "K", "T"


def floor(layout: str = "1+1", joined: tuple[str, ...] = (MAIN, CITY, COUNTY, TOWN)) -> Floor:
    f = Floor(MAIN, [CITY, COUNTY, TOWN], layout=layout)
    for v in joined:
        f.apply(Joined(v))
    return f


def heard(f: Floor, v: str) -> set[str]:
    return {a for a in f.plan().venues[v].audio if a is not None}


def seen(f: Floor, v: str) -> list[str | None]:
    return list(f.plan().venues[v].video)


def test_idle_everyone_sees_and_hears_the_main_venue_and_the_main_venue_not_itself() -> None:
    f = floor()
    p = f.plan()
    assert p.mode is Mode.idle and p.featured == MAIN
    for v in (CITY, COUNTY, TOWN):
        assert seen(f, v)[0] == MAIN
        assert heard(f, v) == {MAIN}
    assert MAIN not in seen(f, MAIN)
    assert heard(f, MAIN) == set()


def test_roll_call_every_other_venue_sees_and_hears_it_and_it_never_hears_itself() -> None:
    f = floor()
    f.apply(Mute(None))
    f.apply(RollCall(COUNTY))
    p = f.plan()
    assert p.mode is Mode.roll_call and p.featured == COUNTY
    for v in (MAIN, CITY, TOWN):
        assert seen(f, v)[0] == COUNTY
        assert COUNTY in heard(f, v)
    assert heard(f, COUNTY) == {MAIN}
    assert seen(f, COUNTY)[0] == MAIN
    # The roll call gave the county the floor (unmuted); the others stay muted.
    assert COUNTY not in f.muted and {CITY, TOWN} <= f.muted


def test_a_new_roll_call_makes_the_previous_venue_step_back() -> None:
    f = floor()
    f.apply(Mute(None))
    f.apply(RollCall(COUNTY))
    f.apply(Mute(COUNTY))  # a chair mutes the county again before calling the town
    f.apply(RollCall(TOWN))
    assert f.plan().featured == TOWN
    assert COUNTY not in heard(f, CITY) and TOWN in heard(f, CITY)
    f.apply(RollCall(None))
    assert f.plan().featured == MAIN and f.mode is Mode.idle


def test_the_main_venue_cannot_be_roll_called() -> None:
    f = floor()
    with pytest.raises(InvalidInput) as e:
        f.apply(RollCall(MAIN))
    assert e.value.errors[0].field == "venue"


def test_broadcast_shows_a_venue_to_all_without_giving_it_the_floor() -> None:
    f = floor()
    f.apply(Mute(CITY))
    f.apply(Broadcast(CITY))
    for v in (MAIN, COUNTY, TOWN):
        assert seen(f, v)[0] == CITY
        assert heard(f, v) == ({MAIN} if v != MAIN else set())
    f.apply(Unmute(CITY))
    assert heard(f, COUNTY) == {MAIN}  # broadcast is pictures: audio stays with the main venue
    f.apply(Broadcast(None))
    assert f.plan().featured == MAIN


def test_discussion_several_venues_heard_by_all_but_themselves() -> None:
    f = floor(layout="2x2")
    f.apply(Discuss((CITY, COUNTY)))
    assert heard(f, TOWN) == {MAIN, CITY, COUNTY}
    assert heard(f, CITY) == {MAIN, COUNTY}
    assert heard(f, COUNTY) == {MAIN, CITY}
    assert seen(f, TOWN)[:3] == [CITY, MAIN, COUNTY]


def test_discussion_refuses_too_many_speakers_duplicates_and_unknown_venues() -> None:
    f = Floor(MAIN, ["A", "B", "C", "D"])
    before = copy.deepcopy(f.state())
    for bad in (("A", "B", "C", "D"), ("A", "A"), ("A", "X"), (MAIN,)):
        with pytest.raises(InvalidInput):
            f.apply(Discuss(bad))
        assert f.state() == before


def test_polling_cycles_through_joined_venues_on_ticks_and_skips_absent_ones() -> None:
    f = floor(joined=(MAIN, CITY, TOWN))
    f.apply(Poll((CITY, COUNTY, TOWN), 5))
    assert f.plan().featured == CITY
    f.apply(Tick())
    assert f.plan().featured == TOWN  # the county is not joined: skipped
    f.apply(Tick())
    assert f.plan().featured == CITY
    f.apply(Poll((), 5))
    assert f.mode is Mode.idle


def test_polling_refuses_a_too_short_interval() -> None:
    f = floor()
    with pytest.raises(InvalidInput) as e:
        f.apply(Poll((CITY,), 0.5))
    assert e.value.errors[0].field == "seconds"
    assert f.mode is Mode.idle


def test_mute_and_unmute_one_or_all() -> None:
    f = floor()
    f.apply(Discuss((CITY, COUNTY)))
    f.apply(Mute(CITY))
    assert heard(f, TOWN) == {MAIN, COUNTY}
    f.apply(Mute(None))
    assert heard(f, TOWN) == {MAIN}  # mute all leaves the main venue
    f.apply(Unmute(None))
    assert heard(f, TOWN) == {MAIN, CITY, COUNTY}
    f.apply(Mute(MAIN))
    assert heard(f, TOWN) == {CITY, COUNTY}


def test_hand_raise_queue_and_approve_gives_the_floor() -> None:
    f = floor()
    f.apply(Mute(None))
    f.apply(RaiseHand(TOWN))
    f.apply(RaiseHand(CITY))
    f.apply(RaiseHand(TOWN))  # twice: still once, in its first place
    assert f.hands == [TOWN, CITY]
    with pytest.raises(InvalidInput):
        f.apply(Approve(COUNTY))
    f.apply(Approve(CITY))
    assert f.hands == [TOWN]
    assert f.plan().featured == CITY and CITY in heard(f, COUNTY)
    f.apply(LowerHand(TOWN))
    assert f.hands == []


def test_approve_during_a_discussion_adds_a_speaker() -> None:
    f = floor()
    f.apply(Discuss((CITY,)))
    f.apply(RaiseHand(COUNTY))
    f.apply(Approve(COUNTY))
    assert f.mode is Mode.discussion and f.speakers == [CITY, COUNTY]


def test_the_main_venue_cannot_raise_its_hand() -> None:
    with pytest.raises(InvalidInput):
        floor().apply(RaiseHand(MAIN))


def test_remove_a_venue_steps_it_back_everywhere() -> None:
    f = floor()
    f.apply(RaiseHand(COUNTY))
    f.apply(ContentStarted(COUNTY))
    f.apply(RollCall(COUNTY))
    f.apply(Remove(COUNTY))
    assert COUNTY not in f.all and f.mode is Mode.idle and f.content is None
    assert COUNTY not in f.plan().venues
    assert all(COUNTY not in (vp.video + vp.audio) for vp in f.plan().venues.values())
    with pytest.raises(InvalidInput):
        f.apply(Remove(MAIN))


def test_remove_a_polled_venue_keeps_polling_the_others() -> None:
    f = floor()
    f.apply(Poll((CITY, COUNTY, TOWN), 5))
    f.apply(Tick())
    f.apply(Tick())
    assert f.plan().featured == TOWN
    f.apply(Remove(COUNTY))
    assert f.plan().featured == TOWN and f.polling == [CITY, TOWN]


def test_lock_refuses_new_venues() -> None:
    f = floor()
    f.apply(AddVenue("N"))
    assert "N" in f.venues
    f.apply(Lock(True))
    with pytest.raises(Conflict):
        f.apply(AddVenue("Z"))
    f.apply(Lock(False))
    f.apply(AddVenue("Z"))
    with pytest.raises(InvalidInput):
        f.apply(AddVenue("Z"))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_give_each_venue_that_many_tiles_never_its_own(layout: str) -> None:
    f = Floor(MAIN, [f"V{i}" for i in range(12)], layout=layout)
    for v in f.all:
        f.apply(Joined(v))
    for v, vp in f.plan().venues.items():
        assert len(vp.video) == LAYOUTS[layout]
        assert v not in vp.video
        assert None not in vp.video  # enough venues joined to fill every tile
        assert len(vp.audio) == AUDIO_SLOTS


def test_set_layout_refuses_an_unknown_layout() -> None:
    f = floor()
    with pytest.raises(InvalidInput) as e:
        f.apply(SetLayout("4x4"))
    assert e.value.errors[0].field == "layout" and f.layout == "1+1"
    f.apply(SetLayout("2x2"))
    assert len(f.plan().venues[CITY].video) == 4


def test_content_goes_to_every_venue_but_the_one_sharing() -> None:
    f = floor()
    f.apply(ContentStarted(CITY))
    p = f.plan()
    assert p.venues[CITY].content is None
    assert {p.venues[v].content for v in (MAIN, COUNTY, TOWN)} == {content_id(CITY)}
    f.apply(ContentStopped(COUNTY))  # not the one sharing: nothing changes
    assert f.content == CITY
    f.apply(Left(CITY))
    assert f.content is None


def test_only_joined_venues_are_routed_and_a_featured_venue_that_left_falls_back() -> None:
    f = floor(joined=(MAIN, CITY))
    f.apply(RollCall(CITY))
    f.apply(Left(CITY))
    p = f.plan()
    assert p.featured == MAIN
    assert p.venues[COUNTY].video == (MAIN, None)
    f.apply(Joined(CITY))  # it comes back: the roll call still holds
    assert f.plan().featured == CITY
    f.apply(Left(MAIN))
    f.apply(Left(CITY))
    assert f.plan().featured is None
    assert f.plan().venues[COUNTY].video == (None, None)


def test_unknown_venues_are_refused_naming_the_field() -> None:
    f = floor()
    for ev in (Joined("X"), Broadcast("X"), Mute("X"), RaiseHand("X"), Remove("X")):
        with pytest.raises(InvalidInput) as e:
            f.apply(ev)  # type: ignore[arg-type]
        assert e.value.errors[0].field == "venue"


def test_construction_refuses_bad_venue_lists() -> None:
    with pytest.raises(InvalidInput):
        Floor(MAIN, [MAIN, CITY])
    with pytest.raises(InvalidInput):
        Floor(MAIN, [CITY, CITY])
    with pytest.raises(InvalidInput):
        Floor(MAIN, [CITY], layout="5")


EVENTS = [
    Joined(CITY),
    Left(COUNTY),
    Broadcast(TOWN),
    RollCall(COUNTY),
    Discuss((CITY, TOWN)),
    Poll((CITY, COUNTY), 3),
    Tick(),
    Mute(None),
    Mute(CITY),
    Unmute(None),
    RaiseHand(TOWN),
    Approve(TOWN),
    SetLayout("2x2"),
    ContentStarted(COUNTY),
    Joined(COUNTY),
    Left(MAIN),
    Joined(MAIN),
]


@pytest.mark.parametrize("seq", list(itertools.permutations(range(len(EVENTS)), 3))[::23])
def test_invariants_hold_after_any_sequence(seq: tuple[int, ...]) -> None:
    """Whatever the chair does: nobody hears itself, muted venues are heard by no one, only
    joined venues are routed, at most AUDIO_SLOTS audio slots."""
    f = floor(joined=(MAIN, CITY))
    for i in seq:
        with contextlib.suppress(InvalidInput, Conflict):
            f.apply(EVENTS[i])
    p = f.plan()
    for v, vp in p.venues.items():
        assert v not in vp.audio and v not in vp.video
        sources = {s for s in vp.video + vp.audio if s is not None}
        assert sources <= f.joined
        assert not ({s for s in vp.audio if s} & f.muted)
        assert len(vp.audio) == AUDIO_SLOTS
