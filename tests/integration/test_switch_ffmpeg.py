"""Real RTP from two ffmpeg encoders through the switch's UDP transport to a real ffmpeg decoder.

Camera A is ffmpeg's ``testsrc2`` pattern, camera B a plain red picture, both H.264 with a one
second GOP. One output channel starts on A, is spliced to B, then back to A. What a viewer would
notice is checked: the decoder (ffmpeg reading an SDP file) decodes 320x240 frames with no
decoding errors and no missed packets, and the picture goes A → red → A; on the wire the channel
keeps one SSRC and consecutive sequence numbers. Run twice: with the C data plane
(``_dataplane.c``, which must have carried most packets) and with the pure-Python asyncio path.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from peers.rtp import free_udp_pair
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, KeyframeRequest, OutputSpec, Switch
from vmesh.switch.rtp import RtpPacket, parse_rtp
from vmesh.switch.transport import Latched, SwitchTransport

pytestmark = pytest.mark.integration

FFMPEG = shutil.which("ffmpeg")
LOCAL = "127.0.0.1"
W, H = 16, 12  # decoded frames are scaled down to this for the colour check


def udp_bound(port: int) -> bool:
    text = Path("/proc/net/udp").read_text()
    return f":{port:04X} " in text


async def wait_for(cond: Callable[[], bool], what: str) -> None:
    """Wait for a condition; the 60 s bound only keeps a broken run from hanging."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60.0
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Recorder(asyncio.DatagramProtocol):
    """Keeps every RTP packet of the output and relays it to the decoder."""

    def __init__(self, relay_to: tuple[str, int]) -> None:
        self.packets: list[RtpPacket] = []
        self.relay_to = relay_to
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.packets.append(parse_rtp(data))
        assert self.transport is not None
        self.transport.sendto(data, self.relay_to)

    def frames(self) -> int:
        return sum(p.marker for p in self.packets)


async def camera(source: str, port: int, rtcp_port: int) -> asyncio.subprocess.Process:
    assert FFMPEG is not None
    return await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", source,
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-bf", "0",
        "-f", "rtp", f"rtp://{LOCAL}:{port}?rtcpport={rtcp_port}&pkt_size=1200",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (scripts/setup.sh installs it)")
@pytest.mark.parametrize("dataplane", [True, False], ids=["c-dataplane", "python"])
async def test_two_ffmpeg_cameras_spliced_on_one_channel_decode(
    tmp_path: Path, dataplane: bool
) -> None:
    assert FFMPEG is not None
    loop = asyncio.get_running_loop()
    decoder_port = free_udp_pair()
    sdp = tmp_path / "channel.sdp"
    sdp.write_text(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=vmesh channel\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=video {decoder_port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        "a=fmtp:96 packetization-mode=1\r\n"
    )
    decoder = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "warning", "-protocol_whitelist", "file,udp,rtp",
        "-buffer_size", "4194304",
        "-i", str(sdp), "-fps_mode", "passthrough", "-vf", f"scale={W}:{H}",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    raw = bytearray()
    log = bytearray()

    async def drain(stream: asyncio.StreamReader | None, into: bytearray) -> None:
        assert stream is not None
        while chunk := await stream.read(65536):
            into += chunk

    readers = [
        asyncio.create_task(drain(decoder.stdout, raw)),
        asyncio.create_task(drain(decoder.stderr, log)),
    ]
    switch = Switch()
    transport = SwitchTransport(switch, dataplane=dataplane)
    cams: list[asyncio.subprocess.Process] = []
    rec_transport: asyncio.DatagramTransport | None = None
    try:
        await wait_for(lambda: udp_bound(decoder_port), "the decoder to listen")
        await transport.start()
        ports = {}
        for name in ("a", "b"):
            rtp = free_udp_pair()
            spec = InputSpec(
                name, Codec.h264, keyframe_request=KeyframeRequest.pli, rtcp_dest=Latched(name)
            )
            ports[name] = (await transport.add_input(spec, rtp), rtp + 1)
        rec_transport, recorder = await loop.create_datagram_endpoint(
            lambda: Recorder((LOCAL, decoder_port)), local_addr=(LOCAL, 0)
        )
        rec_port = rec_transport.get_extra_info("sockname")[1]
        await transport.add_output(
            OutputSpec(
                "tile-1", Codec.h264, ssrc=0x5EED, dest=(LOCAL, rec_port),
                rtcp_dest=(LOCAL, decoder_port + 1),
            )
        )  # fmt: skip
        transport.route("tile-1", "a")
        cams.append(await camera("color=c=red:size=320x240:rate=25", *ports["b"]))
        cams.append(await camera("testsrc2=size=320x240:rate=25", *ports["a"]))

        await wait_for(lambda: recorder.frames() >= 50, "50 frames of camera A")
        await wait_for(lambda: switch.snapshot().inputs["b"].gop_packets > 0, "a GOP of B")
        transport.route("tile-1", "b")
        mark = recorder.frames()
        await wait_for(lambda: recorder.frames() >= mark + 50, "50 frames after splicing to B")
        transport.route("tile-1", "a")
        mark = recorder.frames()
        await wait_for(lambda: recorder.frames() >= mark + 50, "50 frames after splicing to A")
        counts = transport.dataplane_counts()
    finally:
        for cam in cams:
            cam.terminate()
            await cam.wait()
        await transport.close()
        if rec_transport is not None:
            rec_transport.close()
        if decoder.returncode is None:
            decoder.send_signal(signal.SIGINT)
        await asyncio.wait_for(decoder.wait(), 30)
        await asyncio.gather(*readers)

    snap = switch.snapshot()  # after close: nothing more is sent
    packets = recorder.packets
    assert {p.ssrc for p in packets} == {0x5EED}
    gaps = [
        (p.sequence_number, q.sequence_number)
        for p, q in itertools.pairwise(packets)
        if (q.sequence_number - p.sequence_number) & 0xFFFF != 1
    ]
    # UDP may drop on a loaded host (before the switch, or before the recorder): the switch itself
    # must add no gap, so every gap must be explained by a loss the counters saw.
    lost = sum(i.lost for i in snap.inputs.values()) + (
        snap.outputs["tile-1"].packets - len(packets)
    )
    assert len(gaps) <= lost, (gaps, lost)
    assert all(
        (q.timestamp - p.timestamp) & 0xFFFFFFFF < 0x80000000
        for p, q in itertools.pairwise(packets)
    )
    if dataplane:  # the C loop forwarded the steady state, Python the rest (starts, splices)
        assert counts is not None
        fast, slow = counts
        assert fast > slow > 0, counts  # slow: first packets, waits for keyframes, splices
    else:
        assert counts is None
    out = snap.outputs["tile-1"]
    assert (out.splices, out.input) == (2, "a")
    assert out.replayed > 0

    text = log.decode(errors="replace")
    if lost == 0:  # with a counted UDP loss the decoder rightly complains
        assert "error while decoding" not in text.lower(), text
        assert "missed" not in text, text
    frame = W * H * 3
    assert len(raw) >= 100 * frame
    kinds = []
    for i in range(0, len(raw) - frame + 1, frame):
        px = raw[i : i + frame]
        r, g, b = (sum(px[c::3]) / (W * H) for c in range(3))
        kinds.append("red" if r > 180 and g < 80 and b < 80 else "pattern")
    runs: list[list[object]] = []
    for k in kinds:
        if runs and runs[-1][0] == k:
            runs[-1][1] += 1  # type: ignore[operator]
        else:
            runs.append([k, 1])
    assert [k for k, _ in runs] == ["pattern", "red", "pattern"], runs
    assert all(n >= 25 for _, n in runs), runs  # type: ignore[operator]
