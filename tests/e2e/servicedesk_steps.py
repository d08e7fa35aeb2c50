"""The pension-statement case in Chromium, step by step, shared by the service desk's e2e tests:
on one node (tests/e2e/test_servicedesk_flow.py) and across tiers, the kiosk at a township node
and the agent at the county node (tests/e2e/test_servicedesk_tiers.py).

``pension_flow(kiosk, desk, kiosk_url, desk_url)`` drives both pages (Playwright, sync API; each
logged in at its own node) from choosing the item to the rating and returns the case as the desk's
node has it. What the users would notice is asserted on the way: each side decodes the other's
video and receives audio with energy; the kiosk's queue position; two document stills at more
than the call's resolution reach the agent, one is sent again on the agent's request; verified;
signed on the screen; the result PDF reaches the kiosk and carries the case number; rated; every
transition in order, the images attached, the call's recording with both sides.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import av
from PIL import Image
from playwright.sync_api import Page, expect
from pypdf import PdfReader

CALL_TIMEOUT_MS = 60_000  # readiness bound, not a performance assertion
PENSION = "rsj-pension-statement"
STATES = [
    "created",
    "identified",
    "queued",
    "in_service",
    "materials_checked",
    "signed",
    "submitted",
    "rated",
    "closed",
]


def wait_media(page: Page, timeout_ms: float = CALL_TIMEOUT_MS) -> None:
    """The other side's video decoded (25+ frames) and its audio received with energy."""
    call = page.get_by_test_id("call")
    expect(call).to_have_attribute("data-peer-state", "playing", timeout=timeout_ms)
    page.wait_for_function(
        "() => { const c = document.querySelector('[data-testid=\"call\"]');"
        " return c && Number(c.dataset.peerFrames) > 25"
        " && Number(c.dataset.peerAudioEnergy) > 0; }",
        timeout=timeout_ms,
    )


def jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "#f0e8d0").save(buf, "JPEG")
    return buf.getvalue()


def assert_both_sides(mp4: bytes) -> None:
    """The call's MP4 holds the kiosk's and the agent's video and audio, each decodable, with a
    duration."""
    with av.open(io.BytesIO(mp4)) as f:
        videos = [s for s in f.streams if s.type == "video"]
        audios = [s for s in f.streams if s.type == "audio"]
        assert len(videos) == 2 and len(audios) == 2, f.streams
        assert f.duration is not None and f.duration > 0
        decoded = {s.index: 0 for s in videos}
        for packet in f.demux(*videos):
            for _frame in packet.decode():
                decoded[packet.stream.index] += 1
        assert all(n > 10 for n in decoded.values()), decoded


def get_json(page: Page, url: str) -> Any:
    r = page.request.get(url)
    assert r.status == 200, (url, r.status, r.text())
    return json.loads(r.body())


def pension_flow(
    kiosk: Page,
    desk: Page,
    kiosk_url: str,
    desk_url: str,
    *,
    in_call: Callable[[], None] | None = None,
    timeout_ms: float = CALL_TIMEOUT_MS,
) -> dict[str, Any]:
    """The whole case; ``kiosk`` shows ``#/kiosk`` and ``desk`` ``#/desk``, each signed in at its
    node. ``in_call`` runs once both sides see and hear each other. Returns the closed case as the
    desk's node has it. A failure says what each page's problem box showed."""
    try:
        return _flow(kiosk, desk, kiosk_url, desk_url, in_call, timeout_ms)
    except AssertionError as e:
        shown = {
            name: page.locator("[data-testid$=-problem]").all_inner_texts()
            for name, page in (("kiosk", kiosk), ("desk", desk))
        }
        raise AssertionError(f"{e}\npages showed: {shown}") from e


def _flow(
    kiosk: Page,
    desk: Page,
    kiosk_url: str,
    desk_url: str,
    in_call: Callable[[], None] | None,
    timeout_ms: float,
) -> dict[str, Any]:
    kiosk.get_by_test_id(f"kiosk-item-{PENSION}").click()
    status = kiosk.get_by_test_id("kiosk-status")
    expect(status).to_have_attribute("data-state", "created", timeout=timeout_ms)
    kiosk.get_by_test_id("kiosk-read-card").click()
    expect(status).to_have_attribute("data-state", "identified", timeout=timeout_ms)
    kiosk.get_by_test_id("kiosk-take-number").click()
    expect(status).to_have_attribute("data-state", "queued", timeout=timeout_ms)
    expect(kiosk.get_by_test_id("kiosk-position")).to_have_attribute(
        "data-position", "1", timeout=timeout_ms
    )
    kiosk_case = kiosk.evaluate("() => sessionStorage.getItem('vmesh.kiosk.case')")
    number = get_json(kiosk, f"{kiosk_url}/api/servicedesk/cases/{kiosk_case}")["number"]
    expect(kiosk.get_by_test_id("kiosk-number")).to_contain_text(number[-4:])

    # The agent (at its own node) finds the villager in the queue and takes the next.
    listed = get_json(desk, f"{desk_url}/api/servicedesk/cases?state=queued")["items"]
    case_id = next(c["id"] for c in listed if c["number"] == number)
    case_url = f"{desk_url}/api/servicedesk/cases/{case_id}"
    expect(desk.get_by_test_id(f"desk-waiting-{case_id}")).to_contain_text("村", timeout=timeout_ms)
    desk.get_by_test_id("desk-next").click()
    expect(desk.get_by_test_id("desk-case-state")).to_have_text("办理中", timeout=timeout_ms)
    expect(status).to_have_attribute("data-state", "in_service", timeout=timeout_ms)

    # Both see and hear each other.
    wait_media(desk, timeout_ms)
    wait_media(kiosk, timeout_ms)
    if in_call is not None:
        in_call()

    # Two document stills: one from the document camera, one from a file.
    kiosk.get_by_test_id("kiosk-doc-name").fill("身份证")
    kiosk.get_by_test_id("kiosk-capture").click()
    materials = kiosk.locator('[data-testid^="kiosk-material-"]')
    expect(materials).to_have_count(1, timeout=timeout_ms)
    kiosk.get_by_test_id("kiosk-doc-name").fill("户口簿")
    kiosk.get_by_test_id("kiosk-doc-file").set_input_files(
        files=[{"name": "hukou.jpg", "mimeType": "image/jpeg", "buffer": jpeg(2480, 3508)}]
    )
    expect(materials).to_have_count(2, timeout=timeout_ms)

    case = get_json(desk, case_url)
    docs = [m for m in case["materials"] if m["kind"] == "document"]
    assert [m["name"] for m in docs] == ["身份证", "户口簿"]
    assert docs[0]["width"] > 640 and docs[1]["width"] == 2480  # stills, not call frames
    assert any(m["kind"] == "face" for m in case["materials"])

    # The agent asks for the ID card again; the kiosk is told and captures it again.
    expect(desk.get_by_test_id(f"desk-image-{docs[0]['id']}")).to_be_visible(timeout=timeout_ms)
    desk.get_by_test_id(f"desk-recapture-{docs[0]['id']}").click()
    expect(kiosk.get_by_test_id("kiosk-recapture")).to_contain_text("身份证", timeout=timeout_ms)
    expect(kiosk.get_by_test_id("kiosk-doc-name")).to_have_value("身份证")
    kiosk.get_by_test_id("kiosk-capture").click()
    expect(materials).to_have_count(3, timeout=timeout_ms)

    # The agent verifies the current pictures against the originals, then the materials.
    case = get_json(desk, case_url)
    current = [
        m for m in case["materials"] if m["kind"] == "document" and m["status"] == "received"
    ]
    assert len(current) == 2
    for m in current:
        desk.get_by_test_id(f"desk-rotate-{m['id']}").click()
        desk.get_by_test_id(f"desk-verify-{m['id']}").click()
        expect(desk.get_by_test_id(f"desk-material-status-{m['id']}")).to_have_text(
            "已核验", timeout=timeout_ms
        )
    desk.get_by_test_id("desk-check").click()
    expect(status).to_have_attribute("data-state", "materials_checked", timeout=timeout_ms)

    # The villager signs on the screen.
    pad = kiosk.get_by_test_id("kiosk-signature")
    box = pad.bounding_box()
    assert box is not None
    kiosk.mouse.move(box["x"] + 40, box["y"] + 120)
    kiosk.mouse.down()
    for step in range(1, 12):
        kiosk.mouse.move(box["x"] + 40 + step * 40, box["y"] + 120 - (step % 3) * 30)
    kiosk.mouse.up()
    kiosk.get_by_test_id("kiosk-sign-submit").click()
    expect(status).to_have_attribute("data-state", "signed", timeout=timeout_ms)

    # The agent fills the item's form and issues the result; the kiosk receives the PDF.
    expect(desk.get_by_test_id("desk-case-state")).to_have_text("已签名", timeout=timeout_ms)
    desk.get_by_test_id("desk-form-year").fill("2025")
    desk.get_by_test_id("desk-outcome").fill("已出具2025年度养老保险缴费结算单")
    desk.get_by_test_id("desk-submit").click()
    download = kiosk.get_by_test_id("kiosk-result-download")
    expect(download).to_be_visible(timeout=timeout_ms)
    pdf = kiosk.request.get(kiosk_url + str(download.get_attribute("href")))
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(
        PdfReader(io.BytesIO(pdf.body())).pages[0].extract_text().replace("\x00", "").split()
    )
    assert "养老保险缴费结算单" in text and number in text

    kiosk.get_by_test_id("kiosk-rate-5").click()
    expect(kiosk.get_by_test_id("kiosk-thanks")).to_be_visible(timeout=timeout_ms)

    final = get_json(desk, case_url)
    assert final["state"] == "closed" and final["rating"] == 5
    assert [e["to"] for e in final["events"]] == STATES
    statuses = sorted(m["status"] for m in final["materials"] if m["kind"] == "document")
    assert statuses == ["superseded", "verified", "verified"]
    for m in final["materials"]:
        assert desk.request.get(desk_url + m["url"]).status == 200

    # The call's recording, both sides from the switch, is listed on the case at the desk.
    expect(desk.get_by_test_id("desk-recordings")).to_be_visible(timeout=timeout_ms)
    final = get_json(desk, case_url)
    assert len(final["recordings"]) == 1, final["recordings"]
    mp4 = desk.request.get(desk_url + final["recordings"][0]["url"])
    assert mp4.status == 200 and mp4.headers["content-type"] == "video/mp4"
    assert_both_sides(mp4.body())
    return final
