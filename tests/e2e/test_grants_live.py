"""Issue 7's grant acceptance in Chromium, on real nodes in network namespaces.

Topology (``netns.vnet``): the province (330000) with two children, the city of Hangzhou
(330100) and the county of Wencheng (330328, homed directly on the province, as a province-
administered county). Hangzhou is not above Wencheng, so no Hangzhou user's scope covers the
county's cameras and Hangzhou's catalogue does not even hold them: watching one needs a grant,
and the stream goes county → province → city through the fabric.

The story, in two Chromium pages (one logged in at the city, one at the county):

1. the Hangzhou public-security department's operator applies on the grants page for the
   county's cameras (its org subtree) with a purpose; the application goes to the county;
2. the county's administrator approves it in the county's queue; the grant reaches the city;
3. the city operator opens the camera on the wall: decoded frames of the county camera;
4. the county revokes the grant: the city's tile stops, saying the grant was revoked (the camera
   node's fabric also closes its side); a new view is refused with the reason;
5. all of it is in the audit with the purpose: applications, decision, revocation at the county
   and, as replicas, at the city; the views at the city (``live.view`` with grant and purpose) and
   at the county (``fabric.serve``), and the forced stop; the county's access report lists them.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from e2e.console_node import CHROMIUM, async_log_in, media_browser_args
from factories import TEST_ACTOR
from netns.fednodes import wait_until
from netns.vnet import (
    HANGZHOU_SPEC,
    NEEDS_MEDIA_NETWORK,
    PROV_SPEC,
    WENCHENG_SPEC,
    Net,
    Topology,
    camera,
    network_fixture,
    wait_linked,
)
from vmesh.directory.store import Directory

pytestmark = [
    pytest.mark.e2e,
    *NEEDS_MEDIA_NETWORK,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs {CHROMIUM}"),
]

TOPOLOGY = Topology(
    {
        "prov": PROV_SPEC,
        "city": HANGZHOU_SPEC,
        "county": replace(WENCHENG_SPEC, parents=("prov",)),
    },
    media=True,
)
CITY, COUNTY = TOPOLOGY.nodes["city"].code, TOPOLOGY.nodes["county"].code
COUNTY_ORG = TOPOLOGY.nodes["county"].org
DEPT = "33010000002156000001"  # 杭州市公安局, a business group (215) of the city
CAM = "33032800001320000001"
PURPOSE = "防汛应急值守 flood duty"
PASSWORD = "s3cret-pass"
WAIT_MS = 60_000  # readiness bounds, not performance assertions


async def _setup(name: str, directory: Directory, org: str) -> None:
    if name == "county":
        await camera(directory, org, CAM, "文成县府门口", color="#e02020")
    if name == "city":
        await directory.create(
            TEST_ACTOR,
            {"code": DEPT, "parent_code": org, "kind": "department", "name": "杭州市公安局"},
        )


net = network_fixture(TOPOLOGY, _setup)


async def test_city_department_watches_a_county_camera_by_grant_until_revoked(net: Net) -> None:
    from playwright.async_api import async_playwright

    await net.send(
        "city",
        "POST",
        "/api/users",
        {
            "username": "hz-police",
            "display_name": "杭州公安值班员",
            "password": PASSWORD,
            "roles": ["operator"],
            "scope_code": DEPT,
            "department_code": DEPT,
        },
    )

    await wait_linked(net, "prov", CAM, ("city", "county"))

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=media_browser_args(),
        )
        try:
            city = await (await browser.new_context()).new_page()
            county = await (await browser.new_context()).new_page()
            await async_log_in(city, net.url("city"), "hz-police", PASSWORD)
            await async_log_in(county, net.url("county"), "admin-county", PASSWORD)

            # Before any grant the camera is not even known at the city.
            await city.goto(f"{net.url('city')}/#/wall/{CAM}")
            await city.wait_for_function(
                """() => document.querySelector('[data-testid="tile-0"]')
                    ?.dataset.state === 'error'""",
                timeout=WAIT_MS,
            )

            # 1. The city department applies.
            await city.goto(f"{net.url('city')}/#/grants")
            await city.get_by_test_id("grants-apply-grantee").select_option("department")
            await city.get_by_test_id("grants-apply-org").fill(COUNTY_ORG)
            await city.get_by_test_id("grants-apply-purpose").fill(PURPOSE)
            await city.get_by_test_id("grants-apply-submit").click()
            await city.get_by_test_id("grants-apply-ok").wait_for(timeout=WAIT_MS)
            mine = await net.get("city", "/api/grants", view="all")
            assert [g["purpose"] for g in mine["items"]] == [PURPOSE]
            gid = mine["items"][0]["id"]
            assert mine["items"][0]["owner_node"] == COUNTY

            # 2. The county approves it from its queue.
            await county.goto(f"{net.url('county')}/#/grants")
            row = county.get_by_test_id("grants-queue").locator(f'[data-id="{gid}"]')
            await row.get_by_test_id("grant-approve").click()
            await (
                county.get_by_test_id("grants-active")
                .locator(f'[data-id="{gid}"][data-state="active"]')
                .wait_for(timeout=WAIT_MS)
            )

            decider = county.get_by_test_id("grants-active").locator(f'[data-id="{gid}"]')
            assert await decider.get_by_test_id("grant-decider").text_content() == COUNTY

            async def active_at_city() -> bool:
                return (await net.get("city", f"/api/grants/{gid}"))["state"] == "active"

            await wait_until(active_at_city, "the approval delivered to the city", within=60)

            # 3. The city user watches the county camera: decoded frames.
            await city.goto(f"{net.url('city')}/#/dir")
            await city.goto(f"{net.url('city')}/#/wall/{CAM}")
            await city.wait_for_function(
                """() => Number(document.querySelector('[data-testid="tile-0"]')
                    ?.dataset.framesDecoded || 0) > 50""",
                timeout=WAIT_MS,
            )
            assert await city.get_by_test_id("tile-0").get_attribute("data-state") == "playing"

            # 4. The county revokes: the city's tile stops with the reason.
            active = county.get_by_test_id("grants-active").locator(f'[data-id="{gid}"]')
            await active.get_by_test_id("grant-reason").fill("汛期结束")
            revoked_at = time.monotonic()
            await active.get_by_test_id("grant-revoke").click()
            await city.wait_for_function(
                """() => document.querySelector('[data-testid="tile-0"]')
                    ?.dataset.state === 'error'""",
                timeout=WAIT_MS,
            )
            stopped_after = time.monotonic() - revoked_at
            text = await city.get_by_test_id("tile-0-state").text_content() or ""
            assert f"grant {gid} revoked at" in text and "admin-county" in text, text
            print(f"tile stopped {stopped_after:.1f} s after the revoke click")
            # The picture stops: the decoded-frame count settles (frames in flight and the stats
            # poll may add a few after the state change).
            seen: list[str | None] = []
            for _ in range(15):
                seen.append(
                    await city.get_by_test_id("tile-0").get_attribute("data-frames-decoded")
                )
                if len(seen) >= 2 and seen[-1] == seen[-2]:
                    break
                await city.wait_for_timeout(2000)
            assert len(seen) >= 2 and seen[-1] == seen[-2], f"frames still decoded: {seen}"

            # A new view is refused with the reason.
            await city.goto(f"{net.url('city')}/#/dir")
            await city.goto(f"{net.url('city')}/#/wall/{CAM}")
            await city.wait_for_function(
                """() => document.querySelector('[data-testid="tile-0"]')
                    ?.dataset.state === 'error'""",
                timeout=WAIT_MS,
            )
            text = await city.get_by_test_id("tile-0-state").text_content() or ""
            assert f"grant {gid} revoked at" in text and "汛期结束" in text, text
        finally:
            await browser.close()

    # 5. The audit, with the purpose, at both ends.
    async def county_rows() -> dict[str, list[dict[str, Any]]] | None:
        out = {}
        for action in (
            "grant.apply",
            "grant.approve",
            "grant.revoke",
            "fabric.serve",
            "fabric.stop",
        ):
            page = await net.get("county", "/api/audit", action=action)
            out[action] = page["items"]
        return out if all(out.values()) else None

    rows = await wait_until(county_rows, "the county's audit of the grant and its use")
    for action in ("grant.apply", "grant.approve", "grant.revoke"):
        assert [r["detail"]["purpose"] for r in rows[action]] == [PURPOSE], rows[action]
    assert rows["grant.apply"][0]["username"] == f"hz-police@{CITY}"
    serve = rows["fabric.serve"][0]
    assert (serve["detail"]["grant"], serve["detail"]["purpose"]) == (gid, PURPOSE)
    assert serve["detail"]["user"] == "hz-police" and serve["detail"]["viewer_node"] == CITY
    assert rows["fabric.stop"][0]["detail"]["grant"] == gid

    views = (await net.get("city", "/api/audit", action="live.view", target=CAM))["items"]
    ok = [v for v in views if v["result"] == "ok"]
    assert [(v["detail"]["grant"], v["detail"]["purpose"]) for v in ok] == [(gid, PURPOSE)]
    assert ok[0]["detail"]["department"] == DEPT
    denied = [v["detail"].get("reason", "") for v in views if v["result"] == "denied"]
    assert any("revoked" in r and v_stopped for r, v_stopped in _stops(views)), views
    assert any(f"grant {gid} revoked at" in r for r in denied), denied
    city_steps = {
        r["action"] for r in (await net.get("city", "/api/audit", action="grant"))["items"]
    }
    assert {"grant.apply", "grant.approve", "grant.revoke"} <= city_steps

    async def at_province() -> bool:  # the province holds every decided grant too
        g = await net.get("prov", f"/api/grants/{gid}")
        return g["status"] == "revoked" and g["purpose"] == PURPOSE

    await wait_until(at_province, "the revoked grant at the province")

    report = await net.get("county", "/api/grants/report", grant=gid)
    assert {(u["action"], u["user"], u["purpose"]) for u in report["items"]} >= {
        ("fabric.serve", "hz-police", PURPOSE)
    }


def _stops(views: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    return [(v["detail"].get("reason", ""), bool(v["detail"].get("stopped"))) for v in views]
