"""GB/T 28181 device access end to end on one node's registrar (``GbService``) with the project's
simulated device (tests/peers/gb_device_sim.py) over real UDP: digest registration (and refusal),
keepalive → online, silence → offline, catalog → channels in the directory, DeviceInfo in attrs,
live INVITE → PS over RTP demuxed into a real switch input whose GOP cache fills, BYE on stop with
the SSRC count back to 0 on /metrics, PTZ from the HTTP API reaching the device (audited), and
the 401 challenge answered without keeping a transaction (RFC 3261 §8.2.7) while every nonce of
ours — a retransmission's, a reused one — stays good until its time to live."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from sqlalchemy import select

from conftest import make_config
from factories import add_user, bearer
from peers.gb_device_sim import GbDeviceSim, h264_clip
from vmesh.api.app import create_app
from vmesh.audit.log import Actor
from vmesh.audit.models import AuditRecord
from vmesh.config import Gb28181Config
from vmesh.directory.models import Entry
from vmesh.directory.store import Directory
from vmesh.gb28181.digest import answer_challenge, parse_auth_params
from vmesh.gb28181.message import SipResponse, parse_message
from vmesh.gb28181.service import GbService
from vmesh.gb28181.session import GbSpec
from vmesh.ingest.ffmpeg import RtpTarget
from vmesh.ingest.status import IngestState
from vmesh.node.context import NodeContext
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, Switch, SwitchConfig
from vmesh.switch.transport import SwitchTransport

pytestmark = pytest.mark.integration

REGION = "33000000002160000001"
IPC = "33000000001320000001"
IPC_CHANNEL = "33000000001310000001"
NVR = "33000000001180000001"
NVR_CHANNELS = [(f"3300000000131000001{i}", f"通道{i}号") for i in range(5)]
PASSWORD = "s3cret-node"


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 20) -> None:
    """Poll ``check`` until it holds (the limit only ends a hung test, it measures nothing)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeContext]:
    ctx = await NodeContext.open(make_config(tmp_path))
    await Directory(ctx.db, ctx.audit).create(
        Actor("test"), {"code": REGION, "name": "浙江省", "kind": "region", "tier": "province"}
    )
    try:
        yield ctx
    finally:
        if ctx.gb28181 is not None:
            await ctx.gb28181.stop()
        await ctx.close()


async def start_gb(ctx: NodeContext, **over: Any) -> GbService:
    cfg = Gb28181Config(
        enabled=True,
        sip_host="127.0.0.1",
        sip_port=over.pop("sip_port", 0),
        password=PASSWORD,
        parent_code=REGION,
        keepalive_interval_seconds=over.pop("keepalive", 60.0),
        catalog_timeout_seconds=5,
        media_port_range=(38100, 38199),
        **over,
    )
    gb = GbService(cfg, ctx.config.node.code, ctx.db, ctx.audit, ctx.metrics)
    await gb.start()
    ctx.gb28181 = gb
    return gb


async def device(gb: GbService, code: str, password: str = PASSWORD, **kw: Any) -> GbDeviceSim:
    sim = GbDeviceSim(code, password, gb.server_id, ("127.0.0.1", gb.port), **kw)
    await sim.start()
    return sim


async def entry(ctx: NodeContext, code: str) -> Entry | None:
    async with ctx.db.sessions() as s:
        return await s.scalar(select(Entry).where(Entry.code == code))


async def status_of(ctx: NodeContext, code: str) -> str | None:
    e = await entry(ctx, code)
    return None if e is None else e.status


async def audit_rows(ctx: NodeContext, action: str) -> list[tuple[str, str]]:
    async with ctx.db.sessions() as s:
        rows = await s.execute(
            select(AuditRecord.target_code, AuditRecord.result).where(AuditRecord.action == action)
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_register_catalog_keepalive_and_offline(node: NodeContext) -> None:
    gb = await start_gb(node, keepalive=0.5)
    nvr = await device(gb, NVR, channels=NVR_CHANNELS, page_size=2, name="一号录像机")
    answers: list[int] = []

    async def keep_alive() -> None:
        while True:
            answers.append(await nvr.keepalive())
            await asyncio.sleep(0.1)

    try:
        assert await nvr.register() == 200
        alive = asyncio.create_task(keep_alive())
        # The device is in the directory under the configured org unit, online.
        e = await entry(node, NVR)
        assert e is not None and e.kind == "nvr" and e.status == "online"

        # Catalog: 5 channels in 3 pages, each a camera under the NVR with its Chinese name.
        async def all_channels() -> bool:
            return all([await entry(node, c) is not None for c, _ in NVR_CHANNELS])

        await eventually(all_channels, "every catalog channel in the directory")
        assert nvr.catalog_queries == 1
        ch = await entry(node, NVR_CHANNELS[3][0])
        assert ch is not None and ch.name == "通道3号" and ch.kind == "camera"
        assert ch.parent_id == e.id and ch.status == "online"
        assert '"source":"gb28181"' in ch.attrs and f'"gb_device":"{NVR}"' in ch.attrs

        async def info_stored() -> bool:
            d = await entry(node, NVR)
            return d is not None and '"firmware":"1.0"' in d.attrs

        await eventually(info_stored, "DeviceInfo stored in the device's attrs")
        d = await entry(node, NVR)
        assert d is not None and d.name == "一号录像机" and '"encode":"ON"' in d.attrs

        # Keepalives keep it online past several intervals...
        async def many_keepalives() -> bool:
            return len(answers) >= 15

        await eventually(many_keepalives, "keepalives sent over several intervals")
        alive.cancel()
        assert set(answers) == {200}
        assert await status_of(node, NVR) == "online"

        # ...and silence takes it (and its channels) offline.
        async def offline() -> bool:
            return await status_of(node, NVR) == "offline"

        await eventually(offline, "device offline after missed keepalives")
        assert await status_of(node, NVR_CHANNELS[0][0]) == "offline"
        # Offline, its keepalive is refused (the device should re-register).
        assert await nvr.keepalive() == 403
        assert await nvr.register() == 200
        assert await status_of(node, NVR) == "online"
        assert (NVR, "ok") in await audit_rows(node, "gb28181.register")
        assert (NVR, "ok") in await audit_rows(node, "gb28181.offline")
        # Unregister.
        assert await nvr.register(expires=0) == 200
        assert await status_of(node, NVR) == "offline"
    finally:
        await nvr.close()


async def test_wrong_password_and_unknown_types_are_refused(node: NodeContext) -> None:
    gb = await start_gb(node)
    bad = await device(gb, IPC, password="wrong")
    alarm = await device(gb, "33000000001340000001")  # type 134: an alarm input, not a device
    try:
        assert await bad.register() == 403
        assert await entry(node, IPC) is None
        assert (IPC, "denied") in await audit_rows(node, "gb28181.register")
        assert await bad.keepalive() == 403
        assert await alarm.register() == 403
    finally:
        await bad.close()
        await alarm.close()


async def test_per_device_password_from_the_directory(node: NodeContext) -> None:
    await Directory(node.db, node.audit).create(
        Actor("test"),
        {
            "code": IPC,
            "name": "门口",
            "kind": "camera",
            "parent_code": REGION,
            "attrs": {"gb_password": "own-pass"},
        },
    )
    gb = await start_gb(node)
    node_pw = await device(gb, IPC)  # the node's password no longer works for this one
    own = await device(gb, IPC, password="own-pass")
    try:
        assert await node_pw.register() == 403
        assert await own.register() == 200
        assert await status_of(node, IPC) == "online"
    finally:
        await node_pw.close()
        await own.close()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
async def test_live_invite_feeds_the_switch_then_bye_releases_the_ssrc(
    node: NodeContext, tmp_path: Path
) -> None:
    gb = await start_gb(node)
    clip = h264_clip(tmp_path / "clip.h264")
    ipc = await device(gb, IPC, channels=[(IPC_CHANNEL, "大门")], clip=clip)
    transport = SwitchTransport(Switch(SwitchConfig(gop_cache=True)), host="127.0.0.1")
    await transport.start()
    try:
        assert await ipc.register() == 200

        async def channel_known() -> bool:
            return await entry(node, IPC_CHANNEL) is not None

        await eventually(channel_known, "the IPC's channel in the directory")
        ch = await entry(node, IPC_CHANNEL)
        assert ch is not None
        # An IPC cannot hold cameras in the directory: its channel sits beside it, linked.
        e = await entry(node, IPC)
        assert e is not None and ch.parent_id == e.parent_id

        port = await transport.add_input(InputSpec("gb/video", Codec.h264), port=0)
        states: list[IngestState] = []
        src = gb.open_source(
            IPC_CHANNEL,
            GbSpec(IPC, IPC_CHANNEL),
            RtpTarget("127.0.0.1", port),
            lambda st: states.append(st.state),
            3.0,
        )
        await src.start()
        assert gb.ssrcs.in_use == 1
        offer = ipc.invites[0] if ipc.invites else None

        async def gop_filled() -> bool:
            st = transport.switch.snapshot().inputs["gb/video"]
            return st.keyframes > 0 and st.gop_packets > 0 and st.packets > 50

        await eventually(gop_filled, "H.264 RTP at the switch input and its GOP cache filled")
        offer = ipc.invites[0]
        assert offer.session_name == "Play" and offer.ssrc == src.ssrc
        assert offer.port == src.port and ipc.acks == 1
        assert IngestState.SENDING in states and src.status.video_codec == "h264"
        metrics = generate_latest(node.metrics).decode()
        assert "vmesh_gb28181_ssrcs_in_use 1.0" in metrics

        await src.stop()
        assert ipc.byes == [src.call_id]
        assert gb.ssrcs.in_use == 0 and gb.sessions == {}
        assert "vmesh_gb28181_ssrcs_in_use 0.0" in generate_latest(node.metrics).decode()

        # A second session; the device unregistering ends it and frees its SSRC too.
        src2 = gb.open_source(
            IPC_CHANNEL, GbSpec(IPC, IPC_CHANNEL), RtpTarget("127.0.0.1", port), None, 3.0
        )
        await src2.start()

        async def playing() -> bool:
            return src2.status.state is IngestState.SENDING

        await eventually(playing, "second session sending")
        assert await ipc.register(expires=0) == 200

        async def released() -> bool:
            return gb.ssrcs.in_use == 0

        await eventually(released, "SSRC released when the device went away")
        assert src2.status.state is IngestState.ERROR
    finally:
        await ipc.close()
        await transport.close()


async def test_ptz_from_the_api_reaches_the_device(node: NodeContext) -> None:
    gb = await start_gb(node)
    nvr = await device(gb, NVR, channels=NVR_CHANNELS[:1])
    app = create_app(node)
    try:
        assert await nvr.register() == 200

        async def known() -> bool:
            return await entry(node, NVR_CHANNELS[0][0]) is not None

        await eventually(known, "channel in the directory")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://node.test"
        ) as c:
            secret = await add_user(node, "gbadmin", ["operator"], REGION)
            c.headers.update(bearer(secret))
            code = NVR_CHANNELS[0][0]
            r = await c.post("/api/gb28181/ptz", json={"code": code, "command": "left"})
            assert r.status_code == 200, r.text
            r = await c.post("/api/gb28181/ptz", json={"code": code, "command": "stop"})
            assert r.status_code == 200
            r = await c.post(
                "/api/gb28181/ptz", json={"code": code, "command": "preset_call", "speed": 7}
            )
            assert r.status_code == 200
            bad = await c.post("/api/gb28181/ptz", json={"code": code, "command": "fly"})
            assert bad.status_code == 422
            assert bad.json()["errors"][0]["field"] == "command"

        async def received() -> bool:
            return len(nvr.ptz) == 3

        await eventually(received, "three PTZ commands at the device")
        (c1, left), (_, stop), (_, preset) = nvr.ptz
        assert c1 == code and left.code == left.LEFT and left.data1 == 128
        assert stop.is_stop
        assert preset.code == 0x82 and preset.data2 == 7
        rows = await audit_rows(node, "gb28181.ptz")
        assert rows.count((code, "ok")) == 3
    finally:
        await nvr.close()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
async def test_media_service_plays_a_gb_channel_and_byes_after_the_linger(
    node: NodeContext, tmp_path: Path
) -> None:
    """The media service's own source path (what /api/live/ws uses): the channel's attrs name a
    GB source, its switch input fills, and when the last channel leaves, BYE after the linger."""
    from vmesh.config import MediaConfig
    from vmesh.media.service import MediaService
    from vmesh.media.sources import source_from_attrs

    gb = await start_gb(node)
    ipc = await device(
        gb, IPC, channels=[(IPC_CHANNEL, "大门")], clip=h264_clip(tmp_path / "c.h264")
    )
    media = MediaService(
        MediaConfig(source_linger_seconds=0.2, input_port_range=(38200, 38299)),
        tmp_path / "media",
    )
    media.gb = gb
    await media.transport.start()
    try:
        assert await ipc.register() == 200

        async def channel_known() -> bool:
            return await entry(node, IPC_CHANNEL) is not None

        await eventually(channel_known, "channel in the directory")
        ch = await entry(node, IPC_CHANNEL)
        assert ch is not None
        import json

        spec = source_from_attrs(IPC_CHANNEL, ch.name, json.loads(ch.attrs))
        assert spec == GbSpec(IPC, IPC_CHANNEL)
        src = await media._acquire_source(IPC_CHANNEL, spec)
        src.channels.add(0)

        async def gop_filled() -> bool:
            st = media.transport.switch.snapshot().inputs.get(src.video_input)
            return st is not None and st.keyframes > 0 and st.gop_packets > 0

        await eventually(gop_filled, "the media service's switch input GOP cache filled")
        assert media.signal_of(IPC_CHANNEL).state == "playing"
        media._release_source(IPC_CHANNEL, 0)  # what give_back does when the viewer leaves

        async def byed() -> bool:
            return len(ipc.byes) == 1 and gb.ssrcs.in_use == 0

        await eventually(byed, "BYE after the linger and the SSRC released")
        assert not media.source_running(IPC_CHANNEL)
    finally:
        await ipc.close()
        await media.transport.close()


class _RawDevice(asyncio.DatagramProtocol):
    """A device reduced to one UDP socket: the test writes its REGISTERs by hand."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        if isinstance(msg, SipResponse):  # the node's own queries after the 200 are not read
            self.responses.put_nowait(msg)


def _raw_register(gb: GbService, port: int, branch: str, cseq: int, auth: str = "") -> bytes:
    return (
        f"REGISTER sip:{gb.server_id}@{gb.domain} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bK{branch}\r\n"
        f"From: <sip:{IPC}@{gb.domain}>;tag=raw1\r\nTo: <sip:{IPC}@{gb.domain}>\r\n"
        f"Call-ID: raw-register-1\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:{IPC}@127.0.0.1:{port}>\r\nExpires: 3600\r\n"
        + (f"Authorization: {auth}\r\n" if auth else "")
        + "Content-Length: 0\r\n\r\n"
    ).encode()


async def test_challenge_is_stateless_and_any_nonce_of_ours_is_answered(node: NodeContext) -> None:
    gb = await start_gb(node)
    assert gb.endpoint is not None
    loop = asyncio.get_running_loop()
    transport, dev = await loop.create_datagram_endpoint(_RawDevice, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    dest = ("127.0.0.1", gb.port)

    async def sent(data: bytes) -> SipResponse:
        transport.sendto(data, dest)
        return await asyncio.wait_for(dev.responses.get(), 10)  # a hung-test guard only

    def kept_registers() -> list[tuple[str, ...]]:
        assert gb.endpoint is not None
        return [k for k in gb.endpoint.layer.servers if k[-1] == "REGISTER"]

    def answer(challenge: SipResponse) -> str:
        return answer_challenge(
            challenge.headers.get("WWW-Authenticate") or "", method="REGISTER",
            uri=f"sip:{gb.server_id}@{gb.domain}", username=IPC, password=PASSWORD,
        )  # fmt: skip

    try:
        first = _raw_register(gb, port, "a1", 1)
        c1 = await sent(first)
        assert c1.status == 401 and kept_registers() == []  # no transaction kept for the 401
        c2 = await sent(first)  # its retransmission: a 401 again, with a new nonce
        assert c2.status == 401 and kept_registers() == []
        assert c1.headers.get("WWW-Authenticate") != c2.headers.get("WWW-Authenticate")
        # The answer to the first challenge (the device may not have seen the second): 200.
        ok = await sent(_raw_register(gb, port, "a2", 2, answer(c1)))
        assert ok.status == 200
        assert await status_of(node, IPC) == "online"
        assert len(kept_registers()) == 1  # the 200 is kept for the REGISTER's retransmissions
        # The same nonce again for a refresh (GB devices reuse it): 200.
        assert (await sent(_raw_register(gb, port, "a3", 3, answer(c1)))).status == 200
        # A nonce of ours past its time to live: 401 stale=true, stateless too.
        old = parse_message(
            b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKo\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: o\r\nCSeq: 1 REGISTER\r\n"
            + f"WWW-Authenticate: {gb.digest.challenge(time.time() - 2 * gb.digest.nonce_ttl)}"
            .encode() + b"\r\n\r\n"
        )  # fmt: skip
        assert isinstance(old, SipResponse)
        stale = await sent(_raw_register(gb, port, "a4", 4, answer(old)))
        assert stale.status == 401
        assert "stale=true" in (stale.headers.get("WWW-Authenticate") or "")
        assert len(kept_registers()) == 2  # the two 200s; not the stale 401
        # A nonce we never issued: 401 (a fresh challenge), not 403.
        forged = (answer(c1)).replace(parse_auth_params(answer(c1))[1]["nonce"], "0" * 48)
        assert (await sent(_raw_register(gb, port, "a5", 5, forged))).status == 401
        assert len(kept_registers()) == 2
    finally:
        transport.close()
