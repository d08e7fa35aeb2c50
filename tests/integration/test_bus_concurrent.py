"""``Bus.serve(..., concurrent=True)``: a request that waits (a fabric ``open`` going up a chain of
hops) does not hold up the requests behind it, which a plain subscription does (nats-py awaits
one callback before the next message); every request still gets its own answer."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest

from peers.nats_server import local_nats
from vmesh.federation.bus import Bus

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs nats-server"),
]

CITY, COUNTY = "33030000002006000012", "33032800002006000012"


async def test_a_waiting_request_does_not_hold_up_the_next_one() -> None:
    release = asyncio.Event()

    async def handler(body: dict[str, Any]) -> Any:
        if body.get("wait"):
            await release.wait()
        return {"n": body["n"]}

    async with local_nats() as url:
        city, county = await Bus.connect(url, CITY), await Bus.connect(url, COUNTY)
        try:
            await county.serve("slow", handler, concurrent=True)
            first = asyncio.create_task(city.call(COUNTY, "slow", {"n": 1, "wait": True}))
            # Answered while the first is still waiting (it could not be, one at a time).
            for n in range(2, 12):
                assert await city.call(COUNTY, "slow", {"n": n}, timeout=30) == {"n": n}
            assert not first.done()
            release.set()
            assert await first == {"n": 1}
        finally:
            await city.close()
            await county.close()
