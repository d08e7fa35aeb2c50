"""Drive GStreamer's RTSP server (``rtsp_server.py``) from the tests, under the system Python.

``RtspServer(port, ...)``: ``await start()`` waits for it to listen; ``stop()`` ends it (SIGTERM),
``pause()``/``resume()`` freeze and thaw it (SIGSTOP/SIGCONT: the TCP connection stays open but no
media flows); ``url`` is ``rtsp://127.0.0.1:PORT/PATH`` without credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("rtsp_server.py")


def gst_rtsp_available() -> bool:
    """Whether the system Python has GStreamer's RTSP server (python3-gi, its typelib)."""
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    import subprocess

    r = subprocess.run(
        [SYSTEM_PYTHON, "-c",
         "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import GstRtspServer"],
        capture_output=True, check=False,
    )  # fmt: skip
    return r.returncode == 0


# One marker for every test that needs the server; the check runs once per test session.
requires_gst_rtsp = pytest.mark.skipif(
    not gst_rtsp_available(),
    reason="GStreamer's RTSP server is not installed (scripts/setup.sh installs it)",
)


def _open_log(path: Path | None) -> int:
    if path is None:
        return asyncio.subprocess.DEVNULL
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


class RtspServer:
    def __init__(
        self,
        port: int,
        *,
        path: str = "/cam",
        video: str = "h264",
        audio: str = "none",
        user: str | None = None,
        password: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port
        self.path = path
        self.args = ["--port", str(port), "--path", path, "--video", video, "--audio", audio]
        if user is not None:
            self.args += ["--user", user, "--password", password or ""]
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        err = _open_log(self.log_path)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                SYSTEM_PYTHON, str(SERVER), *self.args,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=err,
            )  # fmt: skip
        finally:
            if err != asyncio.subprocess.DEVNULL:
                os.close(err)
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await self.proc.stdout.readline()).decode()
        if not line.startswith("READY"):
            await self.stop()
            raise RuntimeError(f"RTSP server did not start: {line!r} (log {self.log_path})")

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
