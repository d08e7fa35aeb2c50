"""``FfmpegSource``: one ingest source as a supervised ffmpeg child with a state and reconnects.

Each attempt:

1. ``prepare()`` (the subclass) returns the ffmpeg command line, after whatever it must do first
   (an RTSP source probes the camera with ffprobe; a clip-mode synthetic camera encodes its clip).
   A ``Failure`` raised here ends the attempt at once.
2. ffmpeg runs under a ``vmesh.node.supervisor.SupervisedProcess`` (its own log file in
   ``log_dir``, die-with-parent, TERM then KILL on stop). ffmpeg reports ``-progress`` blocks twice
   a second to a UDP socket of this object; the supervisor's health check is "the frame/byte count
   advanced within ``stall_seconds``". The first advance makes the source ``sending``; no advance
   for ``stall_seconds`` stops ffmpeg and makes it ``no_signal`` (this watchdog covers what
   ffmpeg's own socket timeout cannot: UDP transport, or a connection that stays open but silent).
3. When ffmpeg ends, its stderr since this attempt's start is classified
   (``vmesh.ingest.ffmpeg.classify``). A source that was sending and then ended is ``no_signal``;
   otherwise the state is ``error`` with the kind (unreachable, wrong credentials, ...).
4. The next attempt comes after an exponential back-off (``RestartPolicy.delay`` of the failures
   since the source last sent). Sources retry for ever: a camera that comes back is picked up.
   While retrying, the state stays the last failure (a tile keeps saying "no signal" instead of
   flickering through "connecting").

Status callbacks (``on_status``) fire on every state change, from the event loop.

Public: ``FfmpegSource``, ``DEFAULT_RETRY``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from vmesh.ingest.ffmpeg import ProgressParser, classify, redact
from vmesh.ingest.status import Failure, FailureKind, IngestState, IngestStatus, StatusCallback
from vmesh.node.supervisor import (
    ProcessSpec,
    ProcessState,
    RestartPolicy,
    SupervisedProcess,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY = RestartPolicy(initial_delay=1.0, factor=2.0, max_delay=30.0, window=600.0)
PROGRESS_PERIOD = 0.5


class _ProgressSocket(asyncio.DatagramProtocol):
    def __init__(self, on_text: Callable[[str], None]) -> None:
        self.on_text = on_text

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.on_text(data.decode("utf-8", errors="replace"))


class FfmpegSource:
    """Base of the ingest sources; subclasses implement ``prepare``."""

    initial_state = IngestState.STARTING

    def __init__(
        self,
        source_id: str,
        *,
        log_dir: Path,
        on_status: StatusCallback | None = None,
        retry: RestartPolicy = DEFAULT_RETRY,
        stall_seconds: float = 5.0,
        start_timeout: float = 20.0,
    ) -> None:
        self.source_id = source_id
        self.log_path = log_dir / f"ingest-{source_id}.log"
        self.retry = retry
        self.stall_seconds = stall_seconds
        self.start_timeout = start_timeout
        self._on_status = on_status
        self._status = IngestStatus(source_id, IngestState.STOPPED)
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._proc: SupervisedProcess | None = None
        self._stopping = False
        self._progress_transport: asyncio.DatagramTransport | None = None
        self._parser = ProgressParser()
        self._advanced_at: float | None = None  # monotonic time of the last advance
        self._high = (0, 0)
        self.history: list[IngestStatus] = []
        """Every status set so far, in order (for the node's diagnostics and for tests)."""

    # --- subclass interface --------------------------------------------------------------------

    async def prepare(self) -> list[str]:
        """The ffmpeg argv for the next attempt (``argv[0]`` is the program); may raise Failure."""
        raise NotImplementedError

    def stream_codecs(self) -> tuple[str | None, str | None]:
        """Switch codec names (video, audio) this source sends, as known after ``prepare``."""
        return None, None

    # --- observation ---------------------------------------------------------------------------

    @property
    def status(self) -> IngestStatus:
        return self._status

    @property
    def pid(self) -> int | None:
        """The running ffmpeg's process id, if one runs."""
        return self._proc.pid if self._proc is not None else None

    def _set(self, state: IngestState, **changes: object) -> None:
        old = self._status
        new = replace(old, state=state, since=time.time(), **changes)  # type: ignore[arg-type]
        self._status = new
        self.history.append(new)
        if state is not old.state or new.failure != old.failure:
            log.info(
                "ingest source=%s state=%s reason=%s attempt=%d",
                self.source_id,
                state.value,
                new.failure,
                new.attempts,
            )
        self._changed.set()
        self._changed = asyncio.Event()
        if self._on_status is not None:
            try:
                self._on_status(new)
            except Exception:
                log.exception("ingest source=%s status callback failed", self.source_id)

    async def wait_for(
        self, *states: IngestState, after: int = 0, kind: FailureKind | None = None
    ) -> IngestStatus:
        """Wait until a status in ``states`` (and of failure ``kind``, if given) has been set at
        index ≥ ``after`` of ``history``; returns it. Bound it with ``asyncio.timeout``."""
        while True:
            for st in self.history[after:]:
                if st.state in states and (
                    kind is None or (st.failure is not None and st.failure.kind is kind)
                ):
                    return st
            await self._changed.wait()

    # --- control -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin (returns at once; the state says how it goes)."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ProgressSocket(self._on_progress), local_addr=("127.0.0.1", 0)
        )
        self._progress_transport = transport
        self._set(self.initial_state, failure=None, attempts=0, next_retry_in=None)
        self._task = asyncio.create_task(self._run(), name=f"ingest-{self.source_id}")

    async def stop(self) -> None:
        """Stop ffmpeg (TERM, then KILL) and the retries; the state becomes ``stopped``."""
        self._stopping = True
        if self._proc is not None:
            await self._proc.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        if self._progress_transport is not None:
            self._progress_transport.close()
            self._progress_transport = None
        if self._status.state is not IngestState.STOPPED:
            self._set(IngestState.STOPPED, next_retry_in=None)

    # --- progress ------------------------------------------------------------------------------

    def _on_progress(self, text: str) -> None:
        for p in self._parser.feed(text):
            mark = (p.frame, p.total_size)
            if mark > self._high:
                self._high = mark
                self._advanced_at = time.monotonic()
                self._status = replace(self._status, last_packet_at=time.time())

    async def _health(self) -> str | None:
        if self._advanced_at is None:
            raise RuntimeError("no packets sent yet")
        idle = time.monotonic() - self._advanced_at
        if idle > self.stall_seconds:
            raise RuntimeError(f"no packets for {idle:.0f} s")
        return None

    # --- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures: list[float] = []
        while not self._stopping:
            attempt = self._status.attempts + 1
            self._status = replace(self._status, attempts=attempt, next_retry_in=None)
            try:
                failure, sent = await self._attempt()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug must not end the retries silently
                log.exception("ingest source=%s attempt failed unexpectedly", self.source_id)
                failure, sent = Failure(FailureKind.FFMPEG, f"internal error: {e!r}"), False
            if failure is None or self._stopping:
                return
            now = time.monotonic()
            if sent:
                failures.clear()
            failures = [t for t in failures if t > now - self.retry.window] + [now]
            delay = self.retry.delay(len(failures))
            state = (
                IngestState.NO_SIGNAL
                if failure.kind is FailureKind.NO_SIGNAL
                else IngestState.ERROR
            )
            log.warning("ingest source=%s %s; retry in %.1f s", self.source_id, failure, delay)
            self._set(state, failure=failure, next_retry_in=delay)
            await asyncio.sleep(delay)

    async def _attempt(self) -> tuple[Failure | None, bool]:
        """One prepare + ffmpeg run. Returns (failure or None if stopped, whether it sent)."""
        try:
            argv = await self.prepare()
        except Failure as f:
            return f, False
        video, audio = self.stream_codecs()
        if (video, audio) != (self._status.video_codec, self._status.audio_codec):
            self._status = replace(self._status, video_codec=video, audio_codec=audio)
        assert self._progress_transport is not None
        port = self._progress_transport.get_extra_info("sockname")[1]
        argv = [
            argv[0],
            "-progress",
            f"udp://127.0.0.1:{port}",
            "-stats_period",
            str(PROGRESS_PERIOD),
            *argv[1:],
        ]
        self._parser = ProgressParser()
        self._advanced_at = None
        self._high = (0, 0)
        offset = _size(self.log_path)
        proc = SupervisedProcess(
            ProcessSpec(
                f"ingest-{self.source_id}",
                argv,
                log_path=self.log_path,
                health=self._health,
                health_interval=1.0,
                health_failures=1,
                start_timeout=self.start_timeout,
                stop_timeout=5.0,
                restart=RestartPolicy(max_failures=1),
            )
        )
        self._proc = proc
        try:
            await proc.start()
            st = await proc.wait_for(
                ProcessState.RUNNING, ProcessState.FAILED, ProcessState.STOPPED
            )
            sent = st.state is ProcessState.RUNNING
            if sent:
                self._set(IngestState.SENDING, failure=None)
                st = await proc.wait_for(ProcessState.FAILED, ProcessState.STOPPED)
        finally:
            if self._stopping or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                await asyncio.shield(proc.stop())
            self._proc = None
        if st.state is ProcessState.STOPPED:
            return None, sent
        lines = _read_from(self.log_path, offset)
        return self.explain(lines, st.last_error or "", sent), sent

    def explain(self, lines: list[str], supervisor_error: str, sent: bool) -> Failure:
        """The failure of an attempt, from ffmpeg's output and the supervisor's reason."""
        found = classify(lines)
        error = supervisor_error.split("; gave up")[0]
        if sent:
            if found is not None and found.kind in (
                FailureKind.WRONG_CREDENTIALS,
                FailureKind.NOT_FOUND,
                FailureKind.UNSUPPORTED_CODEC,
            ):
                return found
            if error.startswith("health check failed"):
                why = error.rsplit(": ", 1)[-1]
            elif found is not None:
                why = f"the source went away ({found.reason})"
            else:
                why = "the source ended the stream"
            return Failure(FailureKind.NO_SIGNAL, why)
        if found is not None:
            return found
        if error.startswith("not healthy within"):
            return Failure(
                FailureKind.NO_SIGNAL, f"no packets within {self.start_timeout:g} s of starting"
            )
        last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
        if last.startswith("=== vmesh: start #"):
            last = ""
        reason = redact(last[:200]) or redact(error.split(" (last output")[0]) or "ffmpeg ended"
        return Failure(FailureKind.FFMPEG, reason)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> list[str]:
    """Lines of ``path`` from ``offset`` (from the start if the file was rotated since)."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            f.seek(offset if offset <= end else 0)
            return f.read().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
