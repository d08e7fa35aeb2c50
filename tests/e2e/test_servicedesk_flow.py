"""The remote service desk in Debian's Chromium against a real node (switch + Janus): the whole
pension-statement case between a village kiosk and a county agent, each in its own browser with
fake camera and microphone (two fake cameras: the room camera and the document camera).

The steps and what they assert are ``e2e.servicedesk_steps.pension_flow``'s (shared with the
test across tiers); here also: the call's recording is refused to the kiosk, and both
publications and the recording's start, stop and viewing are audited.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from e2e.console_node import Node, launch_chromium, log_in, media_browser_args
from e2e.servicedesk_steps import pension_flow
from media_site import ADMIN, BLOCK, VILLAGE, XIHU, api, free_udp_block, login_cookie, media_node

pytestmark = pytest.mark.e2e

KIOSK = "33010601004010000001"  # 龙坞村视频室
SEAT = "33010600004010000001"  # 西湖区政务服务中心 1 号窗口
KIOSK_USER = ("longwu_room", "Lw-kiosk-2024!")
AGENT = ("xihu_agent", "Xh-agent-2024!")


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


def test_the_pension_statement_from_kiosk_to_rating(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    kiosk = pages()
    log_in(kiosk, node.base_url, *KIOSK_USER, hash_="#/kiosk")
    desk = pages()
    log_in(desk, node.base_url, *AGENT, hash_="#/desk")
    final = pension_flow(kiosk, desk, node.base_url, node.base_url)
    refused = kiosk.request.get(node.base_url + final["recordings"][0]["url"])
    assert refused.status == 403  # the kiosk does not get the recording

    # Both publications of the call and its recording are in the audit log.
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
