"""Dual homing in the node map (``NetworkRegistry`` over SQLite and PostgreSQL): a county that
moved to its second city is reported by both cities — the new one with a fresh ``last_seen``, the
old one with the link down and the last sighting before the cut. The province keeps the newest
evidence: the county stays under its second parent whatever order the reports come in, and a
report that is newer again (the county back under its first city) moves it back.

``shape_version`` (what the fabric caches the tree by) moves exactly when a node is added or
changes parent, not on the periodic reports that change nothing of the tree's shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vmesh.federation.links import NetworkRegistry, NodeInfo
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

PROV, CITY, CITY2 = "33000000002006000001", "33030000002006000001", "33030000002006000002"
COUNTY = "33032800002006000001"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _announce(city: str, county_link: dict[str, Any]) -> dict[str, Any]:
    return {
        "node": {"code": city, "tier": "city", "name": city[-1] + "号市"},
        "rtt_ms": 1.0,
        "subtree": [
            {
                "code": COUNTY,
                "tier": "county",
                "name": "文成县",
                "parent_code": city,
                "link": county_link,
            }
        ],
    }


def _link(state: str, seen: datetime) -> dict[str, Any]:
    return {"state": state, "rtt_ms": 2.0 if state == "up" else None, "last_seen": seen.isoformat()}


async def _parent(reg: NetworkRegistry) -> tuple[str | None, str | None]:
    row = next(n for n in await reg.subtree() if n.code == COUNTY)
    return row.parent_code, row.link_state


async def test_the_newest_report_of_a_moved_node_wins(ctx: NodeContext) -> None:
    reg = NetworkRegistry(ctx.db, None, NodeInfo(PROV, "province", "浙江省"))  # type: ignore[arg-type]
    await reg._on_announce(_announce(CITY, _link("up", T0)))
    assert await _parent(reg) == (CITY, "up")
    shape = reg.shape_version
    assert shape == 2  # city and county added
    await reg._on_announce(_announce(CITY, _link("up", T0 + timedelta(seconds=1))))
    assert reg.shape_version == shape  # the same tree
    # The county moved: city2 reports it fresh, city still reports it (down, last seen at T0).
    await reg._on_announce(_announce(CITY2, _link("up", T0 + timedelta(seconds=10))))
    assert await _parent(reg) == (CITY2, "up")
    assert reg.shape_version == shape + 2  # city2 added, the county moved
    await reg._on_announce(_announce(CITY, _link("down", T0)))
    assert await _parent(reg) == (CITY2, "up")
    assert reg.shape_version == shape + 2
    tree = await reg.shape()  # what the fabric routes by: read once per shape
    assert tree[COUNTY] == CITY2 and tree[CITY2] == PROV
    assert await reg.shape() is tree
    # A report without a sighting cannot take it away either.
    await reg._on_announce(_announce(CITY, {"state": "down", "rtt_ms": None, "last_seen": None}))
    assert await _parent(reg) == (CITY2, "up")
    # Newer evidence under the first city (the county went back): it moves back.
    await reg._on_announce(_announce(CITY, _link("up", T0 + timedelta(seconds=20))))
    assert await _parent(reg) == (CITY, "up")
    assert (await reg.shape())[COUNTY] == CITY
    assert {n.code for n in await reg.subtree()} == {CITY, CITY2, COUNTY}
