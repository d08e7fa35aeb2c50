"""MANSCDP (GB/T 28181 XML bodies): decode, encode, PTZ command bytes, catalog assembly. Pure.

Decoding never trusts the XML prolog: devices write ``encoding="GB2312"`` over UTF-8 bytes and the
other way round. A body that is valid UTF-8 and contains non-ASCII bytes is UTF-8 (GB2312 text
almost never is valid UTF-8, while UTF-8 Chinese often *is* valid GB18030 — as mojibake — so
trying GB18030 first would garble UTF-8 devices); anything else is decoded as GB18030, the
superset of GB2312 and GBK that also holds the rare characters GB2312 lacks. :class:`Decoded`
records which charset worked, so the caller can remember it per device and answer in kind. The
declaration is stripped before parsing (expat refuses multi-byte encodings), DOCTYPEs are refused,
and bare ``&`` in names (a common device bug) is escaped instead of failing the whole body.

Encoding writes the declaration the peer expects (GB2312 by default, or UTF-8 / GB18030). A
GB2312 body is written with the GB18030 codec, which is byte-identical for every GB2312
character and still carries a rare character instead of failing.

Messages (root element / CmdType): :class:`Keepalive` (Notify), :class:`CatalogQuery`,
:class:`CatalogResponse` (Response, paged by ``SumNum``), :class:`CatalogNotify` (Notify with item
``Event``), :class:`DeviceInfoQuery`/:class:`DeviceInfoResponse`,
:class:`DeviceStatusQuery`/:class:`DeviceStatusResponse`, :class:`PtzControl` (Control /
DeviceControl with ``PTZCmd``), :class:`DeviceControlResponse`,
:class:`RecordInfoQuery`/:class:`RecordInfoResponse`, :class:`AlarmNotify` (its Longitude/Latitude
must be numbers when present), :class:`AlarmResponse` (the platform's ``Result`` MESSAGE) and
:class:`AlarmQuery` (the body of an alarm SUBSCRIBE); anything else decodes to
:class:`UnknownMessage` with its fields kept.

:class:`PtzCommand` is the 8-byte front-end command (A5 0F addr cmd d1 d2 d3|addr_hi checksum)
with builders :func:`ptz_move`, :func:`ptz_stop`, :func:`preset_set`, :func:`preset_call`,
:func:`preset_delete`. :class:`CatalogAssembler` collects paged catalog responses by
(DeviceID, SN) until ``SumNum`` items arrived, in any page order, or until an idle timeout.

Public: the message classes above, ``CatalogItem``, ``RecordItem``, ``Decoded``,
``decode_manscdp``, ``encode_manscdp``, ``ManscdpError``, ``PtzCommand``, ``parse_ptz_cmd``,
the PTZ builders, ``CatalogAssembler``, ``CatalogResult``.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from vmesh.errors import FieldError, InvalidInput
from vmesh.gb28181.message import ascii_digits

log = logging.getLogger(__name__)

CONTENT_TYPE = "Application/MANSCDP+xml"


class ManscdpError(InvalidInput):
    """A body that is not usable MANSCDP; ``field`` names the element that is wrong."""

    def __init__(self, field: str, reason: str, value: object | None = None) -> None:
        v = None if value is None else str(value)[:200]
        super().__init__(f"{field}: {reason}", errors=[FieldError(field, reason, v)])
        self.field = field
        self.reason = reason


# ------------------------------------------------------------------------------------ PTZ


@dataclass(frozen=True, slots=True)
class PtzCommand:
    """The 8-byte PTZ command of GB/T 28181 Annex A.3 (PTZCmd, sent as 16 hex digits)."""

    code: int
    data1: int = 0
    data2: int = 0
    data3: int = 0  # 4 bits: zoom speed for PTZ commands
    address: int = 1  # 12 bits: low byte in byte 3, high nibble in byte 7

    RIGHT: ClassVar[int] = 0x01
    LEFT: ClassVar[int] = 0x02
    DOWN: ClassVar[int] = 0x04
    UP: ClassVar[int] = 0x08
    ZOOM_IN: ClassVar[int] = 0x10
    ZOOM_OUT: ClassVar[int] = 0x20
    PRESET_SET: ClassVar[int] = 0x81
    PRESET_CALL: ClassVar[int] = 0x82
    PRESET_DELETE: ClassVar[int] = 0x83

    def to_bytes(self) -> bytes:
        for name, value, top in (
            ("code", self.code, 0xFF),
            ("data1", self.data1, 0xFF),
            ("data2", self.data2, 0xFF),
            ("data3", self.data3, 0x0F),
            ("address", self.address, 0xFFF),
        ):
            if not 0 <= value <= top:
                raise ManscdpError(f"PTZCmd.{name}", f"must be between 0 and {top}", value)
        b = [
            0xA5,
            0x0F,  # version 0; low nibble = (0xA + 0x5 + 0) % 16
            self.address & 0xFF,
            self.code,
            self.data1,
            self.data2,
            (self.data3 << 4) | (self.address >> 8),
        ]
        b.append(sum(b) & 0xFF)
        return bytes(b)

    def hex(self) -> str:
        return self.to_bytes().hex().upper()

    @property
    def is_stop(self) -> bool:
        return self.code == 0 and self.data1 == 0 and self.data2 == 0 and self.data3 == 0


def parse_ptz_cmd(text: str) -> PtzCommand:
    """Parse the 16 hex digits of a PTZCmd, checking the header and checksum."""
    t = text.strip()
    if not re.fullmatch(r"[0-9A-Fa-f]{16}", t):
        raise ManscdpError("PTZCmd", "must be 16 hex digits", text)
    b = bytes.fromhex(t)
    if b[0] != 0xA5:
        raise ManscdpError("PTZCmd", "must start with A5", text)
    if b[7] != sum(b[:7]) & 0xFF:
        raise ManscdpError("PTZCmd", f"checksum must be {sum(b[:7]) & 0xFF:02X}", text)
    return PtzCommand(b[3], b[4], b[5], b[6] >> 4, b[2] | ((b[6] & 0x0F) << 8))


def ptz_move(
    *, pan: int = 0, tilt: int = 0, zoom: int = 0, speed: int = 0x80, zoom_speed: int = 0x8
) -> PtzCommand:
    """Move: pan -1 left / +1 right, tilt -1 down / +1 up, zoom -1 out / +1 in; all 0 is stop."""
    for name, v in (("pan", pan), ("tilt", tilt), ("zoom", zoom)):
        if v not in (-1, 0, 1):
            raise ManscdpError(name, "must be -1, 0 or 1", v)
    code = 0
    code |= PtzCommand.RIGHT if pan > 0 else PtzCommand.LEFT if pan < 0 else 0
    code |= PtzCommand.UP if tilt > 0 else PtzCommand.DOWN if tilt < 0 else 0
    code |= PtzCommand.ZOOM_IN if zoom > 0 else PtzCommand.ZOOM_OUT if zoom < 0 else 0
    return PtzCommand(
        code,
        speed if pan else 0,
        speed if tilt else 0,
        zoom_speed if zoom else 0,
    )


def ptz_stop() -> PtzCommand:
    return PtzCommand(0)


def _preset(code: int, number: int) -> PtzCommand:
    if not 1 <= number <= 255:
        raise ManscdpError("preset", "must be between 1 and 255", number)
    return PtzCommand(code, 0, number)


def preset_set(number: int) -> PtzCommand:
    return _preset(PtzCommand.PRESET_SET, number)


def preset_call(number: int) -> PtzCommand:
    return _preset(PtzCommand.PRESET_CALL, number)


def preset_delete(number: int) -> PtzCommand:
    return _preset(PtzCommand.PRESET_DELETE, number)


# ------------------------------------------------------------------------------- messages


@dataclass(slots=True)
class CatalogItem:
    """One DeviceList item. Unknown child elements are kept in ``extra`` (tag → text)."""

    device_id: str
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    owner: str | None = None
    civil_code: str | None = None
    block: str | None = None
    address: str | None = None
    parental: int | None = None
    parent_id: str | None = None
    business_group_id: str | None = None
    safety_way: int | None = None
    register_way: int | None = None
    secrecy: int | None = None
    ip_address: str | None = None
    port: int | None = None
    status: str | None = None
    longitude: float | None = None
    latitude: float | None = None
    ptz_type: int | None = None
    event: str | None = None  # catalog notify: ON OFF VLOST DEFECT ADD DEL UPDATE
    extra: dict[str, str] = field(default_factory=dict)


_ITEM_TAGS: dict[str, str] = {
    "device_id": "DeviceID",
    "name": "Name",
    "manufacturer": "Manufacturer",
    "model": "Model",
    "owner": "Owner",
    "civil_code": "CivilCode",
    "block": "Block",
    "address": "Address",
    "parental": "Parental",
    "parent_id": "ParentID",
    "business_group_id": "BusinessGroupID",
    "safety_way": "SafetyWay",
    "register_way": "RegisterWay",
    "secrecy": "Secrecy",
    "ip_address": "IPAddress",
    "port": "Port",
    "status": "Status",
    "longitude": "Longitude",
    "latitude": "Latitude",
    "event": "Event",
}


@dataclass(slots=True)
class RecordItem:
    device_id: str
    name: str | None = None
    file_path: str | None = None
    address: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    secrecy: int | None = None
    type: str | None = None
    recorder_id: str | None = None
    file_size: int | None = None


_RECORD_TAGS: dict[str, str] = {
    "device_id": "DeviceID",
    "name": "Name",
    "file_path": "FilePath",
    "address": "Address",
    "start_time": "StartTime",
    "end_time": "EndTime",
    "secrecy": "Secrecy",
    "type": "Type",
    "recorder_id": "RecorderID",
    "file_size": "FileSize",
}


@dataclass(slots=True)
class Keepalive:
    ROOT: ClassVar[str] = "Notify"
    CMD: ClassVar[str] = "Keepalive"
    device_id: str
    sn: int
    status: str = "OK"


@dataclass(slots=True)
class CatalogQuery:
    ROOT: ClassVar[str] = "Query"
    CMD: ClassVar[str] = "Catalog"
    device_id: str
    sn: int


@dataclass(slots=True)
class CatalogResponse:
    ROOT: ClassVar[str] = "Response"
    CMD: ClassVar[str] = "Catalog"
    device_id: str
    sn: int
    sum_num: int
    items: list[CatalogItem] = field(default_factory=list)


@dataclass(slots=True)
class CatalogNotify:
    ROOT: ClassVar[str] = "Notify"
    CMD: ClassVar[str] = "Catalog"
    device_id: str
    sn: int
    sum_num: int
    items: list[CatalogItem] = field(default_factory=list)


@dataclass(slots=True)
class DeviceInfoQuery:
    ROOT: ClassVar[str] = "Query"
    CMD: ClassVar[str] = "DeviceInfo"
    device_id: str
    sn: int


@dataclass(slots=True)
class DeviceInfoResponse:
    ROOT: ClassVar[str] = "Response"
    CMD: ClassVar[str] = "DeviceInfo"
    device_id: str
    sn: int
    device_name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    channel: int | None = None
    result: str | None = None


@dataclass(slots=True)
class DeviceStatusQuery:
    ROOT: ClassVar[str] = "Query"
    CMD: ClassVar[str] = "DeviceStatus"
    device_id: str
    sn: int


@dataclass(slots=True)
class DeviceStatusResponse:
    ROOT: ClassVar[str] = "Response"
    CMD: ClassVar[str] = "DeviceStatus"
    device_id: str
    sn: int
    result: str | None = None
    online: str | None = None
    status: str | None = None
    encode: str | None = None
    record: str | None = None
    device_time: str | None = None


@dataclass(slots=True)
class PtzControl:
    ROOT: ClassVar[str] = "Control"
    CMD: ClassVar[str] = "DeviceControl"
    device_id: str
    sn: int
    command: PtzCommand
    priority: int = 5


@dataclass(slots=True)
class DeviceControlResponse:
    ROOT: ClassVar[str] = "Response"
    CMD: ClassVar[str] = "DeviceControl"
    device_id: str
    sn: int
    result: str = "OK"


@dataclass(slots=True)
class RecordInfoQuery:
    ROOT: ClassVar[str] = "Query"
    CMD: ClassVar[str] = "RecordInfo"
    device_id: str
    sn: int
    start_time: str
    end_time: str
    secrecy: int = 0
    type: str = "all"  # Dahua NVRs need Type=all


@dataclass(slots=True)
class RecordInfoResponse:
    ROOT: ClassVar[str] = "Response"
    CMD: ClassVar[str] = "RecordInfo"
    device_id: str
    sn: int
    sum_num: int
    name: str | None = None
    items: list[RecordItem] = field(default_factory=list)


@dataclass(slots=True)
class AlarmNotify:
    ROOT: ClassVar[str] = "Notify"
    CMD: ClassVar[str] = "Alarm"
    device_id: str
    sn: int
    priority: str | None = None
    method: str | None = None
    time: str | None = None
    description: str | None = None
    longitude: float | None = None
    latitude: float | None = None
    alarm_type: str | None = None


@dataclass(slots=True)
class AlarmResponse:
    ROOT: ClassVar[str] = "Response"
    CMD: ClassVar[str] = "Alarm"
    device_id: str
    sn: int
    result: str = "OK"


@dataclass(slots=True)
class AlarmQuery:
    ROOT: ClassVar[str] = "Query"
    CMD: ClassVar[str] = "Alarm"
    device_id: str
    sn: int


@dataclass(slots=True)
class UnknownMessage:
    root: str
    cmd_type: str
    device_id: str
    sn: int | None
    fields: dict[str, str] = field(default_factory=dict)


Message = (
    Keepalive
    | CatalogQuery
    | CatalogResponse
    | CatalogNotify
    | DeviceInfoQuery
    | DeviceInfoResponse
    | DeviceStatusQuery
    | DeviceStatusResponse
    | PtzControl
    | DeviceControlResponse
    | RecordInfoQuery
    | RecordInfoResponse
    | AlarmNotify
    | AlarmResponse
    | AlarmQuery
    | UnknownMessage
)

# Flat scalar fields of each class: attribute → XML tag (after DeviceID and SN).
_FLAT: dict[type, dict[str, str]] = {
    Keepalive: {"status": "Status"},
    CatalogQuery: {},
    DeviceInfoQuery: {},
    DeviceStatusQuery: {},
    DeviceInfoResponse: {
        "device_name": "DeviceName",
        "result": "Result",
        "manufacturer": "Manufacturer",
        "model": "Model",
        "firmware": "Firmware",
        "channel": "Channel",
    },
    DeviceStatusResponse: {
        "result": "Result",
        "online": "Online",
        "status": "Status",
        "encode": "Encode",
        "record": "Record",
        "device_time": "DeviceTime",
    },
    DeviceControlResponse: {"result": "Result"},
    RecordInfoQuery: {
        "start_time": "StartTime",
        "end_time": "EndTime",
        "secrecy": "Secrecy",
        "type": "Type",
    },
    AlarmNotify: {
        "priority": "AlarmPriority",
        "method": "AlarmMethod",
        "time": "AlarmTime",
        "description": "AlarmDescription",
        "longitude": "Longitude",
        "latitude": "Latitude",
    },
    AlarmResponse: {"result": "Result"},
    AlarmQuery: {},
}

_CLASSES: dict[tuple[str, str], type] = {
    (c.ROOT, c.CMD): c
    for c in (
        Keepalive,
        CatalogQuery,
        CatalogResponse,
        CatalogNotify,
        DeviceInfoQuery,
        DeviceInfoResponse,
        DeviceStatusQuery,
        DeviceStatusResponse,
        PtzControl,
        DeviceControlResponse,
        RecordInfoQuery,
        RecordInfoResponse,
        AlarmNotify,
        AlarmResponse,
        AlarmQuery,
    )
}


# -------------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class Decoded:
    message: Message
    charset: str  # "UTF-8" or "GB18030": what the bytes actually were


_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_BARE_AMP = re.compile(r"&(?!(?:#\d+|#x[0-9A-Fa-f]+|[A-Za-z]+);)")


def _decode_text(body: bytes) -> tuple[str, str]:
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        text = body.decode("utf-8")
        if any(b >= 0x80 for b in body):
            return text, "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return body.decode("gb18030"), "GB18030"
    except UnicodeDecodeError:
        return body.decode("gb18030", errors="replace"), "GB18030"


def _parse_xml(text: str) -> ET.Element:
    text = _DECL.sub("", text, count=1).strip()
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise ManscdpError("body", "DOCTYPE and entity declarations are not allowed")
    try:
        return ET.fromstring(text)
    except ET.ParseError as first:
        fixed = _BARE_AMP.sub("&amp;", text)
        if fixed != text:
            try:
                return ET.fromstring(fixed)
            except ET.ParseError:
                pass
        raise ManscdpError("body", f"is not well-formed XML ({first})") from None


def _child(el: ET.Element, tag: str) -> str | None:
    c = el.find(tag)
    if c is None:
        # Devices vary the case of tags (DeviceId, SumNUM …).
        low = tag.lower()
        for ch in el:
            if ch.tag.lower() == low:
                c = ch
                break
    if c is None or c.text is None:
        return None
    t = c.text.strip()
    return t or None


def _required_int(el: ET.Element, tag: str) -> int:
    v = _child(el, tag)
    if v is None:
        raise ManscdpError(tag, "is missing")
    try:
        return int(v)
    except ValueError:
        raise ManscdpError(tag, "must be an integer", v) from None


def _convert(value: str | None, annotation: Any, where: str) -> Any:
    """Convert optional text to the field's type; bad optional numbers become None (logged)."""
    if value is None:
        return None
    ann = str(annotation)
    try:
        if ann.startswith("int"):
            return int(value)
        if ann.startswith("float"):
            return float(value)
    except ValueError:
        log.info("manscdp bad number field=%s value=%r", where, value)
        return None
    return value


def _fill(cls: type, el: ET.Element, mapping: dict[str, str]) -> dict[str, Any]:
    types = {f.name: f.type for f in fields(cls)}
    return {attr: _convert(_child(el, tag), types[attr], tag) for attr, tag in mapping.items()}


def _catalog_item(el: ET.Element) -> CatalogItem | None:
    device_id = _child(el, "DeviceID")
    if device_id is None:
        log.info("manscdp catalog item without DeviceID skipped")
        return None
    kw = _fill(CatalogItem, el, _ITEM_TAGS)
    kw["device_id"] = device_id
    info = el.find("Info")
    if info is not None:
        kw["ptz_type"] = _convert(_child(info, "PTZType"), "int", "PTZType")
        if kw["business_group_id"] is None:
            kw["business_group_id"] = _child(info, "BusinessGroupID")
    known = {t.lower() for t in _ITEM_TAGS.values()} | {"info"}
    kw["extra"] = {
        ch.tag: (ch.text or "").strip() for ch in el if ch.tag.lower() not in known and len(ch) == 0
    }
    return CatalogItem(**kw)


def _record_item(el: ET.Element) -> RecordItem | None:
    device_id = _child(el, "DeviceID")
    if device_id is None:
        return None
    kw = _fill(RecordItem, el, _RECORD_TAGS)
    kw["device_id"] = device_id
    return RecordItem(**kw)


def _list(el: ET.Element, tag: str) -> list[ET.Element]:
    lst = el.find(tag)
    return [] if lst is None else [i for i in lst if i.tag.lower() == "item"]


def decode_manscdp(body: bytes) -> Decoded:
    """Decode a MANSCDP body. Raises :class:`ManscdpError` naming the element that is wrong."""
    if not body.strip():
        raise ManscdpError("body", "is empty")
    text, charset = _decode_text(body)
    root = _parse_xml(text)
    cmd = _child(root, "CmdType")
    if cmd is None:
        raise ManscdpError("CmdType", "is missing")
    device_id = _child(root, "DeviceID")
    if device_id is None:
        raise ManscdpError("DeviceID", "is missing")
    cls = _CLASSES.get((root.tag, cmd))
    msg: Message
    if cls is None:
        sn_text = _child(root, "SN")
        sn = int(sn_text) if sn_text and ascii_digits(sn_text) else None
        flat = {ch.tag: (ch.text or "").strip() for ch in root if len(ch) == 0}
        msg = UnknownMessage(root.tag, cmd, device_id, sn, flat)
        return Decoded(msg, charset)
    sn = _required_int(root, "SN")
    if cls in (CatalogResponse, CatalogNotify):
        items = [i for i in (_catalog_item(e) for e in _list(root, "DeviceList")) if i]
        msg = cls(device_id, sn, _required_int(root, "SumNum"), items)
    elif cls is RecordInfoResponse:
        items_r = [i for i in (_record_item(e) for e in _list(root, "RecordList")) if i]
        msg = RecordInfoResponse(
            device_id, sn, _required_int(root, "SumNum"), _child(root, "Name"), items_r
        )
    elif cls is PtzControl:
        ptz = _child(root, "PTZCmd")
        if ptz is None:
            flat = {ch.tag: (ch.text or "").strip() for ch in root if len(ch) == 0}
            return Decoded(UnknownMessage(root.tag, cmd, device_id, sn, flat), charset)
        info = root.find("Info")
        prio = _child(info, "ControlPriority") if info is not None else None
        msg = PtzControl(
            device_id, sn, parse_ptz_cmd(ptz), int(prio) if prio and ascii_digits(prio) else 5
        )
    else:
        kw = _fill(cls, root, _FLAT[cls])
        if cls is AlarmNotify:
            info = root.find("Info")
            kw["alarm_type"] = _child(info, "AlarmType") if info is not None else None
            for tag, lim in (("Longitude", 180.0), ("Latitude", 90.0)):
                raw = _child(root, tag)
                if raw is not None and kw[tag.lower()] is None:
                    raise ManscdpError(tag, "must be a number", raw)
                if kw[tag.lower()] is not None and not -lim <= kw[tag.lower()] <= lim:
                    raise ManscdpError(tag, f"must be between -{lim:g} and {lim:g}", raw)
        kw = {k: v for k, v in kw.items() if v is not None}
        for f in fields(cls):
            if f.name not in kw and f.name not in ("device_id", "sn") and _no_default(f):
                raise ManscdpError(_FLAT[cls][f.name], "is missing")
        msg = cls(device_id=device_id, sn=sn, **kw)
    return Decoded(msg, charset)


def _no_default(f: Any) -> bool:
    return bool(f.default is MISSING and f.default_factory is MISSING)


# -------------------------------------------------------------------------------- encoding

_CODECS = {"GB2312": "gb18030", "GBK": "gb18030", "GB18030": "gb18030", "UTF-8": "utf-8"}


def _text(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6f}".rstrip("0").rstrip(".")
    return str(v)


def _add(parent: ET.Element, tag: str, value: object) -> None:
    if value is None:
        return
    ET.SubElement(parent, tag).text = _text(value)


def _add_items(parent: ET.Element, tag: str, items: list[Any], mapping: dict[str, str]) -> None:
    lst = ET.SubElement(parent, tag, {"Num": str(len(items))})
    for it in items:
        el = ET.SubElement(lst, "Item")
        for attr, t in mapping.items():
            if attr != "business_group_id":
                _add(el, t, getattr(it, attr))
        if isinstance(it, CatalogItem):
            for k, v in it.extra.items():
                _add(el, k, v)
            if it.ptz_type is not None or it.business_group_id is not None:
                info = ET.SubElement(el, "Info")
                _add(info, "PTZType", it.ptz_type)
                _add(info, "BusinessGroupID", it.business_group_id)


def encode_manscdp(message: Message, charset: str = "GB2312") -> bytes:
    """Serialise ``message`` with an XML declaration naming ``charset`` (GB2312, GB18030, UTF-8)."""
    cs = charset.upper()
    codec = _CODECS.get(cs)
    if codec is None:
        raise ManscdpError("charset", "must be GB2312, GBK, GB18030 or UTF-8", charset)
    if isinstance(message, UnknownMessage):
        root = ET.Element(message.root)
        _add(root, "CmdType", message.cmd_type)
        _add(root, "SN", message.sn)
        _add(root, "DeviceID", message.device_id)
        for k, v in message.fields.items():
            if k not in ("CmdType", "SN", "DeviceID"):
                _add(root, k, v)
    else:
        root = ET.Element(message.ROOT)
        _add(root, "CmdType", message.CMD)
        _add(root, "SN", message.sn)
        _add(root, "DeviceID", message.device_id)
        if isinstance(message, CatalogResponse | CatalogNotify):
            _add(root, "SumNum", message.sum_num)
            _add_items(root, "DeviceList", message.items, _ITEM_TAGS)
        elif isinstance(message, RecordInfoResponse):
            _add(root, "Name", message.name)
            _add(root, "SumNum", message.sum_num)
            _add_items(root, "RecordList", message.items, _RECORD_TAGS)
        elif isinstance(message, PtzControl):
            _add(root, "PTZCmd", message.command.hex())
            info = ET.SubElement(root, "Info")
            _add(info, "ControlPriority", message.priority)
        else:
            for attr, tag in _FLAT[type(message)].items():
                _add(root, tag, getattr(message, attr))
            if isinstance(message, AlarmNotify) and message.alarm_type is not None:
                info = ET.SubElement(root, "Info")
                _add(info, "AlarmType", message.alarm_type)
    ET.indent(root, space="")
    xml = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="{cs}"?>\r\n{xml}\r\n'.encode(codec)


# ----------------------------------------------------------------------- catalog assembly


@dataclass(slots=True)
class CatalogResult:
    """A finished catalog: complete (``SumNum`` items) or what arrived before the timeout."""

    device_id: str
    sn: int
    sum_num: int | None
    items: list[CatalogItem]
    complete: bool
    error: str | None = None


@dataclass(slots=True)
class _Pending:
    sum_num: int | None
    deadline: float
    items: dict[str, CatalogItem] = field(default_factory=dict)


class CatalogAssembler:
    """Collects paged catalog responses by (DeviceID, SN) until SumNum, or an idle timeout.

    Pages may come in any order and be repeated (UDP retransmissions); items are keyed by their
    DeviceID, so a repeat never counts twice. ``timeout`` is measured from the latest page (or
    from :meth:`expect`), so a big catalog that keeps arriving is not cut short.
    """

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._pending: dict[tuple[str, int], _Pending] = {}

    def expect(self, device_id: str, sn: int, now: float) -> None:
        """A query was sent; time out even if no page ever comes."""
        self._pending.setdefault((device_id, sn), _Pending(None, now + self.timeout))

    def add(self, page: CatalogResponse, now: float) -> CatalogResult | None:
        """Add one page; returns the result once every item has arrived."""
        key = (page.device_id, page.sn)
        p = self._pending.get(key)
        if p is None:
            p = self._pending[key] = _Pending(page.sum_num, now + self.timeout)
        if p.sum_num is None:
            p.sum_num = page.sum_num
        elif page.sum_num != p.sum_num:
            log.info(
                "catalog SumNum changed device=%s sn=%s %s->%s",
                page.device_id,
                page.sn,
                p.sum_num,
                page.sum_num,
            )
            p.sum_num = max(p.sum_num, page.sum_num)
        for it in page.items:
            p.items[it.device_id] = it
        p.deadline = now + self.timeout
        if len(p.items) >= p.sum_num:
            del self._pending[key]
            return CatalogResult(page.device_id, page.sn, p.sum_num, list(p.items.values()), True)
        return None

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def expire(self, now: float) -> list[CatalogResult]:
        """Results of catalogs idle past the timeout: the items that came, and an error."""
        out: list[CatalogResult] = []
        for key, p in list(self._pending.items()):
            if p.deadline <= now:
                del self._pending[key]
                got = len(p.items)
                want = "?" if p.sum_num is None else str(p.sum_num)
                out.append(
                    CatalogResult(
                        key[0],
                        key[1],
                        p.sum_num,
                        list(p.items.values()),
                        False,
                        f"catalog timed out after {self.timeout:g} s with {got} of {want} items",
                    )
                )
        return out

    def __len__(self) -> int:
        return len(self._pending)
