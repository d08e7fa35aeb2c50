"""GB/T 28181 code rules: what is accepted, what is refused and why, and generated codes."""

from __future__ import annotations

import pytest

from vmesh.errors import InvalidInput
from vmesh.identity.codes import (
    Kind,
    Tier,
    check_child_code,
    child_center,
    compose,
    division_prefix,
    division_within,
    parse_code,
)

pytestmark = pytest.mark.unit


def reason(exc: pytest.ExceptionInfo[InvalidInput]) -> str:
    return exc.value.errors[0].reason


def test_a_valid_code_splits_into_its_parts() -> None:
    c = parse_code("33010600001326000007")
    assert (c.center, c.industry, c.type, c.net, c.serial) == (
        "33010600",
        "00",
        "132",
        "6",
        "000007",
    )
    assert c.domain == "3301060000"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("3301060000132600000", "must be 20 digits, has 19 characters"),
        ("3301060000132600000X", "must contain digits 0-9 only"),
        ("３３010600001326000007", "must contain digits 0-9 only"),
        ("00010600001326000007", "division part must start with a province code"),
        ("33010600009996000007", "unknown type 999"),
        ("33000100001326000007", "division part has a gap"),
        (33010600001326000007, "must be a string of 20 digits"),
    ],
)
def test_bad_codes_are_refused_with_the_reason(value: object, why: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_code(value, "parent_code")
    assert e.value.errors[0].field == "parent_code"
    assert why in reason(e)


def test_division_prefix_and_containment() -> None:
    assert division_prefix("33010600") == "330106"
    assert division_prefix("33000000") == "33"
    assert division_within("33010601", "33010600")
    assert not division_within("33020000", "33010000")


def test_a_camera_must_lie_inside_its_parents_division() -> None:
    county = parse_code("33010600002166000001")
    check_child_code(parse_code("33010600001326000001"), Kind.camera, county)
    with pytest.raises(InvalidInput) as e:
        check_child_code(parse_code("33030200001326000001"), Kind.camera, county)
    assert "not inside the parent's division 33010600" in reason(e)


def test_a_kind_accepts_only_its_types() -> None:
    with pytest.raises(InvalidInput) as e:
        check_child_code(parse_code("33010600001186000001"), Kind.camera, None)
    assert "type 118 is not allowed for a camera" in reason(e)


def test_a_region_fills_exactly_its_tiers_division_digits() -> None:
    city = parse_code("33010000002166000001")
    check_child_code(parse_code("33010600002166000001"), Kind.region, city, Tier.county, Tier.city)
    with pytest.raises(InvalidInput) as e:
        check_child_code(
            parse_code("33010601002166000001"), Kind.region, city, Tier.county, Tier.city
        )
    assert "a county must have a division of 6 significant digits" in reason(e)
    with pytest.raises(InvalidInput) as e:
        check_child_code(
            parse_code("33010601002166000001"), Kind.region, city, Tier.township, Tier.city
        )
    assert "a township cannot be under a city" in reason(e)


def test_villages_share_their_townships_division() -> None:
    township = parse_code("33010601002166000001")
    check_child_code(
        parse_code("33010601002166000002"), Kind.region, township, Tier.village, Tier.township
    )
    assert child_center("33010601", Tier.village, 0) == "33010601"


def test_compose_and_child_center_build_valid_codes() -> None:
    assert child_center("33010000", Tier.county, 6) == "33010600"
    assert child_center("33010600", Tier.township, 12) == "33010612"
    code = compose(child_center("33010600", Tier.township, 12), "216", 3)
    assert code == "33010612002166000003"
    assert parse_code(code).serial == "000003"
    with pytest.raises(InvalidInput):
        child_center("33010000", Tier.county, 100)
    with pytest.raises(InvalidInput):
        compose("33010600", "132", 1_000_000)
