"""The demo network generator: real places, valid codes, parents first, exact sizes, repeatable."""

from __future__ import annotations

from collections import Counter

import pytest

from vmesh.demo.generate import NODE_CODE, PROVINCE_CODE, SIZES, generate, shape_for
from vmesh.directory.validate import check_parent_kind
from vmesh.identity.codes import Kind, Tier, check_child_code, parse_code

pytestmark = pytest.mark.unit

CITIES = {
    "330100": "杭州市", "330200": "宁波市", "330300": "温州市", "330400": "嘉兴市",
    "330500": "湖州市", "330600": "绍兴市", "330700": "金华市", "330800": "衢州市",
    "330900": "舟山市", "331000": "台州市", "331100": "丽水市",
}  # fmt: skip


def test_same_seed_same_network_other_seed_other_names() -> None:
    assert generate(60, seed=3) == generate(60, seed=3)
    a = [r["name"] for r in generate(60, seed=3) if r["tier"] == "village"]
    b = [r["name"] for r in generate(60, seed=4) if r["tier"] == "village"]
    assert len(a) == len(b) == 60 and a != b


@pytest.mark.parametrize("villages", [1, 37, SIZES["small"], SIZES["medium"]])
def test_exact_number_of_villages_and_every_city(villages: int) -> None:
    rows = generate(villages, seed=1)
    tiers = Counter(r["tier"] for r in rows if r["kind"] == "region")
    assert tiers["province"] == 1 and tiers["city"] == 11 and tiers["village"] == villages
    cities = {r["code"][:6]: r["name"] for r in rows if r["tier"] == "city"}
    assert cities == CITIES


def test_province_node_and_real_counties_of_design() -> None:
    rows = generate(SIZES["medium"], seed=1)
    by_code = {r["code"]: r for r in rows}
    assert (
        by_code[PROVINCE_CODE]["name"] == "浙江省" and by_code[PROVINCE_CODE]["parent_code"] == ""
    )
    node = by_code[NODE_CODE]
    assert node["kind"] == "platform" and node["parent_code"] == PROVINCE_CODE
    counties = {r["code"][:6]: r["name"] for r in rows if r["tier"] == "county"}
    assert len(counties) == 90
    for div, name in [("330106", "西湖区"), ("330302", "鹿城区"), ("330328", "文成县"),
                      ("330483", "桐乡市"), ("330803", "衢江区")]:  # fmt: skip
        assert counties[div] == name
    assert "文三路与学院路口东北角" in {r["name"] for r in rows if r["kind"] == "camera"}


def test_every_row_fits_its_parent_and_codes_are_unique() -> None:
    rows = generate(SIZES["small"], seed=9)
    seen: dict[str, dict[str, str]] = {}
    for r in rows:
        code = parse_code(r["code"])
        kind = Kind(r["kind"])
        parent = seen.get(r["parent_code"]) if r["parent_code"] else None
        assert r["parent_code"] == "" or parent is not None, f"parent after child: {r}"
        assert check_parent_kind(kind, Kind(parent["kind"]) if parent else None) is None
        check_child_code(
            code,
            kind,
            parse_code(parent["code"]) if parent else None,
            Tier(r["tier"]) if r["tier"] else None,
            Tier(parent["tier"]) if parent and parent["tier"] else None,
        )
        assert r["code"] not in seen
        assert 27.0 <= float(r["lat"]) <= 31.5 and 118.0 <= float(r["lon"]) <= 123.0
        assert r["status"] in ("online", "offline", "unknown")
        seen[r["code"]] = r


def test_every_village_has_a_service_room_and_cameras() -> None:
    rows = generate(50, seed=2)
    villages = {r["code"]: r["name"] for r in rows if r["tier"] == "village"}
    rooms = Counter(r["parent_code"] for r in rows if r["kind"] == "service_room")
    cams = Counter(r["parent_code"] for r in rows if r["kind"] == "camera")
    for code in villages:
        assert rooms[code] == 1
        assert 1 <= cams[code] <= 3
    room_names = {r["name"] for r in rows if r["kind"] == "service_room"}
    assert all(f"{name}村委会视频室" in room_names for name in villages.values())


def test_sizes_grow_to_the_real_province() -> None:
    assert shape_for(SIZES["small"]).counties == 11
    large = shape_for(SIZES["large"])
    assert large.counties == 90
    assert 1000 <= large.counties * large.townships_per_county <= 1500
    with pytest.raises(ValueError, match="villages must be"):
        shape_for(0)


def test_every_camera_is_a_playable_synthetic_source_of_its_own_colour() -> None:
    import itertools
    import json

    from vmesh.ingest.synthetic import SyntheticSpec
    from vmesh.media.sources import source_from_attrs

    cams = [r for r in generate(30, seed=3) if r["kind"] == "camera"]
    specs = [source_from_attrs(r["code"], r["name"], json.loads(r["attrs"])) for r in cams]
    assert all(isinstance(s, SyntheticSpec) for s in specs)
    assert {(s.width, s.height, s.fps, s.mode) for s in specs} == {(640, 360, 25, "clip")}  # type: ignore[union-attr]
    # Cameras of one place (codes next to each other) have clearly different patch colours.
    by_code = sorted(specs, key=lambda s: s.code)  # type: ignore[union-attr]
    pairs = [(a, b) for a, b in itertools.pairwise(by_code) if int(b.code) - int(a.code) == 1]
    assert pairs
    for a, b in pairs:
        assert sum(abs(x - y) for x, y in zip(a.rgb, b.rgb, strict=True)) > 150, (a.code, b.code)
