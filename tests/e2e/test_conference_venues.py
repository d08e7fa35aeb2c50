"""A conference in Debian's Chromium against a real node: three venues, each its own browser with a
fake camera of its own colour and a fake microphone of its own tone, and a chair's page.

The main venue (province, red, 440 Hz), a city venue (green, 880 Hz) and a county venue (blue,
1320 Hz) open their venue pages; the chair steers from the chair page. The tests read what each
venue's browser actually receives: the colour decoded in a tile (centre pixel of the ``<video>``),
the tones in its audio slots (WebAudio analyser), whether a re-route kept the same
``RTCPeerConnection``; and what the chair's page shows. They run in order on one conference.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from e2e.console_node import CHROMIUM, Node, log_in
from e2e.fake_devices import (
    HEARD_DB,
    IS_COLOUR_JS,
    PALETTE,
    SENSE_JS,
    TcpRelay,
    browser_args,
    fake_media,
)
from media_site import ADMIN, PROVINCE, XIHU, api, hang_up_viewers, login_cookie, media_node

pytestmark = pytest.mark.e2e

WAIT_MS = 60_000  # readiness bound, not a performance assertion
CITY_REGION = "33010000002166000001"
MAIN = "33000000004000000001"
CITY = "33010000004000000001"
COUNTY = "33010600004000000001"
VENUES = {
    MAIN: ("省主会场", PROVINCE, "red", 440),
    CITY: ("杭州市分会场", CITY_REGION, "green", 880),
    COUNTY: ("西湖区分会场", XIHU, "blue", 1320),
}
TONES = [v[3] for v in VENUES.values()]
CHAIR2 = ("chair_b", "Chair-b-2024!")
AUDIO = ["a0", "a1", "a2", "a3"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    try:
        n = media_node(tmp_path_factory.mktemp("conference"), channels=36, linger=2.0)
    except pytest.fail.Exception:
        # Another test run on this machine may have taken the same UDP block while its Janus was
        # still starting (the block looked free): take the next block once.
        n = media_node(tmp_path_factory.mktemp("conference"), channels=36, linger=2.0)
    try:
        cookie = login_cookie(n, *ADMIN)
        for code, (name, parent, _, _) in VENUES.items():
            body = {
                "code": code,
                "parent_code": parent,
                "kind": "conference_terminal",
                "name": name,
            }
            api(n, cookie, "POST", "/directory/entries", body)
        n.add_user(*CHAIR2, roles=("chair",), scope=PROVINCE, display_name="第二主席")
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def conference(node: Node) -> int:
    cookie = login_cookie(node, *ADMIN)
    body = {
        "title": "全省防汛视频会",
        "main": MAIN,
        "venues": [CITY, COUNTY],
        "chairs": [ADMIN[0], CHAIR2[0]],
        "recording": True,
    }
    return int(api(node, cookie, "POST", "/conferences", body)["id"])


@pytest.fixture(scope="module")
def browsers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    folder = tmp_path_factory.mktemp("fake")
    with sync_playwright() as pw:
        out: dict[str, Any] = {}
        try:
            for code, (_, _, colour, tone) in VENUES.items():
                y4m, wav = fake_media(folder, code, colour, tone)
                out[code] = pw.chromium.launch(
                    executable_path=str(CHROMIUM), args=browser_args(y4m, wav)
                )
            yield out
        finally:
            for b in out.values():
                b.close()


def open_page(browser: Any, base_url: str, user: tuple[str, str], hash_: str) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    context.set_default_timeout(20_000)
    context.add_init_script(SENSE_JS)
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
    log_in(page, base_url, *user, hash_, timeout_ms=WAIT_MS)
    return page


@pytest.fixture(scope="module")
def county_link(node: Node) -> Iterator[TcpRelay]:
    """The county venue's network to the node (HTTP and WebSocket), which a test cuts."""
    relay = TcpRelay(int(node.base_url.rsplit(":", 1)[1]))
    try:
        yield relay
    finally:
        relay.close()


@pytest.fixture(scope="module")
def venues(
    browsers: dict[str, Any], node: Node, conference: int, county_link: TcpRelay
) -> Iterator[dict[str, Page]]:
    base = {MAIN: node.base_url, CITY: node.base_url, COUNTY: county_link.base_url}
    pages = {
        code: open_page(b, base[code], ADMIN, f"#/venue/{conference}/{code}")
        for code, b in browsers.items()
    }
    try:
        for p in pages.values():
            expect(p.get_by_test_id("venue-state")).to_have_attribute(
                "data-state", "joined", timeout=WAIT_MS
            )
        yield pages
    finally:
        for p in pages.values():
            p.context.close()


@pytest.fixture(scope="module")
def chair(browsers: dict[str, Any], node: Node, conference: int, venues: dict[str, Page]) -> Page:
    page = open_page(browsers[MAIN], node.base_url, ADMIN, f"#/chair/{conference}")
    for code in VENUES:
        expect(page.get_by_test_id(f"chair-venue-{code}")).to_have_attribute(
            "data-status", "joined", timeout=WAIT_MS
        )
    return page


# --- what a venue receives ----------------------------------------------------------------------


def media(tile: str) -> str:
    return f'[data-testid="venue-media-{tile}"]'


def what_it_shows(page: Page) -> str:
    """The venue page's own account of itself, for a failed wait's message."""
    return str(
        page.evaluate(
            """() => JSON.stringify({
                state: document.querySelector('[data-testid="venue-state"]')?.textContent,
                publish: document.querySelector('[data-testid="venue-publish-state"]')?.textContent,
                problem: document.querySelector('[data-testid="venue-problem"]')?.textContent,
                layout: document.querySelector('[data-testid="venue-grid"]')?.dataset.layout,
                tiles: [...document.querySelectorAll('[data-tile]')].map((t) => ({...t.dataset,
                    label: t.querySelector('.tile-label')?.textContent})),
                colours: [...document.querySelectorAll('video[data-testid^="venue-media-v"]')].map(
                    (v) => [v.dataset.testid,
                            window.__vm.colour(`[data-testid="${v.dataset.testid}"]`),
                            v.videoWidth, v.readyState]),
            })"""
        )
    )


def wait_for(page: Page, script: str, arg: Any, what: str) -> None:
    """``page.wait_for_function`` that, when it times out, says what the page showed instead."""
    try:
        page.wait_for_function(script, arg=arg, timeout=WAIT_MS, polling=250)
    except PlaywrightTimeout:
        pytest.fail(f"{what} not seen within {WAIT_MS} ms; the page showed {what_it_shows(page)}")


def wait_colour(page: Page, tile: str, colour: str) -> None:
    """Until ``tile`` of ``page`` decodes ``colour`` (nearest of the palette)."""
    wait_for(page, IS_COLOUR_JS, [media(tile), colour, PALETTE], f"{colour} in tile {tile}")


def wait_hears(page: Page, tone: int, heard: bool = True) -> None:
    """Until one of the page's audio slots carries ``tone`` (or, ``heard=False``, none does)."""
    wait_for(
        page,
        """([sels, tone, db, heard]) => {
            const any = sels.some((s) => window.__vm.tones(s, [tone])[0] > db);
            return any === heard;
        }""",
        [[media(a) for a in AUDIO], tone, HEARD_DB, heard],
        f"{tone} Hz {'heard' if heard else 'silent'}",
    )


def tone_levels(page: Page) -> list[list[float]]:
    return page.evaluate(
        "([sels, tones]) => sels.map((s) => window.__vm.tones(s, tones))",
        [[media(a) for a in AUDIO], TONES],
    )


def never_hears(page: Page, tone: int, samples: int = 12) -> None:
    """Sample the slots a few times: ``tone`` is never above the threshold in any of them."""
    i = TONES.index(tone)
    for _ in range(samples):
        levels = tone_levels(page)
        assert all(slot[i] <= HEARD_DB for slot in levels), levels
        page.wait_for_timeout(250)


def pc_id(page: Page, tile: str) -> str:
    sel = f'[data-testid="venue-tile-{tile}"]'
    wait_for(
        page, "(sel) => document.querySelector(sel)?.dataset.pcId", sel, f"a connection in {tile}"
    )
    return str(page.locator(sel).get_attribute("data-pc-id"))


def act(node: Node, conference: int, body: dict[str, Any]) -> dict[str, Any]:
    path = f"/conferences/{conference}/actions"
    return api(node, login_cookie(node, *ADMIN), "POST", path, body)  # type: ignore[no-any-return]


# --- the tests, in order --------------------------------------------------------------------------


def test_venues_join_and_see_and_hear_the_main_venue(venues: dict[str, Page], chair: Page) -> None:
    for code in (CITY, COUNTY):
        wait_colour(venues[code], "v0", "red")
        wait_hears(venues[code], 440)
    # The main venue sees a sub-venue and hears nobody (sub-venues are not speaking).
    wait_colour(venues[MAIN], "v0", "green")
    expect(chair.get_by_test_id(f"chair-venue-{MAIN}")).to_have_attribute("data-speaking", "true")


def test_roll_call_the_county_every_other_venue_sees_and_hears_it_not_itself(
    venues: dict[str, Page], chair: Page
) -> None:
    before = {code: pc_id(venues[code], "v0") for code in (MAIN, CITY)}
    chair.get_by_test_id(f"chair-rollcall-{COUNTY}").click()
    expect(chair.get_by_test_id("chair-mode")).to_have_attribute("data-mode", "roll_call")
    for code in (MAIN, CITY):
        wait_colour(venues[code], "v0", "blue")
        wait_hears(venues[code], 1320)
        # Same connection, only the picture changed: no renegotiation at the venue.
        assert pc_id(venues[code], "v0") == before[code]
    county = venues[COUNTY]
    wait_hears(county, 440)  # it hears the main venue…
    never_hears(county, 1320)  # …and never itself
    expect(county.get_by_test_id("venue-mode")).to_have_attribute("data-mode", "roll_call")


def test_broadcast_every_venue_sees_the_city(
    venues: dict[str, Page], chair: Page, node: Node, conference: int
) -> None:
    chair.get_by_test_id(f"chair-broadcast-{CITY}").click()
    expect(chair.get_by_test_id("chair-mode")).to_have_attribute("data-mode", "broadcast")
    wait_colour(venues[MAIN], "v0", "green")
    wait_colour(venues[COUNTY], "v0", "green")
    # Broadcast is pictures: the county stepped back and is heard no more.
    wait_hears(venues[MAIN], 1320, heard=False)


def test_mute_and_unmute_a_speaking_venue(
    venues: dict[str, Page], node: Node, conference: int
) -> None:
    act(node, conference, {"action": "roll_call", "venue": CITY})
    wait_hears(venues[COUNTY], 880)
    act(node, conference, {"action": "mute", "venue": CITY})
    wait_hears(venues[COUNTY], 880, heard=False)
    wait_hears(venues[MAIN], 880, heard=False)
    act(node, conference, {"action": "unmute", "venue": CITY})
    wait_hears(venues[COUNTY], 880)


def test_hand_raise_and_approve(venues: dict[str, Page], chair: Page) -> None:
    chair.get_by_test_id("chair-stop").click()
    expect(chair.get_by_test_id("chair-mode")).to_have_attribute("data-mode", "idle")
    county = venues[COUNTY]
    county.get_by_test_id("venue-hand").click()
    expect(chair.get_by_test_id(f"chair-venue-{COUNTY}")).to_have_attribute("data-hand", "true")
    expect(county.get_by_test_id("venue-hand")).to_have_attribute("data-raised", "true")
    chair.get_by_test_id(f"chair-approve-{COUNTY}").click()
    expect(chair.get_by_test_id(f"chair-venue-{COUNTY}")).to_have_attribute("data-hand", "false")
    wait_colour(venues[MAIN], "v0", "blue")
    wait_colour(venues[CITY], "v0", "blue")
    wait_hears(venues[CITY], 1320)


def test_polling_cycles_the_picture_through_the_venues(
    venues: dict[str, Page], node: Node, conference: int
) -> None:
    act(node, conference, {"action": "polling", "venues": [CITY, COUNTY], "seconds": 2})
    page = venues[MAIN]
    before = pc_id(page, "v0")
    for colour in ("green", "blue", "green"):
        wait_colour(page, "v0", colour)
    assert pc_id(page, "v0") == before


def test_layout_push_reaches_every_venue(venues: dict[str, Page], chair: Page) -> None:
    chair.get_by_test_id("chair-stop").click()
    chair.get_by_test_id("chair-layout").select_option("2x2")
    # Main venue first, then the others in conference order; never the venue itself.
    expected = {MAIN: ("green", "blue"), CITY: ("red", "blue"), COUNTY: ("red", "green")}
    for code, page in venues.items():
        grid = page.get_by_test_id("venue-grid")
        expect(grid).to_have_attribute("data-layout", "2x2", timeout=WAIT_MS)
        expect(grid.locator(".venue-tile")).to_have_count(4)
        for tile, colour in zip(("v0", "v1"), expected[code], strict=True):
            wait_colour(page, tile, colour)
    chair.get_by_test_id("chair-layout").select_option("1+1")
    expect(venues[MAIN].get_by_test_id("venue-grid").locator(".venue-tile")).to_have_count(
        2, timeout=WAIT_MS
    )


def test_content_sharing_reaches_every_other_venue(venues: dict[str, Page], chair: Page) -> None:
    county = venues[COUNTY]
    county.get_by_test_id("venue-share").click()
    for code in (MAIN, CITY):
        tile = venues[code].get_by_test_id("venue-tile-c")
        expect(tile).to_have_attribute("data-code", f"{COUNTY}-content", timeout=WAIT_MS)
        venues[code].wait_for_function(
            "() => Number(document.querySelector('[data-testid=\"venue-tile-c\"]')"
            ".dataset.framesDecoded || 0) > 5",
            timeout=WAIT_MS,
        )
    expect(county.get_by_test_id("venue-tile-c")).to_have_count(0)
    expect(chair.get_by_test_id(f"chair-venue-{COUNTY}")).to_have_attribute("data-status", "joined")
    county.get_by_test_id("venue-share").click()  # stop sharing: the content tile goes away
    expect(venues[MAIN].get_by_test_id("venue-tile-c")).to_have_count(0, timeout=WAIT_MS)


@pytest.fixture(scope="module")
def chair2(browsers: dict[str, Any], node: Node, conference: int) -> Iterator[Page]:
    page = open_page(browsers[CITY], node.base_url, CHAIR2, f"#/chair/{conference}")
    try:
        yield page
    finally:
        page.context.close()


def test_a_chair_leaves_the_conference_goes_on_and_a_second_chair_takes_over(
    venues: dict[str, Page], chair: Page, chair2: Page, node: Node
) -> None:
    chair.context.close()
    wait_colour(venues[CITY], "v0", "red")  # the venues still receive the main venue
    expect(chair2.get_by_test_id(f"chair-venue-{CITY}")).to_have_attribute(
        "data-status", "joined", timeout=WAIT_MS
    )
    chair2.get_by_test_id(f"chair-rollcall-{CITY}").click()
    expect(chair2.get_by_test_id("chair-mode")).to_have_attribute("data-mode", "roll_call")
    wait_colour(venues[MAIN], "v0", "green")
    wait_colour(venues[COUNTY], "v0", "green")
    rows = api(node, login_cookie(node, *ADMIN), "GET", "/audit?action=conference.roll_call")
    assert any(r["username"] == CHAIR2[0] for r in rows["items"]), rows


def test_a_venue_that_drops_shows_as_dropped_and_rejoins_by_itself(
    venues: dict[str, Page], chair2: Page, county_link: TcpRelay, node: Node, conference: int
) -> None:
    county = venues[COUNTY]
    row = chair2.get_by_test_id(f"chair-venue-{COUNTY}")
    county_link.cut()  # the county's network to the node fails
    expect(county.get_by_test_id("venue-state")).to_have_attribute(
        "data-state", "dropped", timeout=WAIT_MS
    )
    expect(row).to_have_attribute("data-status", "dropped", timeout=WAIT_MS)
    expect(chair2.get_by_test_id(f"chair-status-{COUNTY}")).to_have_text("已掉线")
    county_link.restore()
    expect(county.get_by_test_id("venue-state")).to_have_attribute(
        "data-state", "joined", timeout=WAIT_MS
    )
    expect(row).to_have_attribute("data-status", "joined", timeout=WAIT_MS)
    wait_colour(venues[MAIN], "v0", "green")  # the city kept the floor
    wait_colour(county, "v0", "green")  # and the county receives it again
    att = api(node, login_cookie(node, *ADMIN), "GET", f"/conferences/{conference}/attendance")
    county_rows = [a for a in att if a["venue"] == COUNTY]
    assert len(county_rows) >= 2 and county_rows[0]["left_at"] is not None, att
    assert county_rows[-1]["left_at"] is None
    for p in venues.values():
        assert p.errors == [], p.errors  # type: ignore[attr-defined]


def test_when_every_media_connection_fails_the_venues_recover_on_their_own(
    venues: dict[str, Page], node: Node, conference: int
) -> None:
    """Janus hangs up every venue's camera and every picture it receives, as when ICE fails (an
    interface went away): the pages publish and watch again by themselves, on the same socket.
    Attendance tells the truth: each venue's camera was gone for a moment, and is back."""
    assert hang_up_viewers(node, "janus.plugin.videoroom") == 3  # the three cameras
    assert hang_up_viewers(node) >= 3  # what the venues watch
    for code in (MAIN, COUNTY):
        wait_colour(venues[code], "v0", "green")  # the city still has the floor
        wait_hears(venues[code], 880)
    for p in venues.values():
        expect(p.get_by_test_id("venue-publish-state")).to_have_attribute(
            "data-state", "publishing", timeout=WAIT_MS
        )
        expect(p.get_by_test_id("venue-state")).to_have_attribute("data-state", "joined")
    att = api(node, login_cookie(node, *ADMIN), "GET", f"/conferences/{conference}/attendance")
    for code in VENUES:
        last = [a for a in att if a["venue"] == code][-1]
        assert last["left_at"] is None, att
    for p in venues.values():
        assert p.errors == [], p.errors  # type: ignore[attr-defined]


def test_attendance_and_chair_actions_are_recorded(node: Node, conference: int) -> None:
    cookie = login_cookie(node, *ADMIN)
    att = api(node, cookie, "GET", f"/conferences/{conference}/attendance")
    assert {a["venue"] for a in att} == set(VENUES)
    rows = api(node, cookie, "GET", "/audit?limit=200")["items"]
    actions = {r["action"] for r in rows if r["action"].startswith("conference.")}
    assert {
        "conference.create",
        "conference.roll_call",
        "conference.broadcast",
        "conference.mute",
        "conference.unmute",
        "conference.hand",
        "conference.approve",
        "conference.polling",
        "conference.layout",
    } <= actions


def test_the_programme_is_recorded_into_mp4_segments(
    node: Node, conference: int, chair2: Page
) -> None:
    cookie = login_cookie(node, *ADMIN)
    segs = api(node, cookie, "GET", f"/conferences/{conference}/recordings")
    done = [s for s in segs if s["complete"] and s["bytes"] > 0]
    assert done, segs
    req = urllib.request.Request(
        f"{node.base_url}/api/conferences/{conference}/recordings/{done[-1]['name']}",
        headers={"Cookie": cookie},
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        assert r.headers["content-type"] == "video/mp4"
        body = r.read()
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width", "-of", "json", "-"],
        input=body,
        capture_output=True,
        check=True,
    )
    streams = json.loads(probe.stdout)["streams"]
    assert {"codec_name": "h264", "width": 320} in streams, streams
    bad = urllib.request.Request(
        f"{node.base_url}/api/conferences/{conference}/recordings/..%2Fsecrets.json",
        headers={"Cookie": cookie},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad, timeout=20)
    assert e.value.code in (404, 422)
    # The chair's page lists the segments and Chromium plays one back.
    chair2.get_by_test_id("chair-recordings-refresh").click()
    first = chair2.get_by_test_id("chair-recordings").locator("video").first
    expect(first).to_be_attached(timeout=WAIT_MS)
    chair2.wait_for_function(
        "() => { const v = document.querySelector('[data-testid=\"chair-recordings\"] video');"
        " return v && v.readyState >= 1 && v.duration > 0 && v.videoWidth === 320; }",
        timeout=WAIT_MS,
    )


def test_a_venue_page_outside_the_conference_is_refused(
    browsers: dict[str, Any], node: Node, conference: int
) -> None:
    page = open_page(browsers[MAIN], node.base_url, ADMIN, f"#/venue/{conference}/{XIHU}")
    try:
        expect(page.get_by_test_id("venue-problem")).to_contain_text("not a venue of conference")
    finally:
        page.context.close()
