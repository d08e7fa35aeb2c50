"""Live video in Debian's Chromium against a real node (switch + Janus + ffmpeg cameras).

One node serves the module (``tests/media_site.py``: synthetic cameras, each with its own colour
patch in the top-left quarter of its picture). The tests read what a user would see: the tile's
state, frames the browser decoded (``getStats``), the decoded resolution, and the colour of the
patch in the video frame drawn onto a canvas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from e2e.console_node import Node, launch_chromium, log_in, media_browser_args
from media_site import (
    BIG_CAMERA,
    CAMERAS,
    XIHU_OPERATOR,
    camera_code,
    hang_up_viewers,
    media_node,
)

pytestmark = pytest.mark.e2e

# Readiness bounds (how long to wait for a state), not performance assertions.
PLAY_TIMEOUT_MS = 45_000


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = media_node(tmp_path_factory.mktemp("live"), channels=18, linger=2.0)
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with launch_chromium(media_browser_args()) as b:
        yield b


def frames(page: Page, tile: str) -> int:
    v = page.get_by_test_id(f"tile-{tile}").get_attribute("data-frames-decoded")
    return int(v or 0)


def wait_frames_above(page: Page, tile: str, n: int) -> None:
    page.wait_for_function(
        '([t, n]) => Number(document.querySelector(`[data-testid="tile-${t}"]`)'
        ".dataset.framesDecoded || 0) > n",
        arg=[tile, n],
        timeout=PLAY_TIMEOUT_MS,
    )


# The mean colour of a 9x9 block at the centre of the colour patch (x, y = width/8, height/8) of
# the frame the <video> shows, drawn onto a canvas.
PATCH_JS = """(t) => {
  const v = document.querySelector(`[data-testid="tile-${t}-video"]`);
  if (!v || !v.videoWidth) return null;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0);
  const x = Math.floor(c.width / 8) - 4, y = Math.floor(c.height / 8) - 4;
  const d = g.getImageData(x, y, 9, 9).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) { sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2]; }
  const n = d.length / 4;
  return sum.map((s) => Math.round(s / n));
}"""


def rgb(hex_: str) -> tuple[int, int, int]:
    return (int(hex_[1:3], 16), int(hex_[3:5], 16), int(hex_[5:7], 16))


def nearest(color: list[int], candidates: dict[str, str]) -> str:
    """The camera (code) whose patch colour is nearest to ``color``."""
    return min(
        candidates,
        key=lambda code: sum(
            (a - b) ** 2 for a, b in zip(color, rgb(candidates[code]), strict=True)
        ),
    )


def patch_color(code: str) -> str:
    return str(CAMERAS[code]["attrs"]["color"])  # type: ignore[index]


def wait_patch_of(page: Page, tile: str, code: str, among: list[str]) -> None:
    """Wait until the tile's colour patch is nearest to ``code``'s among ``among``."""
    palette = {c: patch_color(c) for c in among}
    page.wait_for_function(
        f"""([t, want, palette]) => {{
          const px = ({PATCH_JS})(t);
          if (!px) return false;
          let best = null, bestD = Infinity;
          for (const [code, hex] of Object.entries(palette)) {{
            const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
            const d = c.reduce((s, v, i) => s + (v - px[i]) ** 2, 0);
            if (d < bestD) {{ bestD = d; best = code; }}
          }}
          return best === want;
        }}""",
        arg=[tile, code, palette],
        timeout=PLAY_TIMEOUT_MS,
    )


def test_synthetic_camera_plays_at_its_configured_resolution(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_=f"#/dir/{BIG_CAMERA}")
    page.get_by_test_id("detail-watch").click()
    tile = page.get_by_test_id("tile-0")
    expect(tile).to_have_attribute("data-state", "playing", timeout=PLAY_TIMEOUT_MS)
    expect(page.get_by_test_id("tile-0-state")).to_have_text("播放中")
    wait_frames_above(page, "0", 0)
    first = frames(page, "0")
    wait_frames_above(page, "0", first + 25)
    assert tile.get_attribute("data-width") == "640"
    assert tile.get_attribute("data-height") == "360"
    expect(page.get_by_test_id("tile-0-stats")).to_contain_text("640×360")
    expect(page.get_by_test_id("tile-0-name")).to_have_text("龙坞高清摄像机")
    colour = page.evaluate(PATCH_JS, "0")
    others = {c: patch_color(c) for c in (camera_code(1), camera_code(3), BIG_CAMERA)}
    assert nearest(colour, others) == BIG_CAMERA, colour
    # The view is in the audit log, by this user, with the camera's code.
    r = page.request.get(f"{node.base_url}/api/audit?action=live.view&target={BIG_CAMERA}")
    rows = json.loads(r.body())["items"]
    assert any(x["username"] == XIHU_OPERATOR[0] and x["result"] == "ok" for x in rows), rows
    assert page.errors == []


def test_polling_tile_switches_cameras_on_the_same_peer_connection(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    red, blue = camera_code(1), camera_code(3)
    page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_="#/wall")
    page.get_by_test_id("layout-1").click()
    page.get_by_test_id("poll-interval").fill("3")
    page.get_by_test_id(f"camera-poll-{red}").check()
    page.get_by_test_id(f"camera-poll-{blue}").check()
    page.get_by_test_id("tile-0-poll-start").click()
    tile = page.get_by_test_id("tile-0")
    expect(tile).to_have_attribute("data-state", "playing", timeout=PLAY_TIMEOUT_MS)
    expect(page.get_by_test_id("tile-0-poll")).to_contain_text("1/2")
    wait_patch_of(page, "0", red, [red, blue])
    wait_frames_above(page, "0", 0)  # the overlay has sampled getStats (and the connection's id)
    pc = tile.get_attribute("data-pc")
    assert pc
    before = frames(page, "0")
    wait_patch_of(page, "0", blue, [red, blue])
    expect(page.get_by_test_id("tile-0-poll")).to_contain_text("2/2")
    wait_frames_above(page, "0", before + 25)
    assert tile.get_attribute("data-pc") == pc, "polling must not renegotiate"
    after_blue = frames(page, "0")
    wait_patch_of(page, "0", red, [red, blue])
    wait_frames_above(page, "0", after_blue)
    assert tile.get_attribute("data-pc") == pc
    assert page.errors == []


def test_sixteen_tile_wall_decodes_all_sixteen(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    codes = [camera_code(n) for n in range(1, 17)]
    page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_="#/wall")
    page.get_by_test_id("layout-16").click()
    expect(page.locator("[data-testid^='tile-'][data-state]")).to_have_count(16)
    # Tile 0 by drag and drop; the others by click-to-assign (click the camera, then the tile).
    page.get_by_test_id(f"camera-{codes[0]}").drag_to(page.get_by_test_id("tile-0"))
    for i, code in enumerate(codes[1:], start=1):
        page.get_by_test_id(f"camera-{code}").click()
        page.get_by_test_id(f"tile-{i}").click(position={"x": 40, "y": 40})
    for i, code in enumerate(codes):
        tile = page.get_by_test_id(f"tile-{i}")
        expect(tile).to_have_attribute("data-code", code)
        expect(tile).to_have_attribute("data-state", "playing", timeout=PLAY_TIMEOUT_MS)
        wait_frames_above(page, str(i), 0)
    for i in range(16):
        wait_frames_above(page, str(i), frames(page, str(i)))
        assert page.get_by_test_id(f"tile-{i}").get_attribute("data-width") == "320"
    assert page.errors == []


def test_camera_without_a_source_shows_the_reason(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    from media_site import NO_SOURCE_CAMERA

    page = pages()
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_=f"#/wall/{NO_SOURCE_CAMERA}")
    tile = page.get_by_test_id("tile-0")
    expect(tile).to_have_attribute("data-state", "error", timeout=PLAY_TIMEOUT_MS)
    expect(page.get_by_test_id("tile-0-state")).to_contain_text("no video source")


def playing_wall_tile(
    page: Page, node: Node, code: str
) -> tuple[Page, Locator, list[dict[str, object]]]:
    """The wall with ``code`` playing in tile 0, and every message the page's sockets receive."""
    received: list[dict[str, object]] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda f: received.append(json.loads(f))),
    )
    log_in(page, node.base_url, *XIHU_OPERATOR, hash_=f"#/wall/{code}")
    tile = page.get_by_test_id("tile-0")
    expect(tile).to_have_attribute("data-state", "playing", timeout=PLAY_TIMEOUT_MS)
    wait_frames_above(page, "0", 0)
    return page, tile, received


def test_a_stopped_tile_is_idle_not_an_error(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    page, tile, received = playing_wall_tile(pages(), node, camera_code(2))
    page.get_by_test_id("tile-0-stop").click()
    # The node's "stopped" comes after anything it said about the tile's closed connection.
    for _ in range(100):
        if any(m.get("type") == "status" and m.get("state") == "stopped" for m in received):
            break
        page.wait_for_timeout(100)
    assert any(m.get("state") == "stopped" for m in received), received
    expect(tile).to_have_attribute("data-state", "idle")
    expect(page.get_by_test_id("tile-0-state")).to_have_text("空闲")
    assert page.errors == []


def test_a_tile_whose_connection_fails_plays_again_by_itself(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    """Janus hangs the viewer's connection up (as when ICE fails because a network interface went
    away): the node says so with ``retry``, and the page opens the tile again on its own."""
    page, tile, received = playing_wall_tile(pages(), node, camera_code(4))
    pc = tile.get_attribute("data-pc")
    assert pc
    assert hang_up_viewers(node) >= 1
    page.wait_for_function(
        "(pc) => { const t = document.querySelector('[data-testid=\"tile-0\"]');"
        " return t.dataset.pc && t.dataset.pc !== pc && t.dataset.state === 'playing'; }",
        arg=pc,
        timeout=PLAY_TIMEOUT_MS,
    )
    wait_frames_above(page, "0", 0)
    wait_patch_of(page, "0", camera_code(4), [camera_code(n) for n in range(1, 6)])
    failed = [m for m in received if m.get("type") == "status" and m.get("state") == "error"]
    assert failed and all(m.get("retry") is True for m in failed), failed
    assert "connection closed by the video edge" in str(failed[0]["reason"]), failed
    assert page.errors == []
