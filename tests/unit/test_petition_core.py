"""The petition state machine (every state × event pair), deadlines and the evidence checks."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
from PIL import Image

from vmesh.errors import Conflict, InvalidInput
from vmesh.petition import core
from vmesh.petition.core import TRANSITIONS, Event, State, step
from vmesh.petition.record import RecordDoc, offset_label, render
from vmesh.petition.service import Upload, evidence_type, parse_officials

pytestmark = pytest.mark.unit

MAIN_LINE = [
    (State.booked, Event.approve, State.scheduled),
    (State.scheduled, Event.start, State.in_session),
    (State.in_session, Event.end, State.recorded),
    (State.recorded, Event.sign, State.signed),
    (State.signed, Event.assign, State.assigned),
    (State.assigned, Event.follow_up, State.follow_up),
    (State.follow_up, Event.answer, State.answered),
    (State.answered, Event.rate, State.rated),
    (State.rated, Event.close, State.closed),
]
SIDE = [
    (State.booked, Event.reject, State.rejected),
    (State.booked, Event.withdraw, State.withdrawn),
    (State.scheduled, Event.withdraw, State.withdrawn),
    (State.scheduled, Event.reschedule, State.scheduled),
    (State.assigned, Event.extend, State.assigned),
    (State.answered, Event.close, State.closed),
]


def test_the_main_line_from_booking_to_closed() -> None:
    state = State.booked
    for frm, ev, to in MAIN_LINE:
        assert state == frm
        state = step(state, ev)
        assert state == to


@pytest.mark.parametrize(("frm", "ev", "to"), MAIN_LINE + SIDE)
def test_each_allowed_transition(frm: State, ev: Event, to: State) -> None:
    assert step(frm, ev) == to
    assert ev in core.allowed(frm)


def test_the_table_is_exactly_the_main_line_and_the_side_exits() -> None:
    assert {(f, e): t for f, e, t in MAIN_LINE + SIDE} == TRANSITIONS


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(Event))
def test_every_other_pair_is_refused_naming_state_and_what_it_allows(
    state: State, event: Event
) -> None:
    if (state, event) in TRANSITIONS:
        return
    with pytest.raises(Conflict) as e:
        step(state, event)
    assert f"a petition that is {state.value} cannot {event.value}" in e.value.detail
    ok = core.allowed(state)
    if ok:
        assert ", ".join(x.value for x in ok) in e.value.detail
    else:
        assert "it is final" in e.value.detail


def test_final_states_allow_nothing() -> None:
    for s in core.FINAL:
        assert core.allowed(s) == []


def test_unknown_state_or_event_is_named() -> None:
    with pytest.raises(Conflict, match="unknown petition state 'lost'"):
        step("lost", "approve")
    with pytest.raises(Conflict, match="unknown event 'fly'"):
        step("booked", "fly")


def test_deadline_is_60_days_and_extends_once_by_30() -> None:
    t = datetime(2026, 1, 1, 9, tzinfo=UTC)
    due = core.deadline(t)
    assert due == t + timedelta(days=60)
    assert core.extended(due, 0) == t + timedelta(days=90)
    with pytest.raises(Conflict, match="only once"):
        core.extended(due, 1)


def test_overdue_only_for_an_open_case_past_its_deadline() -> None:
    due = datetime(2026, 3, 2, tzinfo=UTC)
    after, before = due + timedelta(seconds=1), due - timedelta(days=1)
    assert core.overdue("assigned", due, after)
    assert core.overdue("follow_up", due, after)
    assert not core.overdue("assigned", due, before)
    assert not core.overdue("answered", due, after)  # answered in time or not: no longer open
    assert not core.overdue("assigned", None, after)


def test_petition_number() -> None:
    assert core.petition_number("330328", date(2026, 11, 29), 7) == "XF33032820261129" + "00007"
    with pytest.raises(ValueError, match="6 digits"):
        core.petition_number("3303", date(2026, 11, 29), 1)


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buf, "JPEG")
    return buf.getvalue()


def test_evidence_types_and_refusals_name_the_file() -> None:
    assert evidence_type(0, Upload("a.jpg", _jpeg())) == "image/jpeg"
    assert evidence_type(1, Upload("b.pdf", b"%PDF-1.4\n...\n%%EOF\n")) == "application/pdf"
    with pytest.raises(InvalidInput) as e:
        evidence_type(2, Upload("c.exe", b"MZ\x90\x00"))
    assert e.value.errors[0].field == "evidence[2]"
    assert "JPEG or PNG image or a PDF" in e.value.errors[0].reason
    with pytest.raises(InvalidInput, match="truncated PDF"):
        evidence_type(0, Upload("d.pdf", b"%PDF-1.4\nno end"))
    with pytest.raises(InvalidInput, match="is empty"):
        evidence_type(0, Upload("e.jpg", b""))
    with pytest.raises(InvalidInput, match="larger than 10 MB"):
        evidence_type(0, Upload("f.jpg", b"\xff\xd8\xff" + bytes(10 * 1024 * 1024)))


def test_officials_are_checked_field_by_field() -> None:
    good = {"username": "li", "node": "3" * 20, "venue": "4" * 20}
    assert parse_officials([good]) == [good]
    with pytest.raises(InvalidInput) as e:
        parse_officials([good, {"username": "", "node": "12", "venue": "4" * 20}])
    fields = [x.field for x in e.value.errors]
    assert fields == ["officials[1].username", "officials[1].node"]
    with pytest.raises(InvalidInput, match="at least one official"):
        parse_officials([])
    with pytest.raises(InvalidInput, match="share a venue"):
        parse_officials([good, {**good, "username": "wang"}])


def test_offset_labels_and_the_record_pdf_has_its_paragraphs() -> None:
    from pypdf import PdfReader

    assert offset_label(75) == "[01:15]"
    assert offset_label(3725) == "[1:02:05]"
    buf = io.BytesIO()
    Image.new("RGBA", (200, 80), (0, 0, 0, 255)).save(buf, "PNG")
    body = render(
        RecordDoc(
            number="XF3303282026112900001",
            petitioner="王德明",
            id_masked="330328********1539",
            room="新联村视频室",
            category="求决",
            subject="宅基地纠纷",
            officials=["li", "wang"],
            session="33030000002006000031 / 3",
            started_at="2026-11-29 10:00:00",
            paragraphs=[(75, "clerk", "信访人陈述宅基地边界问题。")],
            signature_png=buf.getvalue(),
            signed_at="2026-11-29 10:30:00",
        )
    )
    text = PdfReader(io.BytesIO(body)).pages[0].extract_text().replace("\x00", "")
    assert "[01:15]" in text and "宅基地边界" in text and "信访人签名" in text
