"""MANSRTSP bodies (the INFO of a GB/T 28181 playback): what we write is what devices expect and
what we read back; malformed bodies are refused naming the header."""

from __future__ import annotations

import pytest

from vmesh.gb28181 import mansrtsp
from vmesh.gb28181.manscdp import RecordInfoResponse, RecordItem
from vmesh.gb28181.records import RecordResult, parse_wire_time, timeline_of, wire_time

pytestmark = pytest.mark.unit


def test_requests_as_devices_expect_them() -> None:
    assert (
        mansrtsp.encode(mansrtsp.pause(3)) == b"PAUSE RTSP/1.0\r\nCSeq: 3\r\nPauseTime: now\r\n\r\n"
    )
    assert (
        mansrtsp.encode(mansrtsp.resume(4))
        == b"PLAY RTSP/1.0\r\nCSeq: 4\r\nRange: npt=now-\r\n\r\n"
    )
    assert (
        mansrtsp.encode(mansrtsp.seek(5, 90))
        == b"PLAY RTSP/1.0\r\nCSeq: 5\r\nRange: npt=90-\r\n\r\n"
    )
    assert (
        mansrtsp.encode(mansrtsp.scale(6, 2.0))
        == b"PLAY RTSP/1.0\r\nCSeq: 6\r\nScale: 2.000000\r\n\r\n"
    )
    for req in (
        mansrtsp.pause(1),
        mansrtsp.resume(2),
        mansrtsp.seek(3, 12.5),
        mansrtsp.scale(4, 0.5),
    ):
        assert mansrtsp.parse(mansrtsp.encode(req)) == req


def test_lenient_reading() -> None:
    r = mansrtsp.parse(b"play RTSP/1.0\nCSeq:7\nRange: npt = 30-\n")
    assert r.method == "PLAY" and r.cseq == 7 and r.npt == 30 and r.is_seek
    assert mansrtsp.parse(b"PLAY RTSP/1.0\r\nCSeq: 8\r\nRange: npt=now-\r\n").npt is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "body"),
        (b"GET / HTTP/1.1\r\nCSeq: 1\r\n", "request-line"),
        (b"TEARDOWN RTSP/1.0\r\nCSeq: 1\r\n", "method"),
        (b"PLAY RTSP/1.0\r\nRange: npt=1-\r\n", "CSeq"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: bytes=1-\r\n", "Range"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: npt=-5-\r\n", "Range"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: fast\r\n", "Scale"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: -2\r\n", "Scale"),
    ],
)
def test_malformed_bodies_name_what_is_wrong(body: bytes, field: str) -> None:
    with pytest.raises(mansrtsp.MansrtspError) as e:
        mansrtsp.parse(body)
    assert e.value.errors[0].field == field


def test_out_of_range_controls_are_refused() -> None:
    with pytest.raises(mansrtsp.MansrtspError):
        mansrtsp.scale(1, 3.0)
    with pytest.raises(mansrtsp.MansrtspError):
        mansrtsp.seek(1, -1)


def test_wire_times_and_timeline() -> None:
    t = 1_700_000_000.0
    assert parse_wire_time(wire_time(t)) == t
    assert parse_wire_time(wire_time(t).replace("T", " ")) == t
    assert parse_wire_time("yesterday") is None and parse_wire_time(None) is None
    items = [
        RecordItem("c", start_time=wire_time(t + 100), end_time=wire_time(t + 200)),
        RecordItem("c", start_time=wire_time(t), end_time=wire_time(t + 100)),
        RecordItem("c", start_time="bad", end_time=wire_time(t + 50)),  # kept, not drawn
    ]
    page = RecordInfoResponse("c", 1, 3, None, items)
    tl = timeline_of(RecordResult("c", 1, 3, page.items, True, 1), t - 100, t + 400)
    assert tl["spans"] == [{"start": t, "end": t + 200}] and tl["recorded_seconds"] == 200
    assert tl["gaps"] == [{"start": t - 100, "end": t}, {"start": t + 200, "end": t + 400}]
    assert len(tl["items"]) == 3 and tl["items"][2]["start"] is None
