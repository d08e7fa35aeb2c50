"""Restart back-off arithmetic and exit descriptions of the process supervisor."""

from __future__ import annotations

import pytest

from vmesh.node.supervisor import ProcessSpec, RestartPolicy, _describe_exit

pytestmark = pytest.mark.unit


def test_backoff_grows_exponentially_and_is_capped() -> None:
    p = RestartPolicy(initial_delay=0.5, factor=2, max_delay=3)
    assert [p.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3, 3, 3]


def test_exit_descriptions_name_status_or_signal() -> None:
    assert _describe_exit(3) == "exited with status 3"
    assert _describe_exit(-9) == "killed by signal SIGKILL"
    assert _describe_exit(-15) == "killed by signal SIGTERM"


def test_empty_argv_refused() -> None:
    with pytest.raises(ValueError, match="argv"):
        ProcessSpec(name="x", argv=[])


async def test_a_health_loop_ends_when_cancelled_at_any_moment() -> None:
    """The health loop's check must not swallow the loop's cancellation.

    ``asyncio.wait_for`` on Python 3.11 returns the check's result when the caller is cancelled in
    the loop turn the check completes (CPython gh-86296). The supervisor's health loop then ran on,
    ``stop()`` waited for it forever and an unwatched camera's ffmpeg was never stopped. Cancelled
    after every number of loop turns, the loop must end each time."""
    import asyncio

    from vmesh.node.supervisor import _checked

    async def healthy() -> str | None:
        return "ok"

    async def health_loop() -> None:
        while True:
            await asyncio.sleep(0)
            await _checked(healthy, 5.0)

    for turns in range(12):
        task = asyncio.create_task(health_loop())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2.0)
        assert done, f"the loop ran on after a cancel at turn {turns}"
        assert task.cancelled()
