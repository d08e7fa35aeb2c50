"""GB/T 28181 alarms without I/O: the Notify as devices send it decoded and checked into an
``Alarm``, bad bodies refused naming the element, the platform's Response/Alarm and the alarm
SUBSCRIBE body encoded, and alarm recording windows."""

from __future__ import annotations

from datetime import datetime

import pytest

from vmesh.errors import InvalidInput
from vmesh.gb28181.alarms import alarm_from_notify
from vmesh.gb28181.manscdp import (
    AlarmNotify,
    AlarmQuery,
    AlarmResponse,
    ManscdpError,
    decode_manscdp,
    encode_manscdp,
)
from vmesh.recording.plans import Plan, alarm_window, parse_plan

pytestmark = pytest.mark.unit

DEV = "34020000001320000001"
CH = "34020000001310000001"

# The shape WVP sends (SIPCommander#sendAlarmMessage), GB2312 with a Chinese description.
WIRE = """<?xml version="1.0" encoding="GB2312"?>
<Notify>
<CmdType>Alarm</CmdType>
<SN>4711</SN>
<DeviceID>{ch}</DeviceID>
<AlarmPriority>{prio}</AlarmPriority>
<AlarmMethod>{method}</AlarmMethod>
<AlarmTime>{time}</AlarmTime>
<AlarmDescription>大门区域入侵</AlarmDescription>
<Longitude>{lon}</Longitude>
<Latitude>30.25</Latitude>
<Info><AlarmType>{type}</AlarmType></Info>
</Notify>
"""


def body(**over: str) -> bytes:
    fields = {"ch": CH, "prio": "1", "method": "5", "time": "2026-11-29T08:30:05"}
    fields |= {"lon": "120.15", "type": "6", **over}
    return WIRE.format(**fields).encode("gb18030")


def test_a_device_alarm_decodes_into_a_checked_alarm() -> None:
    msg = decode_manscdp(body()).message
    assert isinstance(msg, AlarmNotify)
    a = alarm_from_notify(msg, DEV)
    assert (a.device, a.channel, a.sn) == (DEV, CH, 4711)
    assert (a.priority, a.method, a.alarm_type) == (1, 5, "6")
    assert a.alarm_time == "2026-11-29T08:30:05"
    assert a.description == "大门区域入侵"
    assert (a.lon, a.lat) == (120.15, 30.25)


def test_no_gps_is_no_position_and_a_space_in_the_time_is_accepted() -> None:
    a = alarm_from_notify(decode_manscdp(body(time="2026-11-29 08:30:05")).message, DEV)
    assert a.alarm_time == "2026-11-29T08:30:05"
    a2 = alarm_from_notify(
        AlarmNotify(CH, 1, "2", "2", "2026-11-29T08:30:05", None, 0.0, 0.0, None), DEV
    )
    assert (a2.lon, a2.lat, a2.alarm_type, a2.description) == (None, None, "", "")


@pytest.mark.parametrize(
    ("over", "field", "reason"),
    [
        ({"prio": "0"}, "AlarmPriority", "must be 1 to 4"),
        ({"prio": "high"}, "AlarmPriority", "must be a whole number 1 to 4"),
        ({"prio": ""}, "AlarmPriority", "is missing"),
        ({"method": "9"}, "AlarmMethod", "must be 1 to 7"),
        ({"time": "yesterday"}, "AlarmTime", "must be YYYY-MM-DDTHH:MM:SS"),
        ({"time": ""}, "AlarmTime", "is missing"),
        ({"type": "motion"}, "Info.AlarmType", "must be a number"),
        ({"ch": "front-door"}, "DeviceID", "20-digit code"),
    ],
)
def test_bad_alarms_are_refused_naming_the_element(
    over: dict[str, str], field: str, reason: str
) -> None:
    with pytest.raises(ManscdpError) as e:
        alarm_from_notify(decode_manscdp(body(**over)).message, DEV)
    assert e.value.field == field and reason in e.value.reason
    assert e.value.errors[0].field == field


@pytest.mark.parametrize(
    ("lon", "reason"), [("east", "must be a number"), ("200", "between -180 and 180")]
)
def test_bad_coordinates_are_refused_by_the_decoder(lon: str, reason: str) -> None:
    with pytest.raises(ManscdpError) as e:
        decode_manscdp(body(lon=lon))
    assert e.value.field == "Longitude" and reason in e.value.reason


def test_platform_response_and_subscribe_bodies_round_trip() -> None:
    wire = encode_manscdp(AlarmResponse(CH, 4711, "OK"), "GB2312")
    assert b"<Response>" in wire and b"<CmdType>Alarm</CmdType>" in wire
    assert b"<Result>OK</Result>" in wire and b"<SN>4711</SN>" in wire
    assert decode_manscdp(wire).message == AlarmResponse(CH, 4711, "OK")
    q = encode_manscdp(AlarmQuery(DEV, 12), "UTF-8")
    assert decode_manscdp(q).message == AlarmQuery(DEV, 12)


def test_encoded_alarm_notify_decodes_to_the_same_alarm() -> None:
    n = AlarmNotify(CH, 9, "2", "2", "2026-11-29T08:30:05", "烟感", 120.5, 30.5, "1")
    assert decode_manscdp(encode_manscdp(n, "GB2312")).message == n


def test_alarm_plans_and_their_windows() -> None:
    plan = parse_plan(CH, {"mode": "alarm", "post_alarm_seconds": 20}, 30)
    assert plan.post_alarm_seconds == 20 and plan.as_dict()["post_alarm_seconds"] == 20
    assert not plan.records_at(datetime.now())  # only inside an alarm's window
    assert alarm_window(plan, 1000.0, None) == 1020.0
    assert alarm_window(plan, 1010.0, 1020.0) == 1030.0  # a second alarm extends it
    assert alarm_window(plan, 990.0, 1020.0) == 1020.0  # never shortens it
    assert alarm_window(Plan(CH, "always", 30), 1000.0, None) is None
    assert alarm_window(None, 1000.0, None) is None
    assert parse_plan(CH, {"mode": "alarm"}, 30).post_alarm_seconds == 30
    for bad in (0, 3601, "10", True):
        with pytest.raises(InvalidInput) as e:
            parse_plan(CH, {"mode": "alarm", "post_alarm_seconds": bad}, 30)
        assert [x.field for x in e.value.errors] == ["post_alarm_seconds"]
