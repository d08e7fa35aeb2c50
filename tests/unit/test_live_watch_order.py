"""A console tile's watch (``vmesh.media.viewer.LiveSession``): Janus's offer is prepared while the
camera is routed — for another node's camera the fabric opens its path meanwhile, hop by hop,
~30 ms at four hops — and reaches the page only once the camera is routed; a route that fails
sends no offer, detaches the Janus handle and gives the channel back.

Janus and the media service are stand-ins here (the order of two awaits is what is tested);
tests/e2e/test_fabric_live.py plays the same path with real nodes, Janus and Chromium."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from vmesh.auth.principal import Principal
from vmesh.errors import NotFound
from vmesh.media.service import SourceSignal
from vmesh.media.viewer import Camera, LiveSession

pytestmark = pytest.mark.unit

CAM = "33032810101320000001"
NODE = "33032810102006000001"


@dataclass
class Reply:
    jsep: dict[str, Any] | None


@dataclass
class Handle:
    log: list[str]
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def request(self, body: dict[str, Any], jsep: Any = None) -> Reply:
        self.log.append(f"janus {body['request']}")
        return Reply({"type": "offer", "sdp": "v=0"})

    async def detach(self) -> None:
        self.log.append("janus detach")


@dataclass
class Session:
    log: list[str]
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def attach(self, plugin: str, opaque_id: str = "") -> Handle:
        self.log.append("janus attach")
        return Handle(self.log)


@dataclass
class Chan:
    index: int = 0
    mountpoint_id: int = 7


class Media:
    """Routes a camera when ``release`` is set (or fails with ``error``)."""

    def __init__(self, log: list[str], error: Exception | None = None) -> None:
        self.log = log
        self.error = error
        self.release = asyncio.Event()
        self.given_back = 0

    def lend(self, owner: str) -> Chan:
        return Chan()

    async def play(self, ch: Chan, code: str, spec: Any, *, user: str = "") -> None:
        self.log.append("play start")
        await self.release.wait()
        if self.error is not None:
            raise self.error
        self.log.append("play done")

    def give_back(self, ch: Chan) -> None:
        self.given_back += 1

    async def page_session(self, current: Any) -> Session:
        return current or Session(self.log)

    def signal_of(self, code: str) -> SourceSignal:
        return SourceSignal("connecting")


def session(media: Media, log: list[str]) -> LiveSession:
    who = Principal(1, "op", frozenset({"operator"}), "33000000002166000001", "/33/")

    async def lookup(code: str) -> Camera:
        return Camera(code, "东溪村摄像机", "camera", "/33/x/", {}, origin_node=NODE)

    async def audit(*args: Any) -> None:
        pass

    async def send(msg: dict[str, Any]) -> None:
        log.append(f"page {msg['type']}" + (f" {msg.get('state')}" if "state" in msg else ""))

    return LiveSession(who, media, lookup, audit, send)  # type: ignore[arg-type]


async def test_the_offer_is_made_while_the_camera_is_routed_and_sent_after() -> None:
    log: list[str] = []
    media = Media(log)
    live = session(media, log)
    watch = asyncio.create_task(live.handle(json.dumps({"type": "watch", "tile": 0, "code": CAM})))
    for _ in range(50):
        await asyncio.sleep(0)
    assert "play start" in log and "janus watch" in log  # both under way
    assert "page offer" not in log  # ... but the page waits for the route
    media.release.set()
    await watch
    assert log.index("play done") < log.index("page offer")
    assert isinstance(media, Media) and media.given_back == 0
    assert "0" in live.tiles


async def test_a_route_that_fails_sends_no_offer_and_frees_the_handle_and_channel() -> None:
    log: list[str] = []
    media = Media(log, NotFound(f"node {NODE} is unreachable"))
    live = session(media, log)
    watch = asyncio.create_task(live.handle(json.dumps({"type": "watch", "tile": 0, "code": CAM})))
    for _ in range(50):
        await asyncio.sleep(0)
    assert "janus watch" in log
    media.release.set()
    await watch
    assert "page offer" not in log
    assert "page status error" in log  # the tile says why
    assert media.given_back == 1 and "0" not in live.tiles
    assert "janus detach" in log  # the handle made meanwhile is let go
