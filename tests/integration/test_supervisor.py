"""The process supervisor with real children: crash, restart, back-off, give-up, stop order."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from vmesh.node.supervisor import (
    ProcessFailed,
    ProcessSpec,
    ProcessState,
    ProcessStatus,
    RestartPolicy,
    SupervisedProcess,
    Supervisor,
)

pytestmark = pytest.mark.integration

S = ProcessState
FAST = RestartPolicy(initial_delay=0.05, factor=2, max_delay=0.15, max_failures=5, window=600)
WAIT = 60  # liveness bound only: a hung test fails instead of blocking the run


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def wait(
    p: SupervisedProcess, *states: ProcessState, starts: int | None = None
) -> ProcessStatus:
    async with asyncio.timeout(WAIT):
        return await p.wait_for(*states, starts=starts)


async def poll(cond: Callable[[], bool]) -> None:
    """Wait for a condition that another process changes (no event to await)."""
    async with asyncio.timeout(WAIT):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_runs_logs_output_and_stops(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "child.log"
    spec = ProcessSpec(
        "sleeper",
        py(
            "import sys,time; print('hello from child', flush=True); "
            "print('to stderr', file=sys.stderr, flush=True); time.sleep(600)"
        ),
        log_path=log_path,
        restart=FAST,
    )
    p = SupervisedProcess(spec)
    await p.start()
    st = await wait(p, S.RUNNING)
    assert st.pid is not None and alive(st.pid)
    pid = st.pid
    st = await p.stop()
    assert st.state is S.STOPPED
    assert not alive(pid)
    text = log_path.read_text()
    assert "=== vmesh: start #1 of sleeper" in text
    assert "hello from child" in text and "to stderr" in text


async def test_exit_reason_quotes_the_last_output_line(tmp_path: Path) -> None:
    log_path = tmp_path / "child.log"
    spec = ProcessSpec(
        "complainer",
        py("import sys; print('fatal: port 8088 in use', file=sys.stderr); sys.exit(2)"),
        log_path=log_path,
        restart=RestartPolicy(0.01, max_failures=1),
    )
    p = SupervisedProcess(spec)
    await p.start()
    st = await wait(p, S.FAILED)
    assert st.last_error is not None
    assert st.last_error.startswith("exited with status 2 (last output: 'fatal: port 8088 in use'")


async def test_crash_loop_backs_off_then_gives_up(tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    spec = ProcessSpec(
        "crasher",
        py(f"open({str(runs)!r}, 'a').write('run\\n'); raise SystemExit(3)"),
        restart=FAST,
    )
    p = SupervisedProcess(spec)
    await p.start()
    st = await wait(p, S.FAILED)
    assert runs.read_text().count("run") == 5
    assert st.starts == 5
    assert p.delays == [0.05, 0.1, 0.15, 0.15]
    assert st.last_error is not None
    assert "exited with status 3" in st.last_error
    assert "gave up after 5 failures" in st.last_error
    assert st.last_exit == 3
    # No more restarts once failed; an explicit restart starts counting afresh.
    await p.restart()
    st = await wait(p, S.FAILED)
    assert runs.read_text().count("run") == 10


async def test_killed_child_is_restarted(tmp_path: Path) -> None:
    p = SupervisedProcess(ProcessSpec("victim", py("import time; time.sleep(600)"), restart=FAST))
    await p.start()
    first = await wait(p, S.RUNNING)
    await p.kill()
    second = await wait(p, S.RUNNING, starts=2)
    assert second.pid != first.pid and second.pid is not None and alive(second.pid)
    assert first.pid is not None and not alive(first.pid)
    assert second.last_error == "killed by signal SIGKILL"
    assert p.delays == [0.05]
    await p.stop()


async def test_sigterm_ignored_escalates_to_sigkill(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import signal,time,pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(600)"
    )

    async def check() -> str:
        if not ready.exists():
            raise RuntimeError("not ready")
        return "ready"

    p = SupervisedProcess(ProcessSpec("stubborn", py(code), health=check, stop_timeout=0.3))
    await p.start()
    st = await wait(p, S.RUNNING)
    assert st.health_detail == "ready"
    st = await p.stop()
    assert st.state is S.STOPPED
    assert st.last_exit == -9


async def test_unhealthy_process_is_restarted(tmp_path: Path) -> None:
    flag = tmp_path / "healthy"
    code = f"import time,pathlib; pathlib.Path({str(flag)!r}).touch(); time.sleep(600)"

    async def check() -> str:
        if not flag.exists():
            raise RuntimeError("flag file missing")
        return "ok"

    spec = ProcessSpec(
        "flaky", py(code), health=check, health_interval=0.05, health_failures=2, restart=FAST
    )
    p = SupervisedProcess(spec)
    await p.start()
    first = await wait(p, S.RUNNING)
    flag.unlink()
    second = await wait(p, S.RUNNING, starts=2)
    assert second.pid != first.pid
    assert first.pid is not None and not alive(first.pid)
    assert second.last_error == "health check failed 2 times in a row: flag file missing"
    await p.stop()


async def test_never_healthy_counts_as_failure(tmp_path: Path) -> None:
    async def check() -> str:
        raise RuntimeError("connection refused")

    spec = ProcessSpec(
        "mute",
        py("import time; time.sleep(600)"),
        health=check,
        start_timeout=0.2,
        health_interval=0.05,
        restart=RestartPolicy(initial_delay=0.05, max_failures=2),
    )
    p = SupervisedProcess(spec)
    await p.start()
    st = await wait(p, S.FAILED)
    assert st.last_error is not None
    assert st.last_error.startswith("not healthy within 0.2 s: connection refused")
    assert st.starts == 2


async def test_missing_program_fails_with_reason(tmp_path: Path) -> None:
    spec = ProcessSpec(
        "ghost", [str(tmp_path / "no-such-program")], restart=RestartPolicy(0.01, max_failures=2)
    )
    p = SupervisedProcess(spec)
    await p.start()
    st = await wait(p, S.FAILED)
    assert st.last_error is not None
    assert "cannot start" in st.last_error and "No such file or directory" in st.last_error


async def test_supervisor_starts_in_order_and_stops_in_reverse(tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"

    def child(name: str) -> list[str]:
        return py(
            "import signal,sys,time\n"
            f"j = open({str(journal)!r}, 'a', buffering=1)\n"
            f"def bye(*a):\n    j.write('{name} stop\\n'); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            f"j.write('{name} start\\n')\n"
            "while True: time.sleep(1)\n"
        )

    def started(name: str):  # type: ignore[no-untyped-def]
        async def check() -> str:
            if f"{name} start" not in (journal.read_text() if journal.exists() else ""):
                raise RuntimeError("not started")
            return "up"

        return check

    sup = Supervisor()
    for name in ("bus", "edge", "ingest"):
        sup.add(ProcessSpec(name, child(name), health=started(name), health_interval=0.05))
    await sup.start_all()
    assert [s.state for s in sup.statuses()] == [S.RUNNING] * 3
    await sup.stop_all()
    assert [s.state for s in sup.statuses()] == [S.STOPPED] * 3
    assert journal.read_text().splitlines() == [
        "bus start",
        "edge start",
        "ingest start",
        "ingest stop",
        "edge stop",
        "bus stop",
    ]


async def test_start_all_reports_the_failed_process_and_stops_the_rest(tmp_path: Path) -> None:
    sup = Supervisor()
    first = sup.add(ProcessSpec("first", py("import time; time.sleep(600)"), restart=FAST))
    sup.add(ProcessSpec("broken", py("raise SystemExit(7)"), restart=FAST, start_seconds=5))
    with pytest.raises(ProcessFailed) as ei:
        await sup.start_all()
    assert "broken could not be started" in ei.value.detail
    assert "exited with status 7" in ei.value.detail
    assert first.status.state is S.STOPPED


async def test_child_dies_with_the_node(tmp_path: Path) -> None:
    """A node killed with SIGKILL takes its children along (they would hold their ports)."""
    pidfile = tmp_path / "child.pid"
    node = (
        "import asyncio,sys\n"
        "from vmesh.node.supervisor import SupervisedProcess, ProcessSpec, ProcessState\n"
        "async def main():\n"
        "    p = SupervisedProcess(ProcessSpec('c', [sys.executable, '-c', "
        "'import time; time.sleep(600)']))\n"
        "    await p.start()\n"
        "    st = await p.wait_for(ProcessState.RUNNING)\n"
        f"    open({str(pidfile)!r}, 'w').write(str(st.pid))\n"
        "    await asyncio.sleep(600)\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", node)
    try:
        await poll(lambda: pidfile.exists() and pidfile.read_text() != "")
        child = int(pidfile.read_text())
        assert alive(child)
    finally:
        proc.kill()
        await proc.wait()
    await poll(lambda: not alive(child))
