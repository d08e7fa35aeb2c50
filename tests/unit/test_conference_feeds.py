"""``FabricFeeds``: the fabric streams a conference's tiles need at a node.

A stream that cannot be had yet (its venue not yet publishing at the host: the fabric says "not
publishing") is asked for again by itself while a tile wants it — no later layout is needed
(a township's petition tile once stayed black because none came); one no tile wants any more is
not asked for again, and let go of if it arrives after all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vmesh.conference.service import FabricFeeds
from vmesh.errors import NotFound

pytestmark = pytest.mark.unit

CITY = "33030000002006000041"
VENUE = "33030000004000000041"


class Fabric:
    """A fabric whose streams start publishing after ``fail`` refusals each."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.asked: list[tuple[str, str]] = []
        self.released: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None

    async def acquire(self, stream: str, node: str, viewer: str, user: str) -> str:
        self.asked.append((stream, node))
        if self.gate is not None:
            await self.gate.wait()
        if len(self.asked) <= self.fail:
            raise NotFound(f"{stream} is not publishing at node {node}")
        return f"fabric/{stream}"

    async def release(self, stream: str, viewer: str) -> None:
        self.released.append((stream, viewer))


def feeds(acquired: list[int]) -> FabricFeeds:
    async def on_acquired() -> None:
        acquired.append(1)

    f = FabricFeeds("conference-x", "conference:x:1", "test", on_acquired)
    f.RETRY_FIRST, f.RETRY_MAX = 0.01, 0.04
    return f


async def until(cond: Any) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never")


async def test_a_stream_not_yet_publishing_comes_without_another_sync() -> None:
    fabric, acquired = Fabric(fail=3), []
    f = feeds(acquired)
    await f.sync(fabric, {VENUE: CITY})
    await until(lambda: VENUE in f.inputs)
    assert f.inputs == {VENUE: f"fabric/{VENUE}"}
    assert fabric.asked == [(VENUE, CITY)] * 4 and acquired == [1]
    # Already here: a sync asks for nothing more.
    await f.sync(fabric, {VENUE: CITY})
    await asyncio.sleep(0.05)
    assert len(fabric.asked) == 4 and fabric.released == []


async def test_a_stream_no_tile_wants_is_not_asked_for_again() -> None:
    fabric, acquired = Fabric(fail=10**6), []
    f = feeds(acquired)
    await f.sync(fabric, {VENUE: CITY})
    await until(lambda: len(fabric.asked) >= 2)
    await f.sync(fabric, {})
    await asyncio.sleep(0.1)
    asked = len(fabric.asked)
    await asyncio.sleep(0.1)
    assert len(fabric.asked) == asked and f.inputs == {} and acquired == []


async def test_a_stream_that_arrives_after_it_stopped_being_wanted_is_let_go() -> None:
    fabric, acquired = Fabric(fail=0), []
    fabric.gate = asyncio.Event()
    f = feeds(acquired)
    await f.sync(fabric, {VENUE: CITY})
    await until(lambda: fabric.asked)
    f.stop()  # the conference ends while the fabric is still opening the stream
    fabric.gate.set()
    await until(lambda: fabric.released)
    assert fabric.released == [(VENUE, "conference-x")] and f.inputs == {} and acquired == []
