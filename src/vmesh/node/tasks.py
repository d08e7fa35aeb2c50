"""Background tasks of a node's services: ending them.

``cancel_tasks(tasks)`` cancels every task of a service's list, waits for each to end (whatever it
ended with: cancelled, or an error raised while stopping) and empties the list, so ``stop()`` can
be called twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks``, wait for every one of them to end, and empty the list."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    tasks.clear()
