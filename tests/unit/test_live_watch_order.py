"""A console tile's watch (``vmesh.media.viewer.LiveSession``): Janus's offer is prepared while the
camera is routed. For another node's camera — the fabric opens its path meanwhile, hop by hop,
~30 ms at four hops — the offer reaches the page at once and the page's answer reaches Janus
while the path still opens; a path that fails then says why on the tile, lets the handle go and
gives the channel back, and the closed connection's late answer is not called the page's error.
A camera of this node gets its offer only once it is routed.

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
        self.session = Session(log)
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
        return self.session

    def signal_of(self, code: str) -> SourceSignal:
        return SourceSignal("connecting")


LOCAL = {"source": "synthetic"}


def session(media: Media, log: list[str], remote: bool = True) -> LiveSession:
    who = Principal(1, "op", frozenset({"operator"}), "33000000002166000001", "/33/")

    async def lookup(code: str) -> Camera:
        if remote:
            return Camera(code, "东溪村摄像机", "camera", "/33/x/", {}, origin_node=NODE)
        return Camera(code, "西湖摄像机", "camera", "/33/x/", LOCAL)

    async def audit(*args: Any) -> None:
        pass

    async def send(msg: dict[str, Any]) -> None:
        state = f" {msg['state']}" if "state" in msg else ""
        log.append(f"page {msg['type']}{state}" + (" routing" if msg.get("routing") else ""))

    return LiveSession(who, media, lookup, audit, send)  # type: ignore[arg-type]


def watch(live: LiveSession) -> asyncio.Task[None]:
    return asyncio.create_task(live.handle(json.dumps({"type": "watch", "tile": 0, "code": CAM})))


def answer(live: LiveSession) -> asyncio.Task[None]:
    msg = {"type": "answer", "tile": 0, "jsep": {"type": "answer", "sdp": "v=0"}}
    return asyncio.create_task(live.handle(json.dumps(msg)))


async def spin() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_another_nodes_camera_gets_its_offer_and_answer_while_the_path_opens() -> None:
    log: list[str] = []
    media = Media(log)
    live = session(media, log)
    w = watch(live)
    await spin()
    assert "play start" in log and "page offer routing" in log and "play done" not in log
    a = answer(live)  # the page answers at once: Janus starts while the path still opens
    await spin()
    assert "janus start" in log and "play done" not in log
    media.release.set()
    await asyncio.gather(w, a)
    assert media.given_back == 0 and "0" in live.tiles
    # ... and a status says the path is open
    assert log[log.index("play done") + 1 :] == ["page status connecting"]


async def test_a_camera_of_this_node_gets_its_offer_once_routed() -> None:
    log: list[str] = []
    media = Media(log)
    live = session(media, log, remote=False)
    w = watch(live)
    await spin()
    assert "play start" in log and "janus watch" in log  # both under way
    assert "page offer" not in log  # ... but the page waits for the route
    media.release.set()
    await w
    assert log.index("play done") < log.index("page offer")  # (no "routing": it is routed)
    assert media.given_back == 0 and "0" in live.tiles


@pytest.mark.parametrize("remote", [True, False])
async def test_a_route_that_fails_says_why_and_frees_the_handle_and_channel(remote: bool) -> None:
    log: list[str] = []
    media = Media(log, NotFound(f"node {NODE} is unreachable"))
    live = session(media, log, remote)
    w = watch(live)
    await spin()
    assert "janus watch" in log
    media.release.set()
    await w
    assert ("page offer routing" in log) is remote  # a local camera's page never got one
    assert log[-1] == "page status error"  # the tile says why, after the offer
    assert "page status error" in log  # the tile says why
    assert media.given_back == 1 and "0" not in live.tiles
    assert "janus detach" in log  # the handle made meanwhile is let go
    said = len(log)
    await answer(live)  # the closed connection's late answer: nothing to say
    assert log[said:] == []


async def test_an_answer_for_a_tile_never_watched_is_refused() -> None:
    log: list[str] = []
    live = session(Media(log), log)
    await answer(live)
    assert log == ["page status error"]


async def test_a_tile_opened_again_by_a_conference_takes_its_answer() -> None:
    """A tile released (its late answers ignored) and opened again with ``open_channel`` (a
    conference re-opening a venue's picture after Janus hung up) answers normally."""
    log: list[str] = []
    media = Media(log, NotFound("gone"))
    live = session(media, log)
    media.release.set()
    await watch(live)
    assert "0" not in live.tiles
    await live.open_channel("0", Chan(), CAM, "主会场")  # type: ignore[arg-type]
    await answer(live)
    assert log[-1] == "janus start"
