"""RTP test peers: a collecting UDP receiver and an ffmpeg decoder reading an SDP file.

``RtpCollector`` binds a UDP port, keeps every RTP packet (parsed by the switch's own parser) and
can relay each one to a decoder. ``RtpDecoder`` runs ffmpeg on an SDP file describing one H.264
stream and reads decoded frames scaled down to ``W×H`` RGB, so a test can look at what a viewer
would see (e.g. the colour of a synthetic camera's patch).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import cast

from vmesh.switch.rtp import RtpPacket, is_rtcp, parse_rtp

LOCAL = "127.0.0.1"
WAIT = 90.0  # liveness bound only: a hung test fails instead of blocking the run


async def wait_until(cond: Callable[[], bool], what: str, seconds: float = WAIT) -> None:
    """Poll ``cond`` (something another process changes); ``seconds`` only bounds a hang."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def free_udp_pair() -> int:
    """An even port whose successor is free too (RTP + RTCP)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOCAL, 0))
            port = int(s.getsockname()[1]) & ~1
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
            ):
                a.bind((LOCAL, port))
                b.bind((LOCAL, port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free UDP port pair")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


class RtpCollector(asyncio.DatagramProtocol):
    """Keeps the RTP packets arriving on one port (RTCP ignored); optionally relays them."""

    def __init__(self, relay_to: tuple[str, int] | None = None) -> None:
        self.packets: list[RtpPacket] = []
        self.relay_to = relay_to
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def bind(
        cls, port: int = 0, relay_to: tuple[str, int] | None = None
    ) -> tuple[RtpCollector, int]:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(
            lambda: cls(relay_to), local_addr=(LOCAL, port)
        )
        assert proto.transport is not None
        return proto, int(proto.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if is_rtcp(data):
            return
        self.packets.append(parse_rtp(data))
        if self.relay_to is not None and self.transport is not None:
            self.transport.sendto(data, self.relay_to)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def frames(self) -> int:
        return sum(p.marker for p in self.packets)


class RtpDecoder:
    """ffmpeg decoding one H.264 RTP stream (from an SDP file) to small RGB frames."""

    def __init__(self, tmp: Path, width: int = 16, height: int = 12) -> None:
        self.tmp = tmp
        self.width = width
        self.height = height
        self.port = free_udp_pair()
        self.raw = bytearray()
        self.log = bytearray()
        self.proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        ffmpeg = shutil.which("ffmpeg")
        assert ffmpeg is not None
        self.tmp.mkdir(parents=True, exist_ok=True)
        sdp = self.tmp / f"decoder-{self.port}.sdp"
        sdp.write_text(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=video {self.port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
            "a=fmtp:96 packetization-mode=1\r\n"
        )
        self.proc = await asyncio.create_subprocess_exec(
            ffmpeg, "-hide_banner", "-loglevel", "warning", "-protocol_whitelist",
            "file,udp,rtp", "-buffer_size", "4194304", "-i", str(sdp),
            "-fps_mode", "passthrough", "-vf", f"scale={self.width}:{self.height}:flags=area",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

        async def drain(stream: asyncio.StreamReader | None, into: bytearray) -> None:
            assert stream is not None
            while chunk := await stream.read(65536):
                into += chunk

        self._readers = [
            asyncio.create_task(drain(self.proc.stdout, self.raw)),
            asyncio.create_task(drain(self.proc.stderr, self.log)),
        ]
        text = Path("/proc/net/udp")
        await wait_until(lambda: f":{self.port:04X} " in text.read_text(), "the decoder to listen")

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3

    def frame_count(self) -> int:
        return len(self.raw) // self.frame_bytes

    def pixel(self, index: int, x: int, y: int) -> tuple[int, int, int]:
        """RGB of pixel (x, y) of decoded frame ``index`` (negative: from the end)."""
        n = self.frame_count()
        i = index % n
        off = i * self.frame_bytes + (y * self.width + x) * 3
        r, g, b = self.raw[off : off + 3]
        return r, g, b

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(*self._readers)
