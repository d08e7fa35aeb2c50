"""The command room in Debian's Chromium against a real node (switch + Janus + ffmpeg cameras).

A 西湖区 commander opens an incident at a point picked on the offline map; the cameras near it
(directory locations) are suggested and the far one is not; four are pulled onto the room's wall
and decode; a field terminal (Chromium's fake camera, a simulated GPS track) joins, publishes and
its marker moves on the room's map; township and county venues are convened through the
conference service; the exported timeline lists every action of the log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from e2e.console_node import Node, launch_chromium, log_in, media_browser_args
from media_site import ADMIN, VILLAGE, XIHU, api, camera_code, login_cookie, media_node

pytestmark = pytest.mark.e2e

PLAY_TIMEOUT_MS = 45_000  # readiness bounds, not performance assertions
POINT = (30.2000, 120.1000)
NEAR = [camera_code(n) for n in (1, 2, 3, 4)]
FAR = camera_code(5)
PHONE = "33010601001380000001"
TOWN = "33010601002166000001"
COUNTY_ROOM = "33010600004000000001"
TOWN_ROOM = "33010601004000000001"
COMMANDER = ("xihu_cmdr", "Xh-commander-2024!")
FIELD = ("lw_field", "Lw-field-2024!")
TRACK = [(30.2010, 120.1010), (30.2030, 120.1040)]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = media_node(tmp_path_factory.mktemp("command"), channels=8, linger=2.0)
    try:
        cookie = login_cookie(n, *ADMIN)
        for i, code in enumerate(NEAR):
            api(
                n,
                cookie,
                "PATCH",
                f"/directory/entries/{code}",
                {"lat": POINT[0] + 0.003 * (i + 1), "lon": POINT[1]},
            )
        api(n, cookie, "PATCH", f"/directory/entries/{FAR}", {"lat": 31.0, "lon": 121.0})
        for code, parent, kind, name in (
            (PHONE, VILLAGE, "field_terminal", "龙坞单兵01"),
            (COUNTY_ROOM, XIHU, "conference_terminal", "西湖区指挥中心"),
            (TOWN_ROOM, TOWN, "conference_terminal", "转塘街道分会场"),
        ):
            api(
                n,
                cookie,
                "POST",
                "/directory/entries",
                {"code": code, "parent_code": parent, "kind": kind, "name": name},
            )
        n.add_user(
            *COMMANDER, roles=("commander", "chair"), scope=XIHU, display_name="西湖区指挥长"
        )
        n.add_user(*FIELD, roles=("operator",), scope=VILLAGE, display_name="龙坞单兵")
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with launch_chromium(media_browser_args(fake_devices=1)) as b:
        yield b


def test_a_commander_runs_an_incident_room(browser, node: Node) -> None:  # type: ignore[no-untyped-def]
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000}, locale="zh-CN")
    ctx.set_default_timeout(20_000)
    room = ctx.new_page()
    errors: list[str] = []
    room.on("pageerror", lambda e: errors.append(str(e)))
    log_in(room, node.base_url, *COMMANDER, "#/command", timeout_ms=60_000)

    # The offline map: a click picks the incident's point (then set exactly, for the radius).
    expect(room.get_by_test_id("command-map")).to_have_attribute("data-ready", "true")
    room.get_by_test_id("command-map").click(position={"x": 300, "y": 200})
    expect(room.get_by_test_id("incident-lat")).not_to_have_value("")
    # The division's boundaries drawn from the offline GeoJSON.
    assert int(room.get_by_test_id("command-map").get_attribute("data-boundaries") or 0) >= 1
    room.get_by_test_id("incident-type").select_option("flood")
    room.get_by_test_id("incident-title").fill("转塘街道内涝")
    room.get_by_test_id("incident-severity").select_option("III")
    room.get_by_test_id("incident-lat").fill(str(POINT[0]))
    room.get_by_test_id("incident-lon").fill(str(POINT[1]))
    room.get_by_test_id("incident-open").click()
    expect(room.get_by_test_id("command-room")).to_be_visible()
    incident = room.get_by_test_id("command-room").get_attribute("data-incident")
    expect(room.get_by_test_id("room-map")).to_have_attribute("data-ready", "true")

    # Nearby: the four close cameras (nearest first), not the far one.
    expect(room.get_by_test_id("nearby-list")).to_have_attribute("data-count", "4")
    listed = room.locator('[data-testid="nearby-list"] li').evaluate_all(
        "els => els.map((e) => e.dataset.testid)"
    )
    assert listed == [f"nearby-{c}" for c in NEAR]
    expect(room.get_by_test_id(f"nearby-{FAR}")).to_have_count(0)

    # Four pulled onto the wall, each decoding.
    for code in NEAR:
        room.get_by_test_id(f"pull-{code}").click()
    for i, code in enumerate(NEAR):
        expect(room.get_by_test_id(f"tile-{i}")).to_have_attribute("data-code", code)
        room.wait_for_function(
            't => Number(document.querySelector(`[data-testid="tile-${t}"]`)'
            ".dataset.framesDecoded || 0) > 10",
            arg=str(i),
            timeout=PLAY_TIMEOUT_MS,
        )

    # A field terminal joins with a fake camera and a GPS track; its marker moves on the map.
    fctx = browser.new_context(
        viewport={"width": 412, "height": 900},
        locale="zh-CN",
        geolocation={"latitude": TRACK[0][0], "longitude": TRACK[0][1]},
        permissions=["geolocation", "camera", "microphone"],
    )
    fctx.set_default_timeout(20_000)
    phone = fctx.new_page()
    log_in(phone, node.base_url, *FIELD, f"#/field/{incident}", timeout_ms=60_000)
    expect(
        phone.get_by_test_id("publish-endpoint").locator(f'option[value="{PHONE}"]')
    ).to_have_count(1)
    phone.get_by_test_id("publish-endpoint").select_option(PHONE)
    phone.get_by_test_id("field-join").click()
    expect(phone.get_by_test_id("field-state")).to_have_attribute("data-state", "joined")
    expect(phone.get_by_test_id("publish-state")).to_have_attribute(
        "data-state", "publishing", timeout=PLAY_TIMEOUT_MS
    )
    attr = f"data-unit{PHONE}"
    expect(room.get_by_test_id("room-map")).to_have_attribute(attr, "30.20100,120.10100")
    fctx.set_geolocation({"latitude": TRACK[1][0], "longitude": TRACK[1][1]})
    expect(room.get_by_test_id("room-map")).to_have_attribute(attr, "30.20300,120.10400")

    # Township and county venues convened through the conference service.
    room.get_by_test_id("convene-main").select_option(COUNTY_ROOM)
    room.get_by_test_id(f"venue-{TOWN_ROOM}").check()
    room.get_by_test_id("convene").click()
    expect(room.get_by_test_id("room-head")).to_have_attribute(
        "data-conference", re.compile(r"^\d+$")
    )
    conference = room.get_by_test_id("room-head").get_attribute("data-conference")
    conf = room.request.get(f"{node.base_url}/api/conferences/{conference}").json()
    assert [v["code"] for v in conf["venues"]] == [COUNTY_ROOM, TOWN_ROOM]

    # The timeline lists every action of the log.
    log = room.request.get(f"{node.base_url}/api/command/incidents/{incident}").json()["log"]
    actions = [e["action"] for e in log]
    assert actions[0] == "open" and actions.count("feed_on") == 4
    assert {"unit_join", "position", "convene"} <= set(actions)
    html = room.request.get(f"{node.base_url}/api/command/incidents/{incident}/export.html").text()
    assert html.count('<tr class="action">') == len(log)
    for code in NEAR:
        assert code in html
    assert "龙坞单兵01" in html and f"conference {conference}" in html
    pdf = room.request.get(f"{node.base_url}/api/command/incidents/{incident}/export.pdf")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.body()[:5] == b"%PDF-"
    assert errors == []
    fctx.close()
    ctx.close()
