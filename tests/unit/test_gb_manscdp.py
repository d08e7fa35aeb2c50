"""MANSCDP bodies: charset detection, exact fields, PTZ bytes, catalog paging."""

from __future__ import annotations

import random

import pytest

from vmesh.gb28181.manscdp import (
    AlarmNotify,
    CatalogAssembler,
    CatalogItem,
    CatalogNotify,
    CatalogQuery,
    CatalogResponse,
    DeviceInfoResponse,
    DeviceStatusResponse,
    Keepalive,
    ManscdpError,
    PtzCommand,
    PtzControl,
    RecordInfoQuery,
    RecordInfoResponse,
    RecordItem,
    UnknownMessage,
    decode_manscdp,
    encode_manscdp,
    parse_ptz_cmd,
    preset_call,
    preset_delete,
    preset_set,
    ptz_move,
    ptz_stop,
)

pytestmark = pytest.mark.unit

DEV = "34020000001320000001"


def _catalog_page(sn: int, items: list[tuple[str, str]], sum_num: int) -> bytes:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n'  # the prolog lies: the bytes are GB2312
        f"<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{sn}</SN>\r\n"
        f"<DeviceID>34020000001180000001</DeviceID>\r\n<SumNum>{sum_num}</SumNum>\r\n"
        f'<DeviceList Num="{len(items)}">\r\n'
    )
    for did, name in items:
        xml += (
            f"<Item>\r\n<DeviceID>{did}</DeviceID>\r\n<Name>{name}</Name>\r\n"
            "<Manufacturer>Hikvision</Manufacturer>\r\n<Model>DS-2CD</Model>\r\n"
            "<Owner>Owner</Owner>\r\n<CivilCode>330106</CivilCode>\r\n"
            "<Address>西湖区</Address>\r\n<Parental>0</Parental>\r\n"
            "<ParentID>34020000001180000001</ParentID>\r\n<SafetyWay>0</SafetyWay>\r\n"
            "<RegisterWay>1</RegisterWay>\r\n<Secrecy>0</Secrecy>\r\n<Status>ON</Status>\r\n"
            "<Longitude>120.1234567</Longitude>\r\n<Latitude>30.25</Latitude>\r\n"
            "<Info><PTZType>1</PTZType><BusinessGroupID>33010600002150000001</BusinessGroupID>"
            "</Info>\r\n</Item>\r\n"
        )
    xml += "</DeviceList>\r\n</Response>\r\n"
    return xml.encode("gb2312")


def test_gb2312_body_under_a_utf8_prolog_decodes_as_gb18030() -> None:
    body = _catalog_page(17, [(DEV, "杭州西湖摄像机")], 1)
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    d = decode_manscdp(body)
    assert d.charset == "GB18030"
    msg = d.message
    assert isinstance(msg, CatalogResponse)
    assert (msg.device_id, msg.sn, msg.sum_num) == ("34020000001180000001", 17, 1)
    item = msg.items[0]
    assert item == CatalogItem(
        device_id=DEV,
        name="杭州西湖摄像机",
        manufacturer="Hikvision",
        model="DS-2CD",
        owner="Owner",
        civil_code="330106",
        address="西湖区",
        parental=0,
        parent_id="34020000001180000001",
        business_group_id="33010600002150000001",
        safety_way=0,
        register_way=1,
        secrecy=0,
        status="ON",
        longitude=120.1234567,
        latitude=30.25,
        ptz_type=1,
    )


def test_utf8_body_under_a_gb2312_prolog_decodes_as_utf8() -> None:
    # "杭州" in UTF-8 is also valid GB18030 (as mojibake), so GB18030-first would garble it.
    body = (
        '<?xml version="1.0" encoding="GB2312"?><Response><CmdType>DeviceInfo</CmdType>'
        f"<SN>5</SN><DeviceID>{DEV}</DeviceID><DeviceName>杭州</DeviceName>"
        "<Result>OK</Result><Channel>4</Channel></Response>"
    ).encode()
    assert "杭州".encode().decode("gb18030") != "杭州"
    d = decode_manscdp(body)
    assert d.charset == "UTF-8"
    assert d.message == DeviceInfoResponse(DEV, 5, device_name="杭州", result="OK", channel=4)


def test_gb18030_only_character_survives() -> None:
    name = "㐀西湖"  # U+3400 is outside GB2312 and GBK's common set, inside GB18030
    msg = CatalogResponse("34020000002000000001", 1, 1, [CatalogItem(DEV, name=name)])
    body = encode_manscdp(msg)  # GB2312 declared, bytes still carry the rare character
    assert body.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
    with pytest.raises(UnicodeEncodeError):
        name.encode("gb2312")
    out = decode_manscdp(body).message
    assert isinstance(out, CatalogResponse) and out.items[0].name == name


def test_keepalive_and_bare_ampersand_and_unknown() -> None:
    ka = (
        b'<?xml version="1.0"?>\n<Notify>\n<CmdType>Keepalive</CmdType>\n<SN>2749</SN>\n'
        b"<DeviceID>130909113319427420</DeviceID>\n<Status>OK</Status>\n</Notify>\n"
    )
    assert decode_manscdp(ka).message == Keepalive("130909113319427420", 2749, "OK")
    amp = (
        f"<Response><CmdType>DeviceInfo</CmdType><SN>1</SN><DeviceID>{DEV}</DeviceID>"
        "<DeviceName>A&B</DeviceName></Response>"
    ).encode()
    m = decode_manscdp(amp).message
    assert isinstance(m, DeviceInfoResponse) and m.device_name == "A&B"
    other = (
        f"<Notify><CmdType>MediaStatus</CmdType><SN>9</SN><DeviceID>{DEV}</DeviceID>"
        "<NotifyType>121</NotifyType></Notify>"
    )
    u = decode_manscdp(other.encode()).message
    assert isinstance(u, UnknownMessage)
    assert (u.root, u.cmd_type, u.sn, u.fields["NotifyType"]) == ("Notify", "MediaStatus", 9, "121")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "body"),
        (b"<Notify><CmdType>Keepalive</CmdType>", "body"),
        (b"<Notify><SN>1</SN><DeviceID>1</DeviceID></Notify>", "CmdType"),
        (b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN></Notify>", "DeviceID"),
        (b"<Notify><CmdType>Keepalive</CmdType><SN>x</SN><DeviceID>1</DeviceID></Notify>", "SN"),
        (
            "<Notify><CmdType>Keepalive</CmdType><SN>\u00b2</SN><DeviceID>1</DeviceID></Notify>".encode(),
            "SN",
        ),
        (
            b"<Response><CmdType>Catalog</CmdType><SN>1</SN><DeviceID>1</DeviceID></Response>",
            "SumNum",
        ),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><Notify/>', "body"),
        (
            b"<Query><CmdType>RecordInfo</CmdType><SN>1</SN><DeviceID>1</DeviceID></Query>",
            "StartTime",
        ),
    ],
)
def test_malformed_bodies_name_the_element(body: bytes, field: str) -> None:
    with pytest.raises(ManscdpError) as e:
        decode_manscdp(body)
    assert e.value.field == field


def test_round_trips_in_both_charsets() -> None:
    messages = [
        Keepalive(DEV, 1),
        CatalogQuery(DEV, 2),
        CatalogNotify(DEV, 3, 1, [CatalogItem(DEV, name="西湖", event="ADD", status="ON")]),
        DeviceStatusResponse(DEV, 4, result="OK", online="ONLINE", status="OK"),
        RecordInfoQuery(DEV, 5, "2024-01-01T00:00:00", "2024-01-01T23:59:59"),
        RecordInfoResponse(
            DEV,
            6,
            1,
            "cam",
            [
                RecordItem(
                    DEV,
                    name="r1",
                    start_time="2024-01-01T01:00:00",
                    end_time="2024-01-01T02:00:00",
                    type="time",
                    file_size=1024,
                )
            ],
        ),
        AlarmNotify(
            DEV,
            7,
            priority="1",
            method="2",
            time="2024-01-01T00:00:00",
            description="移动侦测",
            longitude=120.5,
            latitude=30.0,
            alarm_type="2",
        ),
        PtzControl(DEV, 8, ptz_move(pan=1, speed=0x40)),
    ]
    for charset in ("GB2312", "UTF-8"):
        for m in messages:
            body = encode_manscdp(m, charset)
            assert f'encoding="{charset}"'.encode() in body
            assert decode_manscdp(body).message == m
    q = encode_manscdp(CatalogQuery("34020000001320000001", 123)).decode("gb2312")
    assert "<CmdType>Catalog</CmdType>" in q and "<SN>123</SN>" in q and q.startswith("<?xml")


def test_ptz_bytes_per_the_standard() -> None:
    assert ptz_stop().hex() == "A50F0100000000B5"
    assert ptz_move(pan=1, speed=0x40).hex() == "A50F0101400000F6"  # right, tilt speed 0
    # Right at pan speed 0x40 and tilt speed 0x40 (the worked example in the research notes).
    assert PtzCommand(0x01, 0x40, 0x40).hex() == "A50F010140400036"
    assert ptz_move(pan=1, tilt=1, speed=0x40).hex() == "A50F01094040003E"
    up_left = parse_ptz_cmd(ptz_move(pan=-1, tilt=1, speed=0x20).hex())
    assert up_left.code == PtzCommand.LEFT | PtzCommand.UP
    assert (up_left.data1, up_left.data2) == (0x20, 0x20)
    zin = ptz_move(zoom=1, zoom_speed=0xF).to_bytes()
    assert zin[3] == 0x10 and zin[6] == 0xF0 and zin[7] == sum(zin[:7]) & 0xFF
    assert ptz_move(zoom=-1).to_bytes()[3] == 0x20
    assert preset_set(3).hex() == "A50F018100030039"
    assert preset_call(3).to_bytes()[3:6] == bytes([0x82, 0x00, 0x03])
    assert preset_delete(255).to_bytes()[3:6] == bytes([0x83, 0x00, 0xFF])
    assert parse_ptz_cmd("a50f0100000000b5").is_stop
    with pytest.raises(ManscdpError, match="checksum"):
        parse_ptz_cmd("A50F0100000000B6")
    with pytest.raises(ManscdpError):
        preset_call(0)
    with pytest.raises(ManscdpError):
        ptz_move(pan=2)


def test_ptz_control_body() -> None:
    body = encode_manscdp(PtzControl(DEV, 11, ptz_stop())).decode("gb2312")
    assert "<CmdType>DeviceControl</CmdType>" in body
    assert "<PTZCmd>A50F0100000000B5</PTZCmd>" in body
    assert "<ControlPriority>5</ControlPriority>" in body


def _pages() -> list[CatalogResponse]:
    names = [f"摄像机{i}" for i in range(7)]
    ids = [f"3402000000132000{i:04d}" for i in range(7)]
    chunks = [(0, 3), (3, 6), (6, 7)]
    pages = []
    for a, b in chunks:
        msg = decode_manscdp(_catalog_page(42, list(zip(ids[a:b], names[a:b], strict=True)), 7))
        assert isinstance(msg.message, CatalogResponse)
        pages.append(msg.message)
    return pages


def test_catalog_in_three_pages_out_of_order() -> None:
    p1, p2, p3 = _pages()
    asm = CatalogAssembler(timeout=30.0)
    asm.expect("34020000001180000001", 42, now=0.0)
    assert asm.add(p3, 1.0) is None
    assert asm.add(p1, 2.0) is None
    assert asm.add(p1, 2.5) is None  # a retransmitted page does not count twice
    result = asm.add(p2, 3.0)
    assert result is not None and result.complete and result.error is None
    assert result.sum_num == 7
    assert sorted(i.device_id for i in result.items) == [
        f"3402000000132000{i:04d}" for i in range(7)
    ]
    assert {i.name for i in result.items} == {f"摄像机{i}" for i in range(7)}
    assert len(asm) == 0


def test_catalog_timeout_gives_partial_result_with_error() -> None:
    p1, _, p3 = _pages()
    asm = CatalogAssembler(timeout=30.0)
    asm.add(p1, 0.0)
    asm.add(p3, 10.0)
    assert asm.next_deadline() == 40.0
    assert asm.expire(39.9) == []
    (res,) = asm.expire(40.0)
    assert not res.complete and len(res.items) == 4
    assert res.error == "catalog timed out after 30 s with 4 of 7 items"
    # A query nobody answers times out too, and SumNum=0 finishes at once.
    asm.expect(DEV, 1, 0.0)
    (none,) = asm.expire(30.0)
    assert none.items == [] and none.error is not None and "of ? items" in none.error
    empty = asm.add(CatalogResponse(DEV, 2, 0), 0.0)
    assert empty is not None and empty.complete and empty.items == []


def test_pages_with_interleaved_sns_do_not_mix() -> None:
    asm = CatalogAssembler()
    rng = random.Random(5)
    pages = []
    for sn in (1, 2):
        for k in range(4):
            pages.append(CatalogResponse(DEV, sn, 4, [CatalogItem(f"{sn}{k:019d}")]))
    rng.shuffle(pages)
    done = [r for r in (asm.add(p, 0.0) for p in pages) if r]
    assert sorted(r.sn for r in done) == [1, 2]
    for r in done:
        assert all(i.device_id.startswith(str(r.sn)) for i in r.items)
