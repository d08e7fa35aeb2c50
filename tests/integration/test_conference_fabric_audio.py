"""The fabric carries audio (issue 6 item 4): a stream ``<code>/audio`` is a lease of its own
beside ``<code>``, one Opus relay per link, opened hop by hop like video; a local source that
comes back on new switch inputs (a venue's browser publishing again) is re-bound to the outputs.
A venue's shared screen (双流) is the stream ``<code>-content``, carried the same way (once per
link); other stream names are refused naming the field.

Three fabric agents (province ← city ← county) on one real nats-server, each with its own switch;
the county's venue is an RTP sender of H.264-shaped video, Opus-shaped audio and an H.264-shaped
content stream (its payload tagged 0xC0) into three inputs.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from peers.nats_server import local_nats
from peers.rtp import RtpCollector, wait_until
from vmesh.errors import NotFound
from vmesh.fabric.service import FabricService, audio_stream
from vmesh.federation.bus import Bus, RemoteError
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, OutputSpec, Switch
from vmesh.switch.transport import SwitchTransport

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs nats-server"),
]

PROV, CITY, COUNTY = "33000000002006000011", "33030000002006000011", "33032800002006000011"
VENUE = "33032800001180000001"
CONTENT = f"{VENUE}-content"
PARENTS = {PROV: None, CITY: PROV, COUNTY: CITY}


class Venue:
    """A venue publishing at the county: video and audio RTP into two switch inputs, restartable
    on new inputs (as a page that publishes again)."""

    def __init__(self, transport: SwitchTransport) -> None:
        self.transport = transport
        self.gen = 0
        self.task: asyncio.Task[None] | None = None
        self.rebind: Any = None
        self.audio_sent = 0

    def inputs(self) -> tuple[str, str]:
        return f"{VENUE}/video#{self.gen}", f"{VENUE}/audio#{self.gen}"

    def content_input(self) -> str:
        return f"{CONTENT}/video#{self.gen}"

    async def publish(self) -> None:
        if self.task is not None:
            self.task.cancel()
            for i in (*self.inputs(), self.content_input()):
                self.transport.remove_input(i)
        self.gen += 1
        v, a = self.inputs()
        vport = await self.transport.add_input(InputSpec(v, Codec.h264), port=0)
        aport = await self.transport.add_input(InputSpec(a, Codec.opus), port=0)
        c = self.content_input()
        cport = await self.transport.add_input(InputSpec(c, Codec.h264), port=0)
        self.task = asyncio.create_task(self._run(vport, aport, cport))
        if self.rebind is not None:
            self.rebind(VENUE, v)
            self.rebind(audio_stream(VENUE), a)
            self.rebind(CONTENT, c)

    async def acquire(self, code: str) -> str:
        if code not in (VENUE, audio_stream(VENUE), CONTENT):
            raise NotFound(f"{code} is not publishing at this node")
        v, a = self.inputs()
        if code == CONTENT:
            return self.content_input()
        return a if code.endswith("/audio") else v

    def release(self, code: str) -> None:
        pass

    async def _run(self, vport: int, aport: int, cport: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        seq, frame = 0, 0
        try:
            while True:
                nal = 0x65 if frame % 25 == 0 else 0x41
                hdr = struct.pack("!BBHII", 0x80, 96 | 0x80, seq, frame * 3600, 0xB1DE0)
                s.sendto(hdr + bytes([nal]) + bytes(600), ("127.0.0.1", vport))
                chdr = struct.pack("!BBHII", 0x80, 96 | 0x80, seq, frame * 3600, 0xC0C0)
                s.sendto(chdr + bytes([nal]) + bytes(599) + b"\xc0", ("127.0.0.1", cport))
                for k in range(2):  # 20 ms Opus packets
                    ahdr = struct.pack("!BBHII", 0x80, 111, seq * 2 + k, frame * 1920, 0xA0D10)
                    s.sendto(ahdr + bytes([0x78]) + bytes(80), ("127.0.0.1", aport))
                    self.audio_sent += 1
                seq, frame = (seq + 1) & 0xFFFF, frame + 1
                await asyncio.sleep(0.04)
        finally:
            s.close()


@pytest.fixture
async def net() -> AsyncIterator[dict[str, Any]]:
    out: dict[str, Any] = {}
    async with local_nats() as url:
        try:
            for code in (PROV, CITY, COUNTY):
                tr = SwitchTransport(Switch())
                await tr.start()
                bus = await Bus.connect(url, code)

                async def tree(code: str = code) -> tuple[dict[str, str | None], str | None]:
                    return PARENTS, PARENTS[code]

                venue = Venue(tr)
                fab = FabricService(
                    node_code=code, bus=bus, transport=tr, address="127.0.0.1", tree=tree,
                    cameras=venue, linger=0.5,
                )  # fmt: skip
                venue.rebind = fab.rebind
                await fab.start()
                out[code] = (tr, fab, bus, venue)
            yield out
        finally:
            for tr, fab, bus, _ in out.values():
                await fab.stop()
                await bus.close()
                await tr.close()


async def _listen(tr: SwitchTransport, name: str, input_id: str, codec: Codec) -> RtpCollector:
    col, port = await RtpCollector.bind()
    ssrc = 0x7000 + sum(map(ord, name))
    await tr.add_output(OutputSpec(name, codec, ssrc=ssrc, dest=("127.0.0.1", port)))
    tr.route(name, input_id)
    return col


async def test_a_venues_audio_and_video_cross_each_link_once_and_survive_a_republish(
    net: dict[str, Any],
) -> None:
    (ptr, prov, _, _), (ctr, city, _, _) = net[PROV], net[CITY]
    ktr, county, _, venue = net[COUNTY]
    await venue.publish()
    a_in = await prov.acquire(audio_stream(VENUE), COUNTY, "a0", "chair")
    v_in = await prov.acquire(VENUE, COUNTY, "v0", "chair")
    assert a_in == f"fabric/{VENUE}/audio" and v_in == f"fabric/{VENUE}"
    heard = [await _listen(ptr, f"pa{i}", a_in, Codec.opus) for i in range(2)]
    seen = await _listen(ptr, "pv", v_in, Codec.h264)
    c_in = await city.acquire(audio_stream(VENUE), COUNTY, "a", "")
    heard.append(await _listen(ctr, "ca", c_in, Codec.opus))
    await wait_until(lambda: all(len(h.packets) >= 50 for h in heard), "50 audio packets each")
    await wait_until(lambda: seen.frames() >= 10, "10 frames")
    assert all(p.payload[0] == 0x78 for h in heard for p in h.packets), "audio carries audio"
    assert all(p.payload[0] & 0x1F in (5, 1) for p in seen.packets), "video carries video"

    # one copy per link for each stream: county→city and city→province, one output each
    snap = county.snapshot()
    assert list(snap[audio_stream(VENUE)]["links_out"]) == [CITY]
    assert list(snap[VENUE]["links_out"]) == [CITY]
    assert list(city.snapshot()[audio_stream(VENUE)]["links_out"]) == [PROV]
    outs = ktr.switch.snapshot().outputs
    assert outs[f"fabric/{VENUE}/audio>{CITY}"].packets <= venue.audio_sent

    # the venue's page publishes again on new inputs: the province hears it on the same output
    before = len(heard[0].packets)
    await venue.publish()
    await wait_until(lambda: len(heard[0].packets) >= before + 50, "audio after the republish")
    assert ktr.switch.snapshot().outputs[f"fabric/{VENUE}/audio>{CITY}"].packets > 0

    # everyone leaves: the audio lease closes hop by hop like a video one
    await prov.release(audio_stream(VENUE), "a0")
    await prov.release(VENUE, "v0")
    await city.release(audio_stream(VENUE), "a")
    await wait_until(
        lambda: all(audio_stream(VENUE) not in n[1].snapshot() for n in net.values()),
        "audio leases gone",
    )
    assert f"fabric/{VENUE}/audio>{CITY}" not in ktr.switch.snapshot().outputs


async def test_a_venues_content_crosses_each_link_once(net: dict[str, Any]) -> None:
    (ptr, prov, _, _), (ctr, city, _, _) = net[PROV], net[CITY]
    county, venue = net[COUNTY][1], net[COUNTY][3]
    await venue.publish()
    p_in = await prov.acquire(CONTENT, COUNTY, "c", "chair")
    assert p_in == f"fabric/{CONTENT}"
    shown = [await _listen(ptr, f"pc{i}", p_in, Codec.h264) for i in range(2)]
    shown.append(await _listen(ctr, "cc", await city.acquire(CONTENT, COUNTY, "c", ""), Codec.h264))
    await wait_until(lambda: all(s.frames() >= 10 for s in shown), "10 content frames each")
    assert all(p.payload[-1] == 0xC0 for s in shown for p in s.packets), "the content, not video"
    # one copy per link: county→city and city→province, one output each, no camera picture
    assert list(county.snapshot()[CONTENT]["links_out"]) == [CITY]
    assert list(city.snapshot()[CONTENT]["links_out"]) == [PROV]
    assert VENUE not in county.snapshot()
    await prov.release(CONTENT, "c")
    await city.release(CONTENT, "c")
    await wait_until(lambda: all(CONTENT not in n[1].snapshot() for n in net.values()), "gone")


@pytest.mark.parametrize(
    "stream", [f"{VENUE}/subtitles", f"{VENUE}-content/audio", f"{VENUE}-contents", "x-content"]
)
async def test_a_malformed_stream_is_refused_naming_the_field(
    net: dict[str, Any], stream: str
) -> None:
    _, prov, bus, _ = net[PROV]
    body = {"op": "open", "stream": stream, "camera_node": COUNTY, "from": PROV,
            "addr": "127.0.0.1", "port": 40000}  # fmt: skip
    with pytest.raises(RemoteError) as e:
        await bus.call(COUNTY, "fabric", body, timeout=5)
    assert e.value.status == 422 and e.value.errors[0].field == "stream", e.value.errors
    assert "-content" in e.value.errors[0].reason
    assert net[COUNTY][1].snapshot() == {}
    # a stream the county does not have: named, nothing left on the way
    with pytest.raises(Exception, match="not publishing"):
        await prov.acquire(audio_stream("33032800001180000099"), COUNTY, "x", "")
    assert prov.snapshot() == {} and net[CITY][1].snapshot() == {}
