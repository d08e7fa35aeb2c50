"""Live video signalling and channels on a real node (switch + Janus + ffmpeg), without a browser.

The node runs as a process with ``[media] enabled`` and a pool of 2 channels; the test talks to
``/api/live/ws`` as the console would and reads what an operator can see: the messages, the audit
log and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from e2e.console_node import Node
from media_site import (
    ADMIN,
    NO_SOURCE_CAMERA,
    OUT_OF_SCOPE_CAMERA,
    UNREACHABLE_RTSP_CAMERA,
    XIHU_OPERATOR,
    camera_code,
    login_cookie,
    media_node,
    ws_url,
)

pytestmark = pytest.mark.integration

# Readiness bounds for messages and counters, not performance assertions.
WAIT_S = 30.0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = media_node(tmp_path_factory.mktemp("media"), channels=2, linger=1.0)
    try:
        yield n
    finally:
        n.stop()


@asynccontextmanager
async def live(
    node: Node, user: tuple[str, str] = XIHU_OPERATOR
) -> AsyncIterator[ClientConnection]:
    cookie = login_cookie(node, *user)
    async with websockets.connect(
        ws_url(node), additional_headers={"Cookie": cookie, "Origin": node.base_url}
    ) as ws:
        yield ws


async def send(ws: ClientConnection, **msg: Any) -> None:
    await ws.send(json.dumps(msg))


async def next_msg(ws: ClientConnection, **match: Any) -> dict[str, Any]:
    """The next message whose fields equal ``match`` (others are skipped; named if none came)."""
    skipped: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                m = json.loads(await ws.recv())
                if all(m.get(k) == v for k, v in match.items()):
                    return m
                skipped.append({k: v for k, v in m.items() if k != "jsep"})
    except TimeoutError:
        raise AssertionError(f"no message {match} within {WAIT_S:g} s; came: {skipped}") from None


def metrics(node: Node) -> dict[str, float]:
    with urllib.request.urlopen(f"{node.base_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(vmesh_(?:switch|media)_\S+?)\s+(\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


async def wait_metric(node: Node, name: str, pred: Any) -> float:
    async with asyncio.timeout(WAIT_S):
        while True:
            v = metrics(node).get(name)
            if v is not None and pred(v):
                return v
            await asyncio.sleep(0.2)


def audit_rows(node: Node, **params: str) -> list[dict[str, Any]]:
    cookie = login_cookie(node, *ADMIN)
    q = "&".join(f"{k}={v}" for k, v in params.items())
    req = urllib.request.Request(f"{node.base_url}/api/audit?{q}", headers={"Cookie": cookie})
    with urllib.request.urlopen(req, timeout=10) as r:
        return list(json.loads(r.read())["items"])


async def test_channels_are_lent_released_and_reused(node: Node) -> None:
    cam1, cam2, cam3 = camera_code(1), camera_code(2), camera_code(3)
    async with live(node) as ws:
        await send(ws, type="watch", tile="a", code=cam1)
        a = await next_msg(ws, type="status", tile="a")
        assert a["state"] == "connecting" and a["channel"] == 0 and a["name"] == "龙坞测试摄像机01"
        offer = await next_msg(ws, type="offer", tile="a")
        assert offer["jsep"]["type"] == "offer" and "H264/90000" in offer["jsep"]["sdp"]
        await send(ws, type="watch", tile="b", code=cam2)
        b = await next_msg(ws, type="status", tile="b")
        assert b["channel"] == 1
        assert await wait_metric(node, "vmesh_media_channels_in_use", lambda v: v == 2) == 2
        # The pool is empty: a third tile is refused with the reason.
        await send(ws, type="watch", tile="c", code=cam3)
        c = await next_msg(ws, type="status", tile="c")
        assert c["state"] == "error" and "all 2 channels" in c["reason"]
        # Stopping tile a frees its channel for tile c.
        await send(ws, type="stop", tile="a")
        assert (await next_msg(ws, type="status", tile="a"))["state"] == "stopped"
        await send(ws, type="watch", tile="c", code=cam3)
        c = await next_msg(ws, type="status", tile="c", state="connecting")
        assert c["channel"] == 0 and c["code"] == cam3
        # Media flows from the camera through the switch into the reused channel.
        await wait_metric(
            node,
            f'vmesh_switch_input_packets_total{{input="{cam3}/video"}}',
            lambda v: v > 0,
        )
        base = metrics(node)['vmesh_switch_output_packets_total{output="channel-0/video"}']
        await wait_metric(
            node,
            'vmesh_switch_output_packets_total{output="channel-0/video"}',
            lambda v: v > base + 25,
        )
        # Polling: the same tile (same channel) switched to another camera.
        await send(ws, type="switch", tile="c", code=cam1)
        s = await next_msg(ws, type="status", tile="c", code=cam1)
        assert s["channel"] == 0
    # The page went away: every channel is back, and the cameras stop after their linger.
    await wait_metric(node, "vmesh_media_channels_in_use", lambda v: v == 0)
    await wait_metric(node, "vmesh_media_sources", lambda v: v == 0)
    views = audit_rows(node, action="live.view", username=XIHU_OPERATOR[0], result="ok")
    viewed = {r["target_code"] for r in views}
    assert {cam1, cam2, cam3} <= viewed
    switched = [r for r in views if r["target_code"] == cam1 and r["detail"].get("switch")]
    assert switched and switched[0]["detail"]["tile"] == "c"


async def test_out_of_scope_camera_is_refused_as_not_found_and_audited(node: Node) -> None:
    async with live(node) as ws:
        await send(ws, type="watch", tile="x", code=OUT_OF_SCOPE_CAMERA)
        m = await next_msg(ws, type="status", tile="x")
        assert m["state"] == "error"
        assert m["reason"] == f"camera {OUT_OF_SCOPE_CAMERA} not found"
    denied = audit_rows(node, action="live.view", target=OUT_OF_SCOPE_CAMERA, result="denied")
    assert denied and denied[0]["username"] == XIHU_OPERATOR[0]
    assert denied[0]["detail"]["reason"] == "outside the user's scope"
    assert metrics(node)["vmesh_media_channels_in_use"] == 0
    # The province administrator may watch it.
    async with live(node, ADMIN) as ws:
        await send(ws, type="watch", tile="x", code=OUT_OF_SCOPE_CAMERA)
        assert (await next_msg(ws, type="offer", tile="x"))["jsep"]["type"] == "offer"


async def test_bad_messages_and_sources_are_answered_with_the_field_and_reason(
    node: Node,
) -> None:
    async with live(node) as ws:
        await ws.send("not json")
        assert (await next_msg(ws, type="error"))["reason"] == "not JSON"
        await send(ws, type="dance", tile="0")
        m = await next_msg(ws, type="error")
        assert m["field"] == "type" and "watch" in m["reason"]
        await send(ws, type="watch", tile="no spaces allowed", code=camera_code(1))
        assert (await next_msg(ws, type="error"))["field"] == "tile"
        await send(ws, type="watch", tile="0", code="123")
        m = await next_msg(ws, type="status", tile="0")
        assert m["state"] == "error" and "20-digit" in m["reason"]
        await send(ws, type="watch", tile="0", code="33010601002166000002")  # a village
        m = await next_msg(ws, type="status", tile="0")
        assert "not a camera" in m["reason"]
        await send(ws, type="watch", tile="0", code=NO_SOURCE_CAMERA)
        m = await next_msg(ws, type="status", tile="0")
        assert m["state"] == "error" and "no video source" in m["reason"]
        await send(ws, type="switch", tile="9", code=camera_code(1))
        m = await next_msg(ws, type="status", tile="9")
        assert "send watch first" in m["reason"]
    assert metrics(node)["vmesh_media_channels_in_use"] == 0


async def test_unauthenticated_and_cross_site_upgrades_are_refused(node: Node) -> None:
    with pytest.raises(websockets.InvalidStatus) as e:
        async with websockets.connect(ws_url(node)):
            pass
    assert e.value.response.status_code == 403
    cookie = login_cookie(node, *XIHU_OPERATOR)
    with pytest.raises(websockets.InvalidStatus) as e:
        async with websockets.connect(
            ws_url(node), additional_headers={"Cookie": cookie, "Origin": "http://evil.example"}
        ):
            pass
    assert e.value.response.status_code == 403


def directory_entry(node: Node, code: str) -> dict[str, Any]:
    cookie = login_cookie(node, *ADMIN)
    req = urllib.request.Request(
        f"{node.base_url}/api/directory/entries/{code}", headers={"Cookie": cookie}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.loads(r.read()))


async def wait_entry(node: Node, code: str, pred: Any) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        while True:
            e = directory_entry(node, code)
            if pred(e):
                return e
            await asyncio.sleep(0.3)


async def test_unreachable_rtsp_camera_shows_the_error_and_goes_offline(node: Node) -> None:
    assert directory_entry(node, UNREACHABLE_RTSP_CAMERA)["status"] == "online"  # as imported
    async with live(node) as ws:
        await send(ws, type="watch", tile="r", code=UNREACHABLE_RTSP_CAMERA)
        first = await next_msg(ws, type="status", tile="r")
        assert first["state"] == "connecting"
        m = await next_msg(ws, type="status", tile="r", state="error")
        assert m["reason"].startswith("unreachable: ") and "Connection refused" in m["reason"], m
        assert "Secret-123" not in m["reason"]
        # The directory now says what the node found: the camera is offline.
        await wait_entry(node, UNREACHABLE_RTSP_CAMERA, lambda e: e["status"] == "offline")
        # Other tiles on the node keep working meanwhile, and their camera is seen online.
        before = directory_entry(node, camera_code(5))["last_seen"]
        await send(ws, type="watch", tile="ok", code=camera_code(5))
        assert (await next_msg(ws, type="offer", tile="ok"))["jsep"]["type"] == "offer"
        e = await wait_entry(
            node,
            camera_code(5),
            lambda e: e["last_seen"] and (before is None or e["last_seen"] > before),
        )
        assert e["status"] == "online"
