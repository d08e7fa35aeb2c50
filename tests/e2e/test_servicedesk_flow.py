"""The remote service desk in Debian's Chromium against a real node (switch + Janus): the whole
pension-statement case between a village kiosk and a county agent, each in its own browser with
fake camera and microphone (two fake cameras: the room camera and the document camera).

What the users would notice is asserted: each side decodes the other's video and receives audio
with energy; the kiosk's queue position; two document stills at more than the call's resolution
reach the agent, one is sent again on the agent's request; verified; signed on the screen; the
result PDF reaches the kiosk and carries the case number; rated; and the case shows every
transition in order with the images attached and both publications audited.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import av
import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from e2e.console_node import Node, launch_chromium, log_in, media_browser_args
from media_site import ADMIN, BLOCK, VILLAGE, XIHU, api, free_udp_block, login_cookie, media_node

pytestmark = pytest.mark.e2e

CALL_TIMEOUT_MS = 60_000  # readiness bound, not a performance assertion
KIOSK = "33010601004010000001"  # 龙坞村视频室
SEAT = "33010600004010000001"  # 西湖区政务服务中心 1 号窗口
KIOSK_USER = ("longwu_room", "Lw-kiosk-2024!")
AGENT = ("xihu_agent", "Xh-agent-2024!")
PENSION = "rsj-pension-statement"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    # A block of its own, not the first free one: other suites on this machine pick that one too.
    free_udp_block(BLOCK)
    n = media_node(
        tmp_path_factory.mktemp("servicedesk"),
        channels=4,
        port_base=free_udp_block(BLOCK),
        extra_toml="\n[servicedesk]\nsample_catalogue = true\n",
    )
    try:
        cookie = login_cookie(n, *ADMIN)
        for code, parent, name in (
            (KIOSK, VILLAGE, "龙坞村视频室"),
            (SEAT, XIHU, "西湖区政务服务中心1号窗口"),
        ):
            body = {"code": code, "parent_code": parent, "kind": "service_room", "name": name}
            api(n, cookie, "POST", "/directory/entries", body)
        n.add_user(*KIOSK_USER, roles=("operator",), scope=VILLAGE, display_name="龙坞村视频室")
        n.add_user(*AGENT, roles=("agent",), scope=XIHU, display_name="西湖区坐席")
        api(
            n,
            cookie,
            "PUT",
            f"/servicedesk/agents/{AGENT[0]}",
            {"groups": {"social": 1, "civil": 2}, "seat_code": SEAT},
        )
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    # Two fake cameras: the room camera and the document camera (高拍仪).
    with launch_chromium(media_browser_args(fake_devices=2)) as b:
        yield b


def wait_media(page: Page) -> None:
    """The other side's video decoded (25+ frames) and its audio received with energy."""
    call = page.get_by_test_id("call")
    expect(call).to_have_attribute("data-peer-state", "playing", timeout=CALL_TIMEOUT_MS)
    page.wait_for_function(
        "() => { const c = document.querySelector('[data-testid=\"call\"]');"
        " return c && Number(c.dataset.peerFrames) > 25"
        " && Number(c.dataset.peerAudioEnergy) > 0; }",
        timeout=CALL_TIMEOUT_MS,
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


def test_the_pension_statement_from_kiosk_to_rating(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    kiosk = pages()
    log_in(kiosk, node.base_url, *KIOSK_USER, hash_="#/kiosk")
    kiosk.get_by_test_id(f"kiosk-item-{PENSION}").click()
    status = kiosk.get_by_test_id("kiosk-status")
    expect(status).to_have_attribute("data-state", "created")
    kiosk.get_by_test_id("kiosk-read-card").click()
    expect(status).to_have_attribute("data-state", "identified", timeout=CALL_TIMEOUT_MS)
    kiosk.get_by_test_id("kiosk-take-number").click()
    expect(status).to_have_attribute("data-state", "queued")
    expect(kiosk.get_by_test_id("kiosk-position")).to_have_attribute("data-position", "1")
    case_id = kiosk.evaluate("() => sessionStorage.getItem('vmesh.kiosk.case')")

    desk = pages()
    log_in(desk, node.base_url, *AGENT, hash_="#/desk")
    expect(desk.get_by_test_id(f"desk-waiting-{case_id}")).to_contain_text("龙坞村")
    desk.get_by_test_id("desk-next").click()
    expect(desk.get_by_test_id("desk-case-state")).to_have_text("办理中")
    expect(status).to_have_attribute("data-state", "in_service", timeout=CALL_TIMEOUT_MS)

    # Both see and hear each other.
    wait_media(desk)
    wait_media(kiosk)

    # Two document stills: one from the document camera, one from a file.
    kiosk.get_by_test_id("kiosk-doc-name").fill("身份证")
    kiosk.get_by_test_id("kiosk-capture").click()
    expect(kiosk.locator('[data-testid^="kiosk-material-"]')).to_have_count(
        1, timeout=CALL_TIMEOUT_MS
    )
    kiosk.get_by_test_id("kiosk-doc-name").fill("户口簿")
    kiosk.get_by_test_id("kiosk-doc-file").set_input_files(
        files=[{"name": "hukou.jpg", "mimeType": "image/jpeg", "buffer": jpeg(2480, 3508)}]
    )
    expect(kiosk.locator('[data-testid^="kiosk-material-"]')).to_have_count(
        2, timeout=CALL_TIMEOUT_MS
    )

    case = json.loads(desk.request.get(f"{node.base_url}/api/servicedesk/cases/{case_id}").body())
    docs = [m for m in case["materials"] if m["kind"] == "document"]
    assert [m["name"] for m in docs] == ["身份证", "户口簿"]
    assert docs[0]["width"] > 640 and docs[1]["width"] == 2480  # stills, not call frames
    assert any(m["kind"] == "face" for m in case["materials"])

    # The agent asks for the ID card again; the kiosk is told and captures it again.
    expect(desk.get_by_test_id(f"desk-image-{docs[0]['id']}")).to_be_visible(
        timeout=CALL_TIMEOUT_MS
    )
    desk.get_by_test_id(f"desk-recapture-{docs[0]['id']}").click()
    expect(kiosk.get_by_test_id("kiosk-recapture")).to_contain_text(
        "身份证", timeout=CALL_TIMEOUT_MS
    )
    expect(kiosk.get_by_test_id("kiosk-doc-name")).to_have_value("身份证")
    kiosk.get_by_test_id("kiosk-capture").click()
    expect(kiosk.locator('[data-testid^="kiosk-material-"]')).to_have_count(
        3, timeout=CALL_TIMEOUT_MS
    )

    # The agent verifies the current pictures against the originals, then the materials.
    case = json.loads(desk.request.get(f"{node.base_url}/api/servicedesk/cases/{case_id}").body())
    current = [
        m for m in case["materials"] if m["kind"] == "document" and m["status"] == "received"
    ]
    assert len(current) == 2
    for m in current:
        desk.get_by_test_id(f"desk-rotate-{m['id']}").click()
        desk.get_by_test_id(f"desk-verify-{m['id']}").click()
        expect(desk.get_by_test_id(f"desk-material-status-{m['id']}")).to_have_text("已核验")
    desk.get_by_test_id("desk-check").click()
    expect(status).to_have_attribute("data-state", "materials_checked", timeout=CALL_TIMEOUT_MS)

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
    expect(status).to_have_attribute("data-state", "signed", timeout=CALL_TIMEOUT_MS)

    # The agent fills the item's form and issues the result; the kiosk receives the PDF.
    expect(desk.get_by_test_id("desk-case-state")).to_have_text("已签名", timeout=CALL_TIMEOUT_MS)
    desk.get_by_test_id("desk-form-year").fill("2025")
    desk.get_by_test_id("desk-outcome").fill("已出具2025年度养老保险缴费结算单")
    desk.get_by_test_id("desk-submit").click()
    download = kiosk.get_by_test_id("kiosk-result-download")
    expect(download).to_be_visible(timeout=CALL_TIMEOUT_MS)
    pdf = kiosk.request.get(node.base_url + str(download.get_attribute("href")))
    assert pdf.headers["content-type"] == "application/pdf"
    text = "".join(
        PdfReader(io.BytesIO(pdf.body())).pages[0].extract_text().replace("\x00", "").split()
    )
    assert "养老保险缴费结算单" in text and case["number"] in text

    kiosk.get_by_test_id("kiosk-rate-5").click()
    expect(kiosk.get_by_test_id("kiosk-thanks")).to_be_visible(timeout=CALL_TIMEOUT_MS)

    final = json.loads(desk.request.get(f"{node.base_url}/api/servicedesk/cases/{case_id}").body())
    assert final["state"] == "closed" and final["rating"] == 5
    assert [e["to"] for e in final["events"]] == [
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
    statuses = sorted(m["status"] for m in final["materials"] if m["kind"] == "document")
    assert statuses == ["superseded", "verified", "verified"]
    for m in final["materials"]:
        assert desk.request.get(node.base_url + m["url"]).status == 200

    # The call's recording, both sides from the switch, is listed on the case at the desk.
    expect(desk.get_by_test_id("desk-recordings")).to_be_visible(timeout=CALL_TIMEOUT_MS)
    final = json.loads(desk.request.get(f"{node.base_url}/api/servicedesk/cases/{case_id}").body())
    assert len(final["recordings"]) == 1, final["recordings"]
    mp4 = desk.request.get(node.base_url + final["recordings"][0]["url"])
    assert mp4.status == 200 and mp4.headers["content-type"] == "video/mp4"
    assert_both_sides(mp4.body())
    refused = kiosk.request.get(node.base_url + final["recordings"][0]["url"])
    assert refused.status == 403  # the kiosk does not get the recording

    # Both publications and both views of the call are in the audit log.
    admin = pages()
    log_in(admin, node.base_url, *ADMIN, hash_="#/dir")
    for code, who in ((KIOSK, KIOSK_USER[0]), (SEAT, AGENT[0])):
        rows = json.loads(admin.request.get(f"{node.base_url}/api/audit?target={code}").body())
        seen = {(x["username"], x["action"], x["result"]) for x in rows["items"]}
        assert (who, "live.publish", "ok") in seen, rows
    rows = json.loads(
        admin.request.get(f"{node.base_url}/api/audit?target={final['number']}").body()
    )
    actions = {(x["username"], x["action"]) for x in rows["items"]}
    assert {
        ("servicedesk", "servicedesk.recording.start"),
        ("servicedesk", "servicedesk.recording.stop"),
        (AGENT[0], "servicedesk.recording.view"),
    } <= actions, actions
    assert kiosk.errors == [] and desk.errors == []
