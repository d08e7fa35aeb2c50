"""GB/T 28181 device recordings against the node's ``GbService`` with the simulated NVR
(tests/peers/gb_nvr_sim.py) over real UDP: RecordInfo pages assembled by SN (and a lost page
ending the query at the timeout, saying so), a ``s=Playback`` INVITE whose PS over RTP reaches a
real switch input (decoded: the colour the NVR recorded at that time), INFO seek changing what the
device sends (the decoded colour changes), INFO pause stopping the packets, a refused Scale
reported, and MediaStatus 121 at the end of the recording ending the session: BYE at the device,
SSRC count back to 0."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

import av
import httpx
import pytest
from sqlalchemy import select

from factories import add_user, bearer
from integration.test_gb_device import (  # noqa: F401 - the node fixture: a NodeContext
    NVR,
    PASSWORD,
    REGION,
    entry,
    eventually,
    node,
)
from peers.gb_nvr_sim import COLOURS, GbNvrSim, colour_clips
from vmesh.api.app import create_app
from vmesh.audit.log import Actor
from vmesh.audit.models import AuditRecord
from vmesh.auth.principal import Principal
from vmesh.config import Gb28181Config
from vmesh.directory.store import Directory
from vmesh.errors import Conflict, InvalidInput
from vmesh.gb28181.playback import GbPlaybackSource, GbPlaybackSpec, playback_key
from vmesh.gb28181.playback_ws import GbPlaybackPage
from vmesh.gb28181.service import GbService
from vmesh.ingest.ffmpeg import RtpTarget
from vmesh.ingest.status import IngestState
from vmesh.node.context import NodeContext
from vmesh.recording.snapshot import depacketize
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, Switch, SwitchConfig
from vmesh.switch.transport import SwitchTransport

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]

CH1 = "33000000001310000031"
CH2 = "33000000001310000032"
OTHER = "35000000002160000001"  # a region outside the NVR's


async def start_gb(ctx: NodeContext, **over: Any) -> GbService:
    cfg = Gb28181Config(
        enabled=True,
        sip_host="127.0.0.1",
        password=PASSWORD,
        parent_code=REGION,
        catalog_timeout_seconds=over.pop("catalog_timeout", 5),
        media_port_range=(38300, 38399),
        **over,
    )
    gb = GbService(cfg, ctx.config.node.code, ctx.db, ctx.audit, ctx.metrics)
    await gb.start()
    ctx.gb28181 = gb
    return gb


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    return colour_clips(tmp_path_factory.mktemp("colours"))


def recorded(t0: float) -> dict[str, list[tuple[float, float]]]:
    """CH1: five segments (two gaps) from ``t0``; CH2: one."""
    return {
        CH1: [
            (t0, t0 + 120),
            (t0 + 120, t0 + 300),
            (t0 + 600, t0 + 660),
            (t0 + 660, t0 + 700),
            (t0 + 900, t0 + 960),
        ],
        CH2: [(t0, t0 + 60)],
    }


@pytest.fixture
async def nvr(
    node: NodeContext,  # noqa: F811 - the fixture imported above
    clips: dict[str, list[bytes]],
) -> AsyncIterator[tuple[GbService, GbNvrSim, float]]:
    gb = await start_gb(node, catalog_timeout=2)
    t0 = float((int(time.time()) // 60 - 30) * 60)  # half an hour ago, on a minute
    sim = GbNvrSim(
        NVR,
        PASSWORD,
        gb.server_id,
        ("127.0.0.1", gb.port),
        channels=[(CH1, "录像通道一"), (CH2, "录像通道二")],
        name="模拟录像机",
        recordings=recorded(t0),
        colour_clip=clips,
        record_page_size=2,
    )
    await sim.start()
    try:
        assert await sim.register() == 200

        async def channels() -> bool:
            return all([await entry(node, c) is not None for c in (CH1, CH2)])

        await eventually(channels, "the NVR's channels in the directory")
        yield gb, sim, t0
    finally:
        await sim.close()


def centre_colour(datagrams: list[bytes]) -> str:
    """The colour name nearest the centre pixel of the last picture the GOP decodes to."""
    dec = av.CodecContext.create("h264", "r")
    frames = []
    for pkt in dec.parse(depacketize(datagrams)) + dec.parse(None):
        frames += dec.decode(pkt)
    assert frames, "no picture decoded from the switch input's GOP"
    f = frames[-1].reformat(format="rgb24")
    plane = f.planes[0]
    i = (f.height // 2) * plane.line_size + (f.width // 2) * 3
    rgb = bytes(plane)[i : i + 3]
    return min(
        COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(COLOURS[n], rgb, strict=True))
    )


async def test_record_info_pages_are_assembled(
    nvr: tuple[GbService, GbNvrSim, float],
) -> None:
    gb, sim, t0 = nvr
    result = await gb.records.query(CH1, t0 - 60, t0 + 3600)
    # 5 items, 2 per MESSAGE: 3 pages, one SN, every item once.
    assert result.complete and result.sum_num == 5 and result.pages == 3
    assert [i.file_path for i in result.items] == [
        f"/rec/{CH1}/{int(a)}.ps" for a, _ in recorded(t0)[CH1]
    ]
    q = sim.record_queries[-1]
    assert q.device_id == CH1 and q.type == "all" and q.sn == result.sn

    from vmesh.gb28181.records import timeline_of

    tl = timeline_of(result, t0 - 60, t0 + 3600)
    # Touching segments merge: 3 spans; the gaps before, between and after them.
    assert [(s["start"] - t0, s["end"] - t0) for s in tl["spans"]] == [
        (0, 300),
        (600, 700),
        (900, 960),
    ]
    assert len(tl["gaps"]) == 4 and tl["recorded_seconds"] == 460

    # A narrower range: only the overlapping segment.
    one = await gb.records.query(CH2, t0 - 10, t0 + 10)
    assert one.complete and len(one.items) == 1 and one.pages == 1

    # Bad input is named; a lost page ends the query at the idle timeout with what came.
    with pytest.raises(InvalidInput) as bad:
        await gb.records.query(CH1, t0, t0 - 1)
    assert bad.value.errors[0].field == "end"
    with pytest.raises(InvalidInput) as bad_type:
        await gb.records.query(CH1, t0, t0 + 60, "everything")
    assert bad_type.value.errors[0].field == "type"
    sim.lose_record_page = 1
    partial = await gb.records.query(CH1, t0 - 60, t0 + 3600)
    assert not partial.complete and len(partial.items) == 3 and partial.sum_num == 5
    assert partial.error is not None and "3 of 5" in partial.error


async def test_playback_seek_pause_and_end_of_recording(
    nvr: tuple[GbService, GbNvrSim, float],
) -> None:
    gb, sim, t0 = nvr
    transport = SwitchTransport(Switch(SwitchConfig(gop_cache=True)), host="127.0.0.1")
    await transport.start()
    try:
        port = await transport.add_input(InputSpec("pb/video", Codec.h264), port=0)
        spec = GbPlaybackSpec.for_range(CH1, {"gb_device": NVR, "gb_channel": CH1}, t0, t0 + 300)
        states: list[IngestState] = []
        src = gb.open_source(
            playback_key(CH1),
            spec,
            RtpTarget("127.0.0.1", port),
            lambda st: states.append(st.state),
            3.0,
        )
        assert isinstance(src, GbPlaybackSource)
        await src.start()
        assert gb.ssrcs.in_use == 1 and src.ssrc is not None and src.ssrc.startswith("1")

        async def colour_is(name: str) -> bool:
            gop = transport.switch.gop("pb/video")
            return bool(gop) and centre_colour(gop) == name

        first = sim.colour_at(t0)
        await eventually(lambda: colour_is(first), f"{first} frames (the recording at t0)")
        offer = sim.invites[0]
        assert offer.session_name == "Playback" and offer.uri == f"{CH1}:0"
        assert (offer.start, offer.stop) == (int(t0), int(t0) + 300)
        assert offer.ssrc == src.ssrc and IngestState.SENDING in states

        # Seek: 90 s in, the NVR sends another minute's picture.
        await src.seek(90)
        later = sim.colour_at(t0 + 90)
        assert later != first
        await eventually(lambda: colour_is(later), f"{later} frames after the seek")
        assert sim.infos[-1].npt == 90 and sim.infos[-1].method == "PLAY"

        # Pause: once what was in flight arrived, nothing more comes until resumed.
        await src.pause()
        assert sim.infos[-1].method == "PAUSE"
        pb = sim.playbacks[src.call_id]

        async def drained() -> bool:
            return src.packets == pb.packets

        await eventually(drained, "every packet sent before the pause received")
        held = src.packets
        await asyncio.sleep(0.5)  # a paused device sends nothing, however long we look
        assert src.packets == held == pb.packets
        await src.resume()
        await eventually(lambda: _more(src, held), "packets again after PLAY npt=now-")

        # Speed: the NVR takes Scale 2; another that cannot refuses and we say so.
        await src.speed(2.0)
        assert sim.infos[-1].scale == 2.0 and pb.scale == 2.0
        sim.refuse_scale = True
        with pytest.raises(Conflict, match="457"):
            await src.speed(4.0)
        assert src.scale == 2.0
        with pytest.raises(InvalidInput):
            await src.speed(3.0)

        # Near the end: the NVR reaches it, sends MediaStatus 121; we BYE and free the SSRC.
        await src.seek(297)

        async def ended() -> bool:
            return gb.ssrcs.in_use == 0 and not gb.sessions

        await eventually(ended, "the session ended by MediaStatus 121")
        assert sim.media_status_sent == [src.call_id]
        assert sim.byes == [src.call_id] and src.ended_by_device
        assert src.status.state is IngestState.STOPPED
        with pytest.raises(Conflict):
            await src.pause()
    finally:
        await transport.close()


async def _more(src: GbPlaybackSource, than: int) -> bool:
    return src.packets > than


async def test_bye_from_us_releases_the_playback_ssrc(
    nvr: tuple[GbService, GbNvrSim, float],
) -> None:
    gb, sim, t0 = nvr
    spec = GbPlaybackSpec.for_range(CH2, {"gb_device": NVR, "gb_channel": CH2}, t0, t0 + 60)
    src = gb.open_source(playback_key(CH2), spec, RtpTarget("127.0.0.1", 9), None, 3.0)
    await src.start()

    async def sending() -> bool:
        return src.status.state is IngestState.SENDING

    await eventually(sending, "the playback sending")
    await src.stop()
    assert sim.byes == [src.call_id] and gb.ssrcs.in_use == 0 and gb.sessions == {}
    with pytest.raises(InvalidInput) as bad:
        GbPlaybackSpec.for_range(CH2, {"gb_device": NVR}, t0 + 10, t0)
    assert bad.value.errors[0].field == "end"


async def test_records_api_scope_audit_and_bad_input(
    node: NodeContext,  # noqa: F811 - the fixture imported above
    nvr: tuple[GbService, GbNvrSim, float],
) -> None:
    _, sim, t0 = nvr
    await Directory(node.db, node.audit).create(
        Actor("test"), {"code": OTHER, "name": "福建省", "kind": "region", "tier": "province"}
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(node)), base_url="http://node.test"
    ) as c:
        c.headers.update(bearer(await add_user(node, "rec-op", ["operator"], REGION)))
        r = await c.get(f"/api/gb28181/records/{CH1}", params={"start": t0 - 60, "end": t0 + 3600})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["complete"] and body["sum_num"] == 5 and len(body["items"]) == 5
        assert len(body["spans"]) == 3 and body["recorded_seconds"] == 460
        assert body["items"][0]["file_path"] == f"/rec/{CH1}/{int(t0)}.ps"

        bad = await c.get(f"/api/gb28181/records/{CH1}", params={"start": "yesterday", "end": 1})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "start"
        bad = await c.get(
            f"/api/gb28181/records/{CH1}", params={"start": t0, "end": t0 + 60, "type": "x"}
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "type"

        c.headers.update(bearer(await add_user(node, "fj-op", ["operator"], OTHER)))
        r = await c.get(f"/api/gb28181/records/{CH1}", params={"start": t0, "end": t0 + 60})
        assert r.status_code == 404
    queries = len(sim.record_queries)
    async with node.db.sessions() as s:
        rows = (
            await s.execute(
                select(AuditRecord.username, AuditRecord.result).where(
                    AuditRecord.action == "gb28181.records"
                )
            )
        ).all()
    assert ("rec-op", "ok") in [tuple(x) for x in rows]
    assert ("fj-op", "denied") in [tuple(x) for x in rows]
    assert queries == 1  # the refused and the malformed requests never reached the device


async def test_playback_messages_with_bad_input_are_refused_by_name(
    node: NodeContext,  # noqa: F811 - the fixture imported above
    nvr: tuple[GbService, GbNvrSim, float],
) -> None:
    """The live WebSocket's gb_playback/gb_control: wrong fields are named, nothing is started
    (no channel lent, no INVITE), and a channel outside the user's scope is not found."""
    _, sim, t0 = nvr
    region = await entry(node, REGION)
    assert region is not None
    sent: list[dict[str, Any]] = []

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    who = Principal(1, "pb-op", frozenset({"operator"}), REGION, region.path)
    page = GbPlaybackPage(node, who, media=None, live=None, send=send)
    cases = [
        ({"code": "123"}, "code"),
        ({"code": CH1, "start": "noon", "end": t0}, "start"),
        ({"code": CH1, "start": t0, "end": t0 - 60}, "end"),
        ({"code": CH1, "start": t0, "end": t0 + 2 * 86400}, "end"),
    ]
    for fields, wrong in cases:
        await page.handle({"type": "gb_playback", "tile": "pb", **fields})
        assert sent[-1]["type"] == "error" and sent[-1]["field"] == wrong, sent[-1]
    await page.handle({"type": "gb_control", "tile": "pb", "action": "rewind"})
    assert sent[-1]["field"] == "action"
    await page.handle({"type": "gb_control", "tile": "pb", "action": "pause"})
    assert sent[-1]["field"] == "tile"  # nothing plays on it
    outsider = Principal(2, "fj", frozenset({"operator"}), OTHER, "/other/")
    elsewhere = GbPlaybackPage(node, outsider, media=None, live=None, send=send)
    await elsewhere.handle(
        {"type": "gb_playback", "tile": "pb", "code": CH1, "start": t0, "end": t0 + 60}
    )
    assert sent[-1]["type"] == "error" and "not found" in sent[-1]["reason"]
    assert sim.invites == []
    await page.close()
