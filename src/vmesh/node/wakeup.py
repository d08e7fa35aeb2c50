"""Waiting for a wake-up with a bound, for the node's periodic loops.

A loop that works, then sleeps until it is woken (an ``asyncio.Event``) or its interval has
passed, waits with :func:`woken`. Not ``asyncio.wait_for(event.wait(), seconds)``: on Python 3.11
``wait_for`` returns normally instead of raising when the waiting task is cancelled in the loop
turn the event is set (CPython gh-86296), so a loop stopped at that moment went on for another
round — and a loop that never ends keeps ``stop()`` waiting for it forever.

Public: ``woken``.
"""

from __future__ import annotations

import asyncio
import contextlib


async def woken(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` have passed; whether it was set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()
