"""A small Zhejiang directory built through the real directory store, for the directory tests.

Hangzhou (3301) › Xihu (330106) › Zhuantang (33010601) › Longwu village, with cameras; Wenzhou
(3303) › Wencheng (330328) › Daxue (33032801) › Xikeng village, with a camera. ``SAMPLE`` maps short
names to the codes the store generated, so tests name entries, not digits.
"""

from __future__ import annotations

from vmesh.audit.log import Actor
from vmesh.directory.store import Directory
from vmesh.node.context import NodeContext

SYSTEM = Actor("test-setup", "system")
PROVINCE = "33000000002166000001"


async def build_sample(ctx: NodeContext) -> dict[str, str]:
    d = Directory(ctx.db, ctx.audit)
    codes: dict[str, str] = {}

    async def add(key: str, parent: str | None, **fields: object) -> None:
        data = {"parent_code": codes[parent] if parent else None, **fields}
        codes[key] = (await d.create(SYSTEM, data))["code"]

    await add("zj", None, code=PROVINCE, kind="region", tier="province", name="浙江省")
    await add("hz", "zj", code="33010000002166000001", kind="region", tier="city", name="杭州市")
    await add(
        "xihu", "hz", code="33010600002166000001", kind="region", tier="county", name="西湖区"
    )
    await add("zt", "xihu", kind="region", tier="township", name="转塘街道")
    await add("longwu", "zt", kind="region", tier="village", name="龙坞村")
    await add(
        "cam_gate",
        "longwu",
        kind="camera",
        name="龙坞村口摄像机",
        status="online",
        lat=30.16,
        lon=120.08,
        tags=["村口", "hd"],
    )
    await add(
        "cam_tea",
        "longwu",
        kind="camera",
        name="龙坞茶园入口摄像机",
        status="offline",
        tags=["茶园"],
    )
    await add("room", "longwu", kind="service_room", name="龙坞村便民服务室", status="online")
    await add("wz", "zj", code="33030000002166000001", kind="region", tier="city", name="温州市")
    await add("wc", "wz", code="33032800002166000001", kind="region", tier="county", name="文成县")
    await add("dx", "wc", kind="region", tier="township", name="大峃镇")
    await add("xikeng", "dx", kind="region", tier="village", name="西坑村")
    await add(
        "cam_xk", "xikeng", kind="camera", name="西坑村口摄像机", status="online", tags=["村口"]
    )
    return codes
