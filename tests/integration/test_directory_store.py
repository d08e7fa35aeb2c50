"""The directory store and search on a real database (SQLite and PostgreSQL via ``ctx``)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from directory_sample import PROVINCE, SYSTEM, build_sample
from vmesh.audit.models import AuditRecord
from vmesh.directory.models import Entry, EntryTag
from vmesh.directory.search import SearchQuery, search
from vmesh.directory.store import Directory
from vmesh.errors import Conflict, InvalidInput, NotFound
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration


def names(res: object) -> list[str]:
    return [i["name"] for i in res.items]  # type: ignore[attr-defined]


async def test_generated_codes_follow_the_division_rules(ctx: NodeContext) -> None:
    c = await build_sample(ctx)
    # A township gets the next free 2-digit group under its county; a village shares it.
    assert c["zt"] == "33010601002166000001"
    assert c["longwu"] == "33010601002166000002"
    assert c["cam_gate"] == "33010601001326000001"
    assert c["cam_tea"] == "33010601001326000002"
    assert c["room"] == "33010601004016000001"
    d = Directory(ctx.db, ctx.audit)
    second = await d.create(
        SYSTEM, {"parent_code": c["xihu"], "kind": "region", "tier": "township", "name": "留下街道"}
    )
    assert second["code"] == "33010602002166000001"
    assert [p["name"] for p in second["path"]] == ["浙江省", "杭州市", "西湖区", "留下街道"]


async def test_bad_entries_are_refused_and_nothing_is_written(ctx: NodeContext) -> None:
    c = await build_sample(ctx)
    d = Directory(ctx.db, ctx.audit)
    before = await d.count()
    with pytest.raises(InvalidInput) as e:
        await d.create(
            SYSTEM,
            {
                "parent_code": c["xihu"],
                "kind": "camera",
                "name": "错区划",
                "code": "33030200001326000001",
            },
        )
    assert e.value.errors[0].field == "code"
    assert "not inside the parent's division 33010600" in e.value.errors[0].reason
    with pytest.raises(InvalidInput) as e:
        await d.create(SYSTEM, {"parent_code": c["cam_gate"], "kind": "camera", "name": "x"})
    assert e.value.errors[0].reason == "a camera cannot be placed under a camera"
    with pytest.raises(Conflict):
        await d.create(
            SYSTEM,
            {"parent_code": c["longwu"], "kind": "camera", "name": "重复", "code": c["cam_gate"]},
        )
    with pytest.raises(NotFound):
        await d.create(
            SYSTEM, {"parent_code": "33019900002166000001", "kind": "camera", "name": "x"}
        )
    assert await d.count() == before


async def test_tree_levels_carry_direct_child_and_online_counts(ctx: NodeContext) -> None:
    c = await build_sample(ctx)
    d = Directory(ctx.db, ctx.audit)
    [root] = await d.roots(SYSTEM)
    assert (root["name"], root["child_count"], root["has_children"]) == ("浙江省", 2, True)
    items, total = await d.children(SYSTEM, c["longwu"])
    assert total == 3
    assert {i["name"]: i["status"] for i in items} == {
        "龙坞村口摄像机": "online",
        "龙坞茶园入口摄像机": "offline",
        "龙坞村便民服务室": "online",
    }
    items, _ = await d.children(SYSTEM, c["zt"])
    assert [(i["name"], i["child_count"], i["online_count"]) for i in items] == [("龙坞村", 3, 2)]
    page, total = await d.children(SYSTEM, c["longwu"], offset=2, limit=5)
    assert total == 3 and len(page) == 1


async def test_update_bumps_version_reindexes_name_and_tags(ctx: NodeContext) -> None:
    c = await build_sample(ctx)
    d = Directory(ctx.db, ctx.audit)
    e = await d.update(
        SYSTEM, c["cam_tea"], {"name": "龙坞茶村东侧", "tags": ["茶园", "东侧"], "status": "online"}
    )
    assert (e["version"], e["status"], e["tags"]) == (2, "online", ["东侧", "茶园"])
    assert e["last_seen"] is not None
    assert names(await search(ctx.db, SearchQuery(q="东侧"), None)) == ["龙坞茶村东侧"]
    assert names(await search(ctx.db, SearchQuery(q="入口"), None)) == []
    assert names(await search(ctx.db, SearchQuery(tag="东侧"), None)) == ["龙坞茶村东侧"]
    with pytest.raises(Conflict):
        await d.update(SYSTEM, c["cam_tea"], {"name": "y", "version": 1})
    with pytest.raises(InvalidInput) as err:
        await d.update(SYSTEM, c["cam_tea"], {"code": "33010601001326000099"})
    assert err.value.errors[0].field == "code"
    async with ctx.db.sessions() as s:
        actions = (
            await s.scalars(
                select(AuditRecord.action).where(AuditRecord.target_code == c["cam_tea"])
            )
        ).all()
    assert "directory.update" in actions


async def test_moving_an_endpoint_rewrites_its_path(ctx: NodeContext) -> None:
    c = await build_sample(ctx)
    d = Directory(ctx.db, ctx.audit)
    await d.update(SYSTEM, c["cam_tea"], {"parent_code": c["zt"]})
    moved = await d.get(SYSTEM, c["cam_tea"], audit_view=False)
    assert moved["parent_code"] == c["zt"]
    assert [p["name"] for p in moved["path"]][-2:] == ["转塘街道", "龙坞茶园入口摄像机"]
    with pytest.raises(InvalidInput):  # a Wencheng code does not fit under Xihu
        await d.update(SYSTEM, c["cam_xk"], {"parent_code": c["longwu"]})


async def test_delete_refuses_entries_with_children(ctx: NodeContext) -> None:
    c = await build_sample(ctx)
    d = Directory(ctx.db, ctx.audit)
    with pytest.raises(Conflict) as e:
        await d.delete(SYSTEM, c["longwu"])
    assert "has 3 child entries" in e.value.detail
    await d.delete(SYSTEM, c["cam_gate"])
    with pytest.raises(NotFound):
        await d.get(SYSTEM, c["cam_gate"])
    assert names(await search(ctx.db, SearchQuery(q="村口"), None)) == ["西坑村口摄像机"]
    async with ctx.db.sessions() as s:
        assert (
            await s.scalars(
                select(EntryTag.tag)
                .join(Entry, Entry.id == EntryTag.entry_id)
                .where(Entry.code == c["cam_gate"])
            )
        ).all() == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            SearchQuery(q="村"),
            ["西坑村", "西坑村口摄像机", "龙坞村", "龙坞村便民服务室", "龙坞村口摄像机"],
        ),
        (SearchQuery(q="坞村口"), ["龙坞村口摄像机"]),
        (SearchQuery(q="龙坞村口摄像"), ["龙坞村口摄像机"]),  # two rare pairs, then exact
        (SearchQuery(q="坞村口摄龙"), []),  # every pair present, not in this order
        (SearchQuery(q="村", kind="camera"), ["西坑村口摄像机", "龙坞村口摄像机"]),
        (SearchQuery(q="摄像机", status="online"), ["西坑村口摄像机", "龙坞村口摄像机"]),
        (SearchQuery(code_prefix="330328"), ["大峃镇", "文成县", "西坑村", "西坑村口摄像机"]),
        (SearchQuery(type="401"), ["龙坞村便民服务室"]),
        (SearchQuery(tag="村口"), ["西坑村口摄像机", "龙坞村口摄像机"]),
        (SearchQuery(q="xyz"), []),
    ],
)
async def test_search_filters(ctx: NodeContext, query: SearchQuery, expected: list[str]) -> None:
    await build_sample(ctx)
    res = await search(ctx.db, query, None)
    assert sorted(names(res)) == sorted(expected)
    assert res.total == len(expected) and not res.total_capped


async def test_search_sorts_pages_and_stays_in_the_subtree(ctx: NodeContext) -> None:
    c = await build_sample(ctx)
    d = Directory(ctx.db, ctx.audit)
    xihu = await d.resolve_under(SYSTEM, c["xihu"], "directory.search")
    res = await search(ctx.db, SearchQuery(q="村", sort="code"), xihu)
    assert [i["code"] for i in res.items] == sorted([c["longwu"], c["cam_gate"], c["room"]])
    res = await search(ctx.db, SearchQuery(q="村", sort="-code", limit=2, offset=1), xihu)
    assert res.total == 3
    assert [i["code"] for i in res.items] == sorted(
        [c["longwu"], c["cam_gate"], c["room"]], reverse=True
    )[1:3]
    with pytest.raises(InvalidInput) as e:
        await search(ctx.db, SearchQuery(sort="size", code_prefix="33a"), None)
    assert {x.field for x in e.value.errors} == {"sort", "code_prefix"}


async def test_dense_searches_cap_their_totals(
    ctx: NodeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When every index matches more than CAP rows the index of the sort order is walked."""
    import vmesh.directory.search as search_mod

    await build_sample(ctx)
    monkeypatch.setattr(search_mod, "CAP", 2)
    monkeypatch.setattr(search_mod, "DRIVE_MAX", 2)
    res = await search(ctx.db, SearchQuery(code_prefix="33", limit=3), None)
    assert res.plan == "ordered" and res.sorted_by == "name"
    assert res.total_capped and res.total == 2
    assert names(res) == sorted(names(res)) and len(res.items) == 3
    res = await search(ctx.db, SearchQuery(code_prefix="330328", limit=3, offset=2), None)
    assert names(res) == sorted(["大峃镇", "文成县", "西坑村", "西坑村口摄像机"])[2:]
    assert res.total_capped and res.total == 2  # 4 rows, more than CAP


async def test_names_matching_more_than_sort_max_come_in_creation_order(
    ctx: NodeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vmesh.directory.search as search_mod

    await build_sample(ctx)
    village_ish = ["西坑村", "西坑村口摄像机", "龙坞村", "龙坞村便民服务室", "龙坞村口摄像机"]
    async with ctx.db.sessions() as s:
        by_id = [
            n
            for (n,) in (
                await s.execute(text("SELECT name FROM directory_entries ORDER BY id"))
            ).all()
            if "村" in n
        ]
    assert sorted(by_id) == sorted(village_ish)
    # Within SORT_MAX: sorted by name exactly.
    monkeypatch.setattr(search_mod, "SORT_MAX", 5)
    res = await search(ctx.db, SearchQuery(q="村", limit=3, offset=1), None)
    assert names(res) == sorted(village_ish)[1:4] and res.sorted_by == "name"
    assert res.total == 5 and not res.total_capped
    res = await search(ctx.db, SearchQuery(q="村", sort="-code", limit=2, offset=4), None)
    assert len(res.items) == 1 and res.total == 5 and res.sorted_by == "-code"
    res = await search(ctx.db, SearchQuery(q="村", limit=3, offset=7), None)  # past the end
    assert res.items == [] and res.total == 5 and not res.total_capped
    # Beyond: the first matches in creation order, said so, the total capped.
    monkeypatch.setattr(search_mod, "SORT_MAX", 3)
    res = await search(ctx.db, SearchQuery(q="村", limit=2), None)
    assert res.sorted_by == "created" and res.total_capped and res.total == 3
    assert names(res) == by_id[:2]
    res = await search(ctx.db, SearchQuery(q="村", limit=2, offset=3), None)
    assert names(res) == by_id[3:5]
    res = await search(ctx.db, SearchQuery(q="村", sort="-name", limit=2), None)
    assert res.sorted_by == "-created" and names(res) == by_id[::-1][:2]
    # Other filters still apply, and a narrow result is sorted again.
    res = await search(ctx.db, SearchQuery(q="村", kind="camera"), None)
    assert names(res) == ["西坑村口摄像机", "龙坞村口摄像机"] and res.sorted_by == "name"


async def test_long_name_searches_find_exactly_the_names_holding_the_text(
    ctx: NodeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names of 3 or more characters are found through some of their pairs and an exact test:
    every page and total is what a plain substring scan of all names gives, whichever pairs the
    index is asked (common ones, repeated ones, more than ``QUERY_PAIRS``), sorted when few,
    in creation order beyond ``SORT_MAX``."""
    import random

    import vmesh.directory.search as search_mod
    from vmesh.directory import transfer
    from vmesh.identity.codes import compose

    rng = random.Random(2)
    pieces = ["路与", "路口", "新华", "东北角", "村", "Ab", "3号", "大道", "与", "口", "学院", "7"]
    lines = [
        "code,parent_code,kind,tier,name",
        f"{PROVINCE},,region,province,浙江省",
        "33010000002166000001,33000000002166000001,region,city,杭州市",
        "33010600002166000001,33010000002166000001,region,county,西湖区",
        "33010601002166000001,33010600002166000001,region,township,转塘街道",
        "33010601002166000002,33010601002166000001,region,village,龙坞村",
    ]
    for i in range(1, 1201):
        name = "".join(rng.choice(pieces) for _ in range(rng.randint(2, 7)))
        lines.append(f"{compose('33010601', '132', i)},33010601002166000002,camera,,{name}")
    await transfer.import_file(ctx.db, ctx.audit, SYSTEM, "\n".join(lines) + "\n", "csv")
    async with ctx.db.sessions() as s:
        rows = (await s.execute(text("SELECT code, name FROM directory_entries ORDER BY id"))).all()
    names_ = [n for _, n in rows]
    queries = {n[i : i + k] for n in rng.sample(names_, 60) for k in (3, 4, 5, 6) for i in (0, 1)}
    # Repeated pairs, letters in either case, one pair twice, more pairs than QUERY_PAIRS.
    queries |= {"路口路口", "路与路与", "ab路口", "AB3号", "口口口"}
    queries.add("路与新华路口东北角学院大道与口7")
    monkeypatch.setattr(search_mod, "SORT_MAX", 40)
    for q in sorted(q for q in queries if len(q) >= 3):
        found = [c for c, n in rows if q.lower() in n.lower()]
        many = len(found) > 40
        for sort, offset in (("code", 0), ("code", 35), ("-code", 3)):
            res = await search(ctx.db, SearchQuery(q=q, sort=sort, offset=offset, limit=10), None)
            if many:
                order = found if sort == "code" else found[::-1]
                want = (order[offset : offset + 10], 40, True, sort.replace("code", "created"))
            else:
                order = sorted(found, reverse=sort == "-code")
                want = (order[offset : offset + 10], len(found), False, sort)
            got = ([i["code"] for i in res.items], res.total, res.total_capped, res.sorted_by)
            assert got == want, (q, sort, offset)
