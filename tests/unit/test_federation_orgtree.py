"""The downward org tree's wire checks and stream layout (federation/orgtree.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vmesh.errors import InvalidInput
from vmesh.federation import catalogue, orgtree

pytestmark = pytest.mark.unit

CITY = "33030000002006000001"
PROV = "33000000002006000001"
UNIT = "33000000002166000001"


def _msg(origin: str = PROV) -> bytes:
    entry = {"kind": "region", "name": "浙江省", "status": "unknown"}
    return catalogue.encode(
        catalogue.CatalogueChange(origin, UNIT, 3, datetime(2026, 1, 1, tzinfo=UTC), entry)
    )


def test_a_unit_passed_down_by_another_node_keeps_its_origin() -> None:
    c = catalogue.decode(orgtree.org_subject(CITY, UNIT), _msg(), 7, root=orgtree.ORG_ROOT)
    assert (c.origin, c.code, c.version, c.seq) == (PROV, UNIT, 3, 7)


@pytest.mark.parametrize(
    "subj",
    [
        f"vmesh.org.{CITY}.33000000002166000002",  # another code than the body's
        f"vmesh.cat.{CITY}.{UNIT}",  # not under the org root
        f"vmesh.org.{UNIT}",  # no publisher
    ],
)
def test_a_passed_down_subject_must_end_with_the_code(subj: str) -> None:
    with pytest.raises(InvalidInput) as e:
        catalogue.decode(subj, _msg(), root=orgtree.ORG_ROOT)
    assert e.value.errors[0].field == "subject"


def test_upward_subjects_still_name_the_origin() -> None:
    with pytest.raises(InvalidInput):
        catalogue.decode(catalogue.subject(CITY, UNIT), _msg(PROV))


def test_a_node_stream_captures_its_own_subjects_and_sources_its_parent() -> None:
    cfg = orgtree.org_stream_config(CITY, PROV)
    assert cfg.name == f"ORG_{CITY}" and cfg.subjects == [f"vmesh.org.{CITY}.>"]
    assert [(s.name, s.external.api) for s in cfg.sources] == [(f"ORG_{PROV}", f"$JS.{PROV}.API")]
    assert orgtree.org_stream_config(PROV, None).sources is None
