"""``BrowserRoom.forward`` asks Janus again when it answers 428 "No such feed" for a publisher
it has just added (Janus 1.1.2 does, about 1 in 4 runs of test_media_publish on a loaded
machine, and lists the publisher a moment later), and only then: any other error is raised at
once, and a 428 that persists is raised after ``FORWARD_ATTEMPTS`` requests."""

from __future__ import annotations

from typing import Any

import pytest

from vmesh.edge.janus import JanusPluginError, PluginReply
from vmesh.media import publish
from vmesh.media.publish import FORWARD_ATTEMPTS, BrowserRoom, Forwarding

pytestmark = pytest.mark.unit

FORWARDERS = [{"stream_id": 11, "type": "video", "local_rtcp_port": 40001, "mid": "0"}]


class Handle:
    def __init__(self, errors: list[JanusPluginError]) -> None:
        self.errors = errors
        self.bodies: list[dict[str, Any]] = []

    async def request(self, body: dict[str, Any]) -> PluginReply:
        self.bodies.append(body)
        if self.errors:
            raise self.errors.pop(0)
        return PluginReply(data={"videoroom": "rtp_forward", "forwarders": FORWARDERS})


class Room(BrowserRoom):
    def __init__(self, handle: Handle) -> None:
        self._test_handle = handle
        self.secret = "s"

    @property
    def admin_key(self) -> str:
        return "k"

    async def handle(self) -> Any:
        return self._test_handle


def no_such_feed() -> JanusPluginError:
    return JanusPluginError("janus.plugin.videoroom", "rtp_forward", 428, "No such feed (7)")


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish, "FORWARD_RETRY_S", 0.0)


async def test_a_passing_no_such_feed_is_asked_again() -> None:
    h = Handle([no_such_feed(), no_such_feed()])
    fw = Forwarding("33010601001380000001", 7, 30000)
    await Room(h).forward(fw, "0", None)
    assert len(h.bodies) == 3 and h.bodies[0] == h.bodies[2]
    assert h.bodies[0]["publisher_id"] == 7 and h.bodies[0]["request"] == "rtp_forward"
    assert (fw.stream_ids, fw.video_rtcp) == ([11], 40001)


async def test_a_lasting_no_such_feed_is_raised_after_the_last_attempt() -> None:
    h = Handle([no_such_feed() for _ in range(FORWARD_ATTEMPTS)])
    fw = Forwarding("33010601001380000001", 7, 30000)
    with pytest.raises(JanusPluginError, match="No such feed"):
        await Room(h).forward(fw, "0", None)
    assert len(h.bodies) == FORWARD_ATTEMPTS and fw.stream_ids == []


async def test_other_errors_are_raised_at_once() -> None:
    h = Handle([JanusPluginError("janus.plugin.videoroom", "rtp_forward", 433, "Unauthorized")])
    with pytest.raises(JanusPluginError, match="Unauthorized"):
        await Room(h).forward(Forwarding("33010601001380000001", 7, 30000), "0", None)
    assert len(h.bodies) == 1
