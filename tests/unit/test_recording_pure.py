"""Pure parts of recording: plans and schedules, timeline spans and gaps, retention choices,
RTP → Annex B for snapshots."""

from __future__ import annotations

from datetime import datetime

import pytest

from vmesh.errors import InvalidInput
from vmesh.recording.plans import parse_plan
from vmesh.recording.remote import RangeNotSatisfiable, parse_range
from vmesh.recording.retention import SegmentInfo, expired, for_pressure
from vmesh.recording.snapshot import depacketize
from vmesh.recording.timeline import Span, gaps, hours, spans

pytestmark = pytest.mark.unit
CAM = "33010601001326000040"


def test_schedule_windows_including_over_midnight() -> None:
    p = parse_plan(
        CAM,
        {"mode": "schedule", "schedule": [{"days": [0], "start": "22:00", "end": "06:00"}]},
        30,
    )
    assert p.records_at(datetime(2024, 6, 3, 23, 0))  # Monday evening
    assert p.records_at(datetime(2024, 6, 4, 5, 59))  # Tuesday morning
    assert not p.records_at(datetime(2024, 6, 4, 6, 0))
    assert not p.records_at(datetime(2024, 6, 4, 23, 0))  # Tuesday evening: not listed
    assert p.retention_days == 30


def test_alarm_plan_is_stored_but_does_not_record() -> None:
    p = parse_plan(CAM, {"mode": "alarm", "retention_days": 90}, 30)
    assert p.retention_days == 90 and not p.records_at(datetime(2024, 6, 3, 12, 0))


def test_bad_plan_names_every_field() -> None:
    with pytest.raises(InvalidInput) as e:
        parse_plan(
            CAM,
            {"mode": "x", "retention_days": True, "schedule": [{"days": [7], "start": "1:00"},
                                                                {"days": [1], "start": "24:00",
                                                                 "end": "25:00"}]},
            30,
        )  # fmt: skip
    fields = {f.field for f in e.value.errors or []}
    assert fields == {"mode", "retention_days", "schedule[0].days", "schedule[1].start",
                      "schedule[1].end"}  # fmt: skip
    with pytest.raises(InvalidInput) as e:
        parse_plan(CAM, {"mode": "schedule"}, 30)
    assert e.value.errors and e.value.errors[0].field == "schedule"


def test_spans_merge_neighbours_and_show_gaps() -> None:
    merged = spans([(10, 12), (0, 2), (2.4, 4), (4, 6)])
    assert merged == [Span(0, 6), Span(10, 12)]
    assert gaps(merged, -5, 20) == [Span(-5, 0), Span(6, 10), Span(12, 20)]
    assert hours([Span(0, 1800), Span(3600, 3700)], 0, 7200) == [(0, 1800), (3600, 100)]


def seg(i: int, cam: str, start: float, size: int = 100) -> SegmentInfo:
    return SegmentInfo(i, cam, start, start + 10, size)


def test_retention_by_age_per_camera_plan() -> None:
    now = 100 * 86400.0
    segs = [
        seg(1, "a", now - 40 * 86400),
        seg(2, "a", now - 20 * 86400),
        seg(3, "b", now - 20 * 86400),
    ]
    assert [s.id for s in expired(segs, now, {"b": 7}, 30)] == [1, 3]


def test_retention_by_budget_and_free_space_oldest_first() -> None:
    segs = [seg(i, "a", i * 10.0) for i in range(10)]  # 1000 bytes
    assert [s.id for s in for_pressure(segs, 1000, 800, 10**9, 10**10, 0)] == [0, 1, 2]
    assert for_pressure(segs, 1000, 0, 10**9, 10**10, 5) == []
    # 4 % free of 10000 with a 5 % floor: free up to 6 % → 200 bytes
    assert [s.id for s in for_pressure(segs, 1000, 0, 400, 10_000, 5)] == [0, 1]


def rtp(payload: bytes, seq: int) -> bytes:
    return bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(8) + payload


def test_depacketize_single_stap_a_and_fu_a() -> None:
    sps, pps = b"\x67\x42\x00\x1e", b"\x68\xce\x3c\x80"
    stap = b"\x18" + len(sps).to_bytes(2, "big") + sps + len(pps).to_bytes(2, "big") + pps
    idr = b"\x65" + bytes(range(1, 40))
    fu = [b"\x7c\x85" + idr[1:20], b"\x7c\x45" + idr[20:]]
    out = depacketize([rtp(stap, 1), rtp(fu[0], 2), rtp(fu[1], 3), rtp(b"\x41\x9a", 4)])
    start = b"\x00\x00\x00\x01"
    assert out == start + sps + start + pps + start + idr + start + b"\x41\x9a"


def test_range_header_parsing_for_streamed_through_playback() -> None:
    assert parse_range(None, 1000) is None
    assert parse_range("bytes=0-99", 1000) == (0, 99)
    assert parse_range("bytes=900-", 1000) == (900, 999)
    assert parse_range("bytes=990-5000", 1000) == (990, 999)  # clipped to the file
    assert parse_range("bytes=-100", 1000) == (900, 999)  # the last 100 bytes
    assert parse_range("bytes=-5000", 1000) == (0, 999)
    assert parse_range("bytes=0-1,5-6", 1000) is None  # several ranges: the whole file
    assert parse_range("items=0-1", 1000) is None
    assert parse_range("bytes=x-1", 1000) is None  # malformed: ignored
    for bad in ("bytes=1000-", "bytes=5-4", "bytes=-0"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(bad, 1000)
