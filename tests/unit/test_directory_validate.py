"""Directory field rules and search helpers, without a database."""

from __future__ import annotations

import random

import pytest

from vmesh.directory import validate as v
from vmesh.errors import ErrorList
from vmesh.identity.codes import Kind, Tier

pytestmark = pytest.mark.unit


def check(raw: dict[str, object], row: int | None = None) -> tuple[v.EntryFields | None, ErrorList]:
    errors = ErrorList()
    return v.check_fields(raw, errors, row), errors


def test_a_good_entry_is_normalised() -> None:
    f, errors = check(
        {
            "kind": "camera",
            "name": "  文三路   学院路口 ",
            "lat": "30.27",
            "lon": 120.12,
            "tags": "hd 路口 hd",
            "attrs": '{"b": 1, "a": "东"}',
        }
    )
    assert not errors
    assert f is not None
    assert f.kind is Kind.camera
    assert f.name == "文三路 学院路口"
    assert (f.lat, f.lon) == (30.27, 120.12)
    assert f.tags == ("hd", "路口")
    assert f.status == "unknown"
    assert f.attrs == '{"a":"东","b":1}'


def test_every_bad_field_is_reported_with_its_row() -> None:
    f, errors = check(
        {
            "kind": "cmra",
            "name": "",
            "lat": "95",
            "lon": "x",
            "status": "up",
            "attrs": "[1]",
            "tags": ["a b"],
        },
        row=7,
    )
    assert f is None
    by_field = {e.field: e for e in errors.errors}
    assert set(by_field) == {"kind", "name", "lat", "lon", "status", "attrs", "tags"}
    assert all(e.row == 7 for e in errors.errors)
    assert "unknown kind" in by_field["kind"].reason
    assert by_field["lat"].reason == "must be a number from -90 to 90"
    assert by_field["status"].reason == "must be one of online, offline, unknown"


def test_regions_need_a_tier_and_only_regions_have_one() -> None:
    _, errors = check({"kind": "region", "name": "西湖区"})
    assert [(e.field, e.reason.split(" (")[0]) for e in errors.errors] == [
        ("tier", "is required for a region")
    ]
    _, errors = check({"kind": "camera", "name": "x", "tier": "county"})
    assert errors.errors[0].reason == "only regions have a tier, not a camera"
    f, errors = check({"kind": "region", "name": "x", "tier": "county"})
    assert f is not None and f.tier is Tier.county


def test_coordinates_come_in_pairs() -> None:
    _, errors = check({"kind": "camera", "name": "x", "lat": 30})
    assert [(e.field, e.reason) for e in errors.errors] == [
        ("lon", "lat and lon must be given together")
    ]


def test_parent_kind_rules() -> None:
    assert v.check_parent_kind(Kind.region, None) is None
    assert v.check_parent_kind(Kind.camera, None) == "a camera needs a parent"
    assert v.check_parent_kind(Kind.camera, Kind.nvr) is None
    assert v.check_parent_kind(Kind.region, Kind.department) == (
        "a region cannot be placed under a department"
    )
    assert v.check_parent_kind(Kind.nvr, Kind.camera) == "a nvr cannot be placed under a camera"


def test_name_tokens_make_every_substring_a_token_or_phrase() -> None:
    assert v.name_tokens("西湖区-IPC 1") == "西 湖 区 i p c 1 西湖 湖区 区i ip pc c1"
    assert v.name_tokens("村") == "村"
    assert v.query_tokens("村") == '"村"'
    assert v.query_tokens("湖区") == '"湖区"'
    assert v.query_tokens("西湖区") == '"西湖" "湖区"'
    assert v.query_tokens("村村村") == '"村村"'
    assert v.query_tokens(" - ") is None


def test_ranges_for_prefixes() -> None:
    assert v.code_prefix_range("3301") == ("3301", "3302")
    assert v.code_prefix_range("3309") == ("3309", "3310")
    assert v.code_prefix_range("99") == ("99", None)
    lo, hi = v.path_range("/1/7/")
    assert lo <= "/1/7/93/" < hi
    assert not lo <= "/1/70/" < hi
    assert not lo <= "/1/8/" < hi


def test_the_fast_path_accepts_only_what_check_fields_accepts_alike() -> None:
    """``fast_fields``/``fast_cells`` (the bulk import's first try) either decline a row or give
    exactly what ``check_fields`` gives, on rows mixing valid and invalid values."""
    rng = random.Random(28181)
    choices: dict[str, list[object]] = {
        "code": ["33010000001326000001", "", " 33010000001326000001", None],
        "parent_code": ["33010000002166000001", "", " ", "33010000002166000001 ", None],
        "kind": ["camera", "region", "nvr", "carema", "", ["camera"]],
        "tier": ["", "city", "county", "town", None],
        "name": ["西湖区文三路", " 两 个 ", "a  b", "x" * 201, "", "\x01", "西湖", None, 5],
        "lat": ["", "30.25", "91", "nan", "x", None, 30.0],
        "lon": ["", "120.1", "-181", "inf", None],
        "tags": ["", "hd", "hd 雪亮 hd", "a\tb", "x" * 65, " ".join(f"t{i}" for i in range(33))],
        "status": ["", "online", "offline", "unknown", "up", None],
        "attrs": ["", "{}", '{"a":1}', "[", None],
    }
    fast_rows = 0
    for _ in range(20_000):
        raw = {k: vs[0] if rng.random() < 0.7 else rng.choice(vs) for k, vs in choices.items()}
        fast = v.fast_fields(raw)
        assert fast == v.fast_cells([raw[k] for k in v.FIELDS])
        if fast is not None:
            fast_rows += 1
            assert fast == v.check_fields(raw, ErrorList(), 1), raw
    assert fast_rows > 100  # the fast path was taken, not only declined
