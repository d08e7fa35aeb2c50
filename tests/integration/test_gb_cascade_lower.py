"""Cascade down, on SQLite and PostgreSQL: a lower platform's catalogue tree in the directory.

``lower.upsert_platform_catalog`` with what real lower platforms send: a business group, virtual
organisations nested by ``ParentID`` (one only by ``BusinessGroupID``), a group of another
division (the directory refuses it: its channels go where it would have gone), a ``ParentID``
cycle, a malformed channel code (skipped), channels under the platform itself; run twice (a
second catalogue) it renames and does not duplicate.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from factories import add_region
from vmesh.directory.models import Entry
from vmesh.gb28181.devices import DeviceDirectory
from vmesh.gb28181.lower import upsert_platform_catalog
from vmesh.gb28181.manscdp import CatalogItem
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

PROVINCE = "33000000002166000001"
CITY = "33010000002166000001"
COUNTY = "33010600002166000001"
TOWN = "33010601002166000001"
VILLAGE = "33010601002166000002"
PLATFORM = "33010601002000000009"
GROUP = "33010601002150000001"
ORG_A = "33010601002160000001"  # under GROUP by ParentID
ORG_B = "33010601002160000002"  # under ORG_A
ORG_C = "33010601002160000003"  # no ParentID, only BusinessGroupID = GROUP
FOREIGN = "33032801002160000001"  # 文成县's division: not under 龙坞村
LOOP_1 = "33010601002160000011"  # LOOP_1 and LOOP_2 name each other as parent
LOOP_2 = "33010601002160000012"


def ch(code: str, parent: str | None, name: str = "", group: str | None = None) -> CatalogItem:
    return CatalogItem(
        code, name=name or f"通道{code[-4:]}", parent_id=parent, business_group_id=group
    )


async def setup_tree(ctx: NodeContext) -> tuple[DeviceDirectory, dict[str, object]]:
    async with ctx.db.transaction() as s:
        await add_region(s, PROVINCE, "浙江省", "province")
        await add_region(s, CITY, "杭州市", "city", PROVINCE)
        await add_region(s, COUNTY, "西湖区", "county", CITY)
        await add_region(s, TOWN, "转塘街道", "township", COUNTY)
        await add_region(s, VILLAGE, "龙坞村", "village", TOWN)
    d = DeviceDirectory(ctx.db, ctx.audit)
    platform = await d.ensure_device(PLATFORM, VILLAGE)
    return d, platform


ITEMS = [
    CatalogItem(GROUP, name="治安业务分组", parent_id=PLATFORM),
    CatalogItem(ORG_B, name="南门路口", parent_id=ORG_A, business_group_id=GROUP),  # child first
    CatalogItem(ORG_A, name="龙坞片区", parent_id=GROUP, business_group_id=GROUP),
    CatalogItem(ORG_C, name="只有分组", business_group_id=GROUP),
    CatalogItem(FOREIGN, name="外地组织", parent_id=GROUP, business_group_id=GROUP),
    CatalogItem(LOOP_1, name="环一", parent_id=LOOP_2),
    CatalogItem(LOOP_2, name="环二", parent_id=LOOP_1),
    ch("33010601001310000001", ORG_B),
    ch("33010601001310000002", ORG_C),
    ch("33010601001310000003", FOREIGN),
    ch("33010601001310000004", PLATFORM),
    ch("33010601001310000005", LOOP_2),
    ch("12345", ORG_A),  # not a code: skipped
]


async def parent(d: DeviceDirectory, code: str) -> str | None:
    e = await d.lookup(code)
    assert e is not None, f"{code} not in the directory"
    return e["parent_code"]  # type: ignore[no-any-return]


async def test_lower_platform_tree_kept(ctx: NodeContext) -> None:
    d, platform = await setup_tree(ctx)
    accepted = await upsert_platform_catalog(d, platform, ITEMS)
    assert sorted(accepted) == [f"3301060100131000000{n}" for n in range(1, 6)]
    assert (await d.lookup(GROUP))["kind"] == "department"  # type: ignore[index]
    assert (await d.lookup(ORG_A))["kind"] == "virtual_org"  # type: ignore[index]
    assert await parent(d, GROUP) == VILLAGE  # org units cannot sit under the platform entry
    assert await parent(d, ORG_A) == GROUP
    assert await parent(d, ORG_B) == ORG_A
    assert await parent(d, ORG_C) == GROUP
    assert await d.lookup(FOREIGN) is None  # refused by the directory (another division)
    assert await parent(d, LOOP_1) == await parent(d, LOOP_2) == VILLAGE  # a cycle: at the top
    assert await parent(d, "33010601001310000005") == LOOP_2
    assert await parent(d, "33010601001310000001") == ORG_B
    assert await parent(d, "33010601001310000002") == ORG_C
    assert await parent(d, "33010601001310000003") == GROUP  # where FOREIGN would have gone
    assert await parent(d, "33010601001310000004") == PLATFORM
    channel = await d.lookup("33010601001310000001")
    assert channel is not None
    assert channel["attrs"]["gb_device"] == PLATFORM
    assert channel["attrs"]["gb_channel"] == "33010601001310000001"
    assert (await d.lookup(ORG_A))["attrs"]["gb_device"] == PLATFORM  # type: ignore[index]

    # A second catalogue: a group renamed, nothing duplicated.
    again = [CatalogItem(GROUP, name="治安分组（新）", parent_id=PLATFORM), *ITEMS[1:]]
    async with ctx.db.sessions() as s:
        before = await s.scalar(select(func.count()).select_from(Entry))
    assert sorted(await upsert_platform_catalog(d, platform, again)) == sorted(accepted)
    async with ctx.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Entry)) == before
    assert (await d.lookup(GROUP))["name"] == "治安分组（新）"  # type: ignore[index]
