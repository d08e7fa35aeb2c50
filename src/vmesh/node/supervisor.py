"""Child processes of the node (Janus now; nats-server, ffmpeg later): start, watch, restart, stop.

A ``SupervisedProcess`` runs one ``ProcessSpec`` (argv, env, cwd, a log file, an optional health
check) through an explicit state table:

    starting ──healthy──> running ──exit / health failed──> backoff ──delay──> starting
        │                                                      │
        └──exit / not healthy in time──> backoff               └──N failures in window──> failed
    any state ──stop()──> stopped

- Output (stdout and stderr) goes to the spec's log file, appended, with a header line per start;
  a file over ``max_log_bytes`` is rotated to ``.1`` at the next start.
- The child runs in a session of its own (so a Ctrl-C of the node does not hit it before the node
  stops it in order) and, on Linux, gets SIGKILL if the node dies (``PR_SET_PDEATHSIG``), so it
  never outlives the node holding its ports. (Linux sends that signal when the *thread* that
  spawned the child ends: run the supervisor in the node's main event loop thread.)
- Health: without a check, a process is ``running`` once it has stayed up ``start_seconds``
  (default: at once). With one, it is ``running`` once the
  check returns (its return value is kept as ``health_detail``, e.g. a version), and it must get
  there within ``start_timeout``; while running, ``health_failures`` failed checks in a row count as
  a failure and the process is stopped and restarted.
- Restart back-off grows exponentially from ``initial_delay`` up to ``max_delay``; the exponent is
  the number of failures within ``window`` seconds. ``max_failures`` failures within the window
  make the process ``failed``: no more restarts, ``last_error`` says why, until ``restart()``.
- Stop: the stop signal (SIGTERM) to the child's process group, SIGKILL after ``stop_timeout``.
  ``Supervisor`` starts its processes in the order added (each one ready before the next) and stops
  them in reverse order.

Public: ``ProcessSpec``, ``RestartPolicy``, ``DAEMON_RESTART``, ``ProcessState``,
``ProcessStatus``, ``SupervisedProcess``, ``Supervisor``, ``ProcessFailed``, ``HealthCheck``,
``require_program``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shlex
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from vmesh.errors import VmeshError
from vmesh.node.wakeup import woken

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[str | None]]
"""Returns when the process is healthy (optionally a short detail, e.g. a version), else raises."""


class ProcessState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPED = "stopped"


class ProcessFailed(VmeshError):
    """A supervised process could not be brought up; ``detail`` names it and the last error."""

    status = 503
    title = "Process failed"


@dataclass(frozen=True)
class RestartPolicy:
    initial_delay: float = 0.5
    max_delay: float = 30.0
    factor: float = 2.0
    max_failures: int = 5
    window: float = 120.0

    def delay(self, failures: int) -> float:
        """Back-off before the restart that follows the ``failures``-th failure in the window."""
        return min(self.initial_delay * self.factor ** max(failures - 1, 0), self.max_delay)


DAEMON_RESTART = RestartPolicy(initial_delay=1.0, max_delay=30.0)
"""Back-off of the node's long-running servers (Janus, nats-server): 1 s growing to 30 s."""


def require_program(binary: str, name: str, package: str) -> None:
    """Raise ``ProcessFailed`` naming the Debian package to install if ``binary`` is not found."""
    if shutil.which(binary) is None:
        raise ProcessFailed(
            f"{name}: program {binary!r} not found; install the Debian package: "
            f"apt-get install {package}"
        )


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    inherit_env: bool = True
    cwd: Path | None = None
    log_path: Path | None = None
    max_log_bytes: int = 20 * 1024 * 1024
    health: HealthCheck | None = None
    # Without a health check: how long the process must stay up to count as running.
    start_seconds: float = 0.0
    health_interval: float = 2.0
    start_timeout: float = 30.0
    health_failures: int = 3
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 10.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    die_with_parent: bool = True

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError(f"process {self.name!r}: argv must not be empty")


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    state: ProcessState
    pid: int | None = None
    starts: int = 0
    failures_in_window: int = 0
    last_error: str | None = None
    last_exit: int | None = None
    health_detail: str | None = None
    next_delay: float | None = None
    since: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state.value,
            "pid": self.pid,
            "starts": self.starts,
            "failures_in_window": self.failures_in_window,
            "last_error": self.last_error,
            "last_exit": self.last_exit,
            "health_detail": self.health_detail,
            "next_delay": self.next_delay,
            "since": self.since,
        }


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"killed by signal {name}"
    return f"exited with status {code}"


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class SupervisedProcess:
    """One child process under supervision; see the module docstring for the state table."""

    def __init__(
        self,
        spec: ProcessSpec,
        on_change: Callable[[ProcessStatus], None] | None = None,
    ) -> None:
        self.spec = spec
        self._on_change = on_change
        self._status = ProcessStatus(spec.name, ProcessState.STOPPED)
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._failures: deque[float] = deque()
        self.delays: list[float] = []
        """Every back-off delay chosen so far, in order (for the node's status and for tests)."""

    # --- observation ------------------------------------------------------------------------------

    @property
    def status(self) -> ProcessStatus:
        return self._status

    @property
    def pid(self) -> int | None:
        return self._status.pid

    def _set(self, state: ProcessState, **changes: object) -> None:
        old = self._status
        self._status = replace(old, state=state, since=time.time(), **changes)  # type: ignore[arg-type]
        if state is not old.state:
            log.info(
                "process=%s state=%s pid=%s error=%s",
                self.spec.name,
                state.value,
                self._status.pid,
                self._status.last_error,
            )
        self._changed.set()
        self._changed = asyncio.Event()
        if self._on_change is not None:
            try:
                self._on_change(self._status)
            except Exception:
                log.exception("process=%s on_change callback failed", self.spec.name)

    async def wait_for(
        self,
        *states: ProcessState,
        starts: int | None = None,
    ) -> ProcessStatus:
        """Wait until the state is one of ``states`` (and, if given, at least ``starts`` starts).

        Callers bound the wait with ``asyncio.timeout`` where they need to."""
        while True:
            st = self._status
            if st.state in states and (starts is None or st.starts >= starts):
                return st
            await self._changed.wait()

    # --- control ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin supervising (returns at once; use ``wait_for`` to wait for ``running``)."""
        if self._task is not None and not self._task.done():
            return
        self._stop = asyncio.Event()
        self._failures.clear()
        self._set(ProcessState.STARTING, last_error=None, failures_in_window=0, next_delay=None)
        self._task = asyncio.create_task(self._run(), name=f"supervise-{self.spec.name}")

    async def start_until_running(self) -> ProcessStatus:
        """``start`` and wait until ``running``; ``ProcessFailed`` (naming the process and its
        last error) if it ends ``failed`` instead (it is then no longer restarted)."""
        await self.start()
        st = await self.wait_for(ProcessState.RUNNING, ProcessState.FAILED)
        if st.state is ProcessState.FAILED:
            raise ProcessFailed(f"{self.spec.name} could not be started: {st.last_error}")
        return st

    async def restart(self) -> None:
        """Stop if running, clear the failure count and start again (e.g. after ``failed``)."""
        await self.stop()
        await self.start()

    async def stop(self) -> ProcessStatus:
        """Stop the child (stop signal, then SIGKILL after ``stop_timeout``) and supervision."""
        self._stop.set()
        task = self._task
        if task is not None:
            await asyncio.shield(task)
        return self._status

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the child now, as a crash would (supervision goes on)."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)

    # --- the loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception as e:  # a bug here must not leave a child unsupervised
            log.exception("process=%s supervisor loop failed", self.spec.name)
            if self._proc is not None:
                await self._terminate(self._proc)
            self._set(ProcessState.FAILED, pid=None, last_error=f"supervisor error: {e!r}")

    async def _loop(self) -> None:
        spec = self.spec
        while True:
            if self._stop.is_set():
                self._set(ProcessState.STOPPED, pid=None, next_delay=None)
                return
            self._set(ProcessState.STARTING, pid=None, health_detail=None, next_delay=None)
            try:
                proc = await self._spawn()
            except OSError as e:
                error: str | None = f"cannot start {spec.argv[0]}: {e.strerror or e}"
            else:
                error = await self._watch(proc)
                self._proc = None
                if error is None:  # stopped on request
                    self._set(ProcessState.STOPPED, pid=None, last_exit=proc.returncode)
                    return
            if self._stop.is_set():
                self._set(ProcessState.STOPPED, pid=None, next_delay=None)
                return
            now = time.monotonic()
            self._failures.append(now)
            while self._failures and self._failures[0] < now - spec.restart.window:
                self._failures.popleft()
            n = len(self._failures)
            if n >= spec.restart.max_failures:
                msg = (
                    f"{error}; gave up after {n} failures within {spec.restart.window:g} s"
                    if n > 1
                    else f"{error}; gave up"
                )
                log.error("process=%s failed: %s", spec.name, msg)
                self._set(
                    ProcessState.FAILED,
                    pid=None,
                    last_error=msg,
                    failures_in_window=n,
                    next_delay=None,
                )
                return
            delay = spec.restart.delay(n)
            self.delays.append(delay)
            log.warning(
                "process=%s failed: %s; restart in %.2f s (%d failures in window)",
                spec.name,
                error,
                delay,
                n,
            )
            self._set(
                ProcessState.BACKOFF,
                pid=None,
                last_error=error,
                failures_in_window=n,
                next_delay=delay,
            )
            await woken(self._stop, delay)

    def _open_log(self, starts: int) -> int:
        path = self.spec.log_path
        if path is None:
            return os.open(os.devnull, os.O_WRONLY)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > self.spec.max_log_bytes:
                os.replace(path, path.with_name(path.name + ".1"))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        header = f"=== vmesh: start #{starts} of {self.spec.name} at {stamp}: "
        header += shlex.join(self.spec.argv) + "\n"
        os.write(fd, header.encode())
        return fd

    async def _spawn(self) -> asyncio.subprocess.Process:
        spec = self.spec
        starts = self._status.starts + 1
        self._status = replace(self._status, starts=starts)
        env = dict(os.environ) if spec.inherit_env else {}
        if spec.env:
            env.update(spec.env)
        fd = self._open_log(starts)
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                cwd=spec.cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent
                if spec.die_with_parent and sys.platform == "linux"
                else None,
            )
        finally:
            os.close(fd)
        self._proc = proc
        log.info("process=%s spawned pid=%d start=%d", spec.name, proc.pid, starts)
        self._set(ProcessState.STARTING, pid=proc.pid)
        return proc

    async def _watch(self, proc: asyncio.subprocess.Process) -> str | None:
        """Until the child exits, fails its health check, or stop is asked. ``None`` = stopped."""
        exited = asyncio.create_task(proc.wait())
        stopping = asyncio.create_task(self._stop.wait())
        health = asyncio.create_task(self._health_loop(proc))
        try:
            done, _ = await asyncio.wait(
                {exited, stopping, health}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for t in (stopping, health):
                if not t.done():
                    t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await health
        if exited in done:
            code = exited.result()
            self._kill_group(proc)  # leftovers of the child's own children
            self._status = replace(self._status, last_exit=code)
            return f"{_describe_exit(code)}{self._log_hint()}"
        if stopping in done:
            await self._terminate(proc)
            return None
        error = health.result()
        await self._terminate(proc)
        self._status = replace(self._status, last_exit=proc.returncode)
        return error

    async def _health_loop(self, proc: asyncio.subprocess.Process) -> str:
        """Sets ``running``; returns the reason once the process counts as unhealthy."""
        spec = self.spec
        if spec.health is None:
            if spec.start_seconds > 0:
                await asyncio.sleep(spec.start_seconds)
            self._set(ProcessState.RUNNING, pid=proc.pid)
            await asyncio.Event().wait()  # until cancelled
        assert spec.health is not None
        deadline = time.monotonic() + spec.start_timeout
        last = "no answer yet"
        while self._status.state is ProcessState.STARTING:
            try:
                detail = await _checked(spec.health, spec.health_interval * 2 + 1)
            except Exception as e:
                last = str(e) or type(e).__name__
                if time.monotonic() >= deadline:
                    return f"not healthy within {spec.start_timeout:g} s: {last}"
                await asyncio.sleep(min(spec.health_interval, 0.2))
                continue
            self._set(ProcessState.RUNNING, pid=proc.pid, health_detail=detail)
        failed = 0
        while True:
            await asyncio.sleep(spec.health_interval)
            try:
                detail = await _checked(spec.health, spec.health_interval * 2 + 1)
            except Exception as e:
                failed += 1
                last = str(e) or type(e).__name__
                log.warning(
                    "process=%s health check failed (%d/%d): %s",
                    spec.name,
                    failed,
                    spec.health_failures,
                    last,
                )
                if failed >= spec.health_failures:
                    return f"health check failed {failed} times in a row: {last}"
            else:
                failed = 0
                if detail != self._status.health_detail:
                    self._set(ProcessState.RUNNING, health_detail=detail)

    def _log_hint(self) -> str:
        """Where the output is, and its last line (often the reason a program gave up)."""
        path = self.spec.log_path
        if path is None:
            return ""
        last = ""
        try:
            with open(path, "rb") as f:
                f.seek(max(f.seek(0, os.SEEK_END) - 4096, 0))
                lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
            lines = [ln for ln in lines if ln]
            if lines and not lines[-1].startswith("=== vmesh: start #"):
                last = lines[-1][:300]
        except OSError:
            pass
        return f" (last output: {last!r}; see {path})" if last else f" (output in {path})"

    def _kill_group(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, self.spec.stop_signal)
            try:
                async with asyncio.timeout(self.spec.stop_timeout):
                    await proc.wait()
            except TimeoutError:
                log.warning(
                    "process=%s did not stop within %g s; SIGKILL",
                    self.spec.name,
                    self.spec.stop_timeout,
                )
                self._kill_group(proc)
                await proc.wait()
        self._kill_group(proc)


async def _checked(health: HealthCheck, seconds: float) -> str | None:
    """One health check, bounded by ``seconds`` (``TimeoutError``).

    Not ``asyncio.wait_for``: on Python 3.11 it returns the inner result instead of raising when
    the caller is cancelled in the same loop turn as a quick check completes (CPython gh-86296).
    The health loop then never ended, ``stop()`` waited for it forever and the child ran on (an
    unwatched camera's ffmpeg kept running, and the camera could not be watched again)."""
    async with asyncio.timeout(seconds):
        return await health()


class Supervisor:
    """A set of supervised processes started in order and stopped in reverse order."""

    def __init__(self, on_change: Callable[[ProcessStatus], None] | None = None) -> None:
        self._on_change = on_change
        self._procs: dict[str, SupervisedProcess] = {}

    def add(self, spec: ProcessSpec) -> SupervisedProcess:
        if spec.name in self._procs:
            raise ValueError(f"a process named {spec.name!r} is already supervised")
        p = SupervisedProcess(spec, self._on_change)
        self._procs[spec.name] = p
        return p

    def __getitem__(self, name: str) -> SupervisedProcess:
        return self._procs[name]

    def statuses(self) -> list[ProcessStatus]:
        return [p.status for p in self._procs.values()]

    async def start_all(self) -> None:
        """Start each process in order, waiting for it to run before starting the next.

        If one ends ``failed``, everything started so far is stopped again and ``ProcessFailed``
        names it with its last error.
        """
        started: list[SupervisedProcess] = []
        for p in self._procs.values():
            started.append(p)
            try:
                await p.start_until_running()
            except ProcessFailed:
                for q in reversed(started):
                    await q.stop()
                raise

    async def stop_all(self) -> None:
        for p in reversed(list(self._procs.values())):
            await p.stop()
