"""GB/T 28181 20-digit codes (统一编码): parse, validate, relate and generate. Pure, no I/O.

Layout: ``center(8) industry(2) type(3) net(1) serial(6)``. ``center`` is the GB/T 2260 division,
padded: province(2) city(2) county(2) grassroots unit(2), unused groups are ``00``.

What each directory kind may use (``KIND_TYPES``), and how a child's division must relate to its
parent's (``division_within``), are the rules every input is checked against. Villages have no
digits of their own in the 8-digit centre: they share their township's centre and differ by serial.

Public: ``Code``, ``parse_code``, ``Kind``, ``KIND_TYPES``, ``Tier``, ``TIER_DEPTH``,
``division_prefix``, ``division_within``, ``check_child_code``, ``compose``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vmesh.errors import InvalidInput

CODE_LEN = 20


class Tier(StrEnum):
    province = "province"
    city = "city"
    county = "county"
    township = "township"
    village = "village"


# How many 2-digit groups of the centre a region of each tier fills.
TIER_DEPTH: dict[Tier, int] = {
    Tier.province: 1,
    Tier.city: 2,
    Tier.county: 3,
    Tier.township: 4,
    Tier.village: 4,
}

TIER_ORDER = [Tier.province, Tier.city, Tier.county, Tier.township, Tier.village]


class Kind(StrEnum):
    """What a directory entry is. The first three are org units, the rest endpoints."""

    region = "region"  # an administrative unit at one tier
    department = "department"  # business group (业务分组)
    virtual_org = "virtual_org"  # virtual organisation (虚拟组织)
    platform = "platform"  # a vmesh node or another GB/T 28181 platform
    camera = "camera"
    nvr = "nvr"
    conference_terminal = "conference_terminal"
    service_room = "service_room"  # village video room / kiosk
    field_terminal = "field_terminal"

    @property
    def is_org(self) -> bool:
        return self in ORG_KINDS


ORG_KINDS = frozenset({Kind.region, Kind.department, Kind.virtual_org})

# Type codes each kind accepts; the first is the one generated codes use.
# 400/401 are in the standard's end-user terminal range (400 and its extensions); 138 is the
# standard's mobile transmission device, which is what a field phone is.
KIND_TYPES: dict[Kind, tuple[str, ...]] = {
    Kind.region: ("216",),
    Kind.department: ("215",),
    Kind.virtual_org: ("216",),
    Kind.platform: ("200",),
    Kind.camera: ("132", "131"),
    Kind.nvr: ("118", "111"),
    Kind.conference_terminal: ("400",),
    Kind.service_room: ("401",),
    Kind.field_terminal: ("138",),
}

TYPE_NAMES: dict[str, str] = {
    "111": "DVR",
    "118": "NVR",
    "131": "camera",
    "132": "IPC",
    "138": "mobile terminal",
    "200": "platform",
    "215": "business group",
    "216": "virtual organisation",
    "400": "conference terminal",
    "401": "service room",
}


@dataclass(frozen=True, slots=True)
class Code:
    """A parsed 20-digit code."""

    text: str

    @property
    def center(self) -> str:
        return self.text[:8]

    @property
    def industry(self) -> str:
        return self.text[8:10]

    @property
    def type(self) -> str:
        return self.text[10:13]

    @property
    def net(self) -> str:
        return self.text[13]

    @property
    def serial(self) -> str:
        return self.text[14:]

    @property
    def domain(self) -> str:
        """The SIP domain of a platform with this code: its first ten digits."""
        return self.text[:10]

    def __str__(self) -> str:
        return self.text


def parse_code(value: object, field: str = "code") -> Code:
    """Return the code, or raise ``InvalidInput`` naming ``field`` and what is wrong."""
    if not isinstance(value, str):
        raise InvalidInput.one(field, "must be a string of 20 digits", value)
    text = value.strip()
    if len(text) != CODE_LEN:
        raise InvalidInput.one(field, f"must be 20 digits, has {len(text)} characters", value)
    if not text.isascii() or not text.isdigit():
        raise InvalidInput.one(field, "must contain digits 0-9 only", value)
    if text[:2] == "00":
        raise InvalidInput.one(field, "division part must start with a province code", value)
    if text[10:13] not in TYPE_NAMES:
        known = ", ".join(sorted(TYPE_NAMES))
        raise InvalidInput.one(field, f"unknown type {text[10:13]} (known: {known})", value)
    groups = [text[i : i + 2] for i in range(0, 8, 2)]
    # A zero group may only be followed by zero groups: 33000100 names no real division.
    seen_zero = False
    for g in groups:
        if g == "00":
            seen_zero = True
        elif seen_zero:
            raise InvalidInput.one(
                field, "division part has a gap (a level after an empty one)", value
            )
    return Code(text)


def division_depth(center: str) -> int:
    """How many leading 2-digit groups of an 8-digit centre are set."""
    depth = 0
    for i in range(0, 8, 2):
        if center[i : i + 2] == "00":
            break
        depth += 1
    return depth


def division_prefix(center: str) -> str:
    """The significant digits of a centre: ``33010600`` → ``330106``."""
    return center[: 2 * division_depth(center)]


def division_within(child_center: str, parent_center: str) -> bool:
    """True when the child's division lies inside (or is) the parent's division."""
    return child_center.startswith(division_prefix(parent_center))


def check_child_code(
    code: Code,
    kind: Kind,
    parent: Code | None,
    tier: Tier | None = None,
    parent_tier: Tier | None = None,
    field: str = "code",
) -> None:
    """Raise ``InvalidInput`` if ``code`` does not fit an entry of ``kind`` under ``parent``.

    Regions must fill exactly the centre groups of their tier (villages share the township's
    centre) and sit one tier below a parent region. Every entry's division must lie within its
    parent's.
    """
    allowed = KIND_TYPES[kind]
    if code.type not in allowed:
        raise InvalidInput.one(
            field,
            f"type {code.type} is not allowed for a {kind.value} (allowed: {', '.join(allowed)})",
            code,
        )
    if kind is Kind.region:
        if tier is None:
            raise InvalidInput.one("tier", "is required for a region", None)
        want = TIER_DEPTH[tier]
        if division_depth(code.center) != want:
            raise InvalidInput.one(
                field,
                f"a {tier.value} must have a division of {2 * want} significant digits, "
                f"has {code.center}",
                code,
            )
        if parent_tier is not None:
            expected_parent = (
                TIER_ORDER[TIER_ORDER.index(tier) - 1] if tier is not Tier.province else None
            )
            if parent_tier is not expected_parent:
                raise InvalidInput.one(
                    "tier", f"a {tier.value} cannot be under a {parent_tier.value}", tier.value
                )
    if parent is None:
        return
    if not division_within(code.center, parent.center):
        raise InvalidInput.one(
            field,
            f"division {code.center} is not inside the parent's division {parent.center}",
            code,
        )


def compose(
    center: str, type_code: str, serial: int, *, industry: str = "00", net: str = "6"
) -> str:
    """Build a code. ``net`` 6 is the e-government extranet (电子政务外网) the network runs on."""
    if not (len(center) == 8 and center.isdigit()):
        raise InvalidInput.one("center", "must be 8 digits", center)
    if not 0 <= serial <= 999_999:
        raise InvalidInput.one("serial", "must be 0..999999", serial)
    return f"{center}{industry}{type_code}{net}{serial:06d}"


def child_center(parent_center: str, tier: Tier, group: int) -> str:
    """The centre of a new region of ``tier`` under a region with ``parent_center``.

    ``group`` (1..99) fills the tier's own 2-digit group; villages keep their township's centre.
    """
    if tier is Tier.village:
        return parent_center
    depth = TIER_DEPTH[tier]
    if not 1 <= group <= 99:
        raise InvalidInput.one("code", f"no free {tier.value} division left under {parent_center}")
    prefix = parent_center[: 2 * (depth - 1)]
    return (prefix + f"{group:02d}").ljust(8, "0")
