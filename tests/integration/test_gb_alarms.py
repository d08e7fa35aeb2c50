"""GB/T 28181 alarms end to end on a node's registrar with the project's simulated device
(tests/peers/gb_device_sim.py) over real UDP.

- The node SUBSCRIBEs to the device's alarms (``alarm_subscribe_seconds``). An alarm a device
  sends twice (two transactions: it got no answer the first time, as devices
  do) is stored, audited and published once, answered 200 and with a Response/Alarm MESSAGE
  each time, counted on /metrics and listed by the API to users whose scope holds the camera
  only; bad alarms get a 400 naming the element and store nothing (SQLite and PostgreSQL).
- With the node's listeners wired (``wire_alarms``), an alarm on a camera whose recording plan is
  ``alarm`` makes the real recorder (switch → ffmpeg) record it from the GB live stream for the
  plan's post-alarm seconds, a second alarm extends the window, the MP4 segments are linked to
  the alarm (PyAV decodes them); an alarm of a priority in ``[command] alarm_priorities`` opens an
  incident whose log names the alarm and has the camera on its wall, one of another priority
  none.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from prometheus_client import generate_latest
from sqlalchemy import func, select
from test_gb_device import (
    IPC,
    IPC_CHANNEL,
    REGION,
    audit_rows,
    device,
    entry,
    eventually,
    node,  # noqa: F401 (the fixture)
    start_gb,
)

from factories import add_user, bearer
from peers.gb_device_sim import GbDeviceSim, h264_clip
from vmesh.api.app import create_app
from vmesh.audit.log import Actor
from vmesh.config import MediaConfig, RecordingConfig
from vmesh.directory.store import Directory
from vmesh.gb28181.alarms import AlarmEvent, AlarmRow, wire_alarms
from vmesh.gb28181.manscdp import AlarmNotify
from vmesh.gb28181.service import GbService
from vmesh.node.context import NodeContext
from vmesh.recording import queries
from vmesh.recording.models import Segment
from vmesh.recording.service import RecordingService

pytestmark = pytest.mark.integration

OTHER_REGION = "33010000002160000001"
ALARM = AlarmNotify(
    IPC_CHANNEL, 4711, "2", "5", "2026-11-29T08:30:05", "大门入侵", 120.15, 30.25, "6"
)


def metric(ctx: NodeContext, result: str) -> float:
    want = f'vmesh_gb28181_alarms_total{{result="{result}"}} '
    for line in generate_latest(ctx.metrics).decode().splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    raise AssertionError(f"no {want} on /metrics")


async def alarm_count(ctx: NodeContext) -> int:
    async with ctx.db.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(AlarmRow)) or 0)


async def registered_ipc(ctx: NodeContext, gb: GbService, **kw: Any) -> GbDeviceSim:
    ipc = await device(gb, IPC, channels=[(IPC_CHANNEL, "大门")], **kw)
    assert await ipc.register() == 200

    async def channel_known() -> bool:
        return await entry(ctx, IPC_CHANNEL) is not None

    await eventually(channel_known, "the IPC's channel in the directory")
    return ipc


@pytest.fixture
async def api(ctx: NodeContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx), client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as c:
        yield c


async def test_an_alarm_is_stored_once_answered_listed_and_bad_ones_refused(
    ctx: NodeContext, api: httpx.AsyncClient
) -> None:
    d = Directory(ctx.db, ctx.audit)
    for code, name, tier in ((REGION, "浙江省", "province"), (OTHER_REGION, "杭州市", "city")):
        await d.create(Actor("test"), {"code": code, "name": name, "kind": "region", "tier": tier})
    gb = await start_gb(ctx, alarm_subscribe_seconds=30)
    heard: list[AlarmEvent] = []
    gb.alarms.listeners.append(heard.append)
    ipc = await registered_ipc(ctx, gb)
    try:

        async def subscribed() -> bool:
            return ipc.alarm_subscribes == ["presence"]

        await eventually(subscribed, "the node's alarm SUBSCRIBE at the device")
        # The device repeats the alarm in a new transaction: both answered, stored once.
        assert (await ipc.send_alarm(ALARM)).status == 200
        assert (await ipc.send_alarm(ALARM)).status == 200

        async def both_answered() -> bool:
            return len(ipc.alarm_responses) == 2

        await eventually(both_answered, "a Response/Alarm MESSAGE for each transaction")
        assert {(r.device_id, r.sn, r.result) for r in ipc.alarm_responses} == {
            (IPC_CHANNEL, 4711, "OK")
        }
        assert await alarm_count(ctx) == 1
        assert [(e.alarm.channel, e.alarm.priority) for e in heard] == [(IPC_CHANNEL, 2)]
        assert await audit_rows(ctx, "gb28181.alarm") == [(IPC_CHANNEL, "ok")]

        # Bad alarms: 400 naming the element, nothing stored, counted.
        bad = replace(ALARM, sn=4712, priority="9")
        r = await ipc.send_alarm(bad)
        assert r.status == 400 and "AlarmPriority" in r.reason
        wire = (
            b'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify><CmdType>Alarm</CmdType>'
            b"<SN>4713</SN><DeviceID>" + IPC_CHANNEL.encode() + b"</DeviceID>"
            b"<AlarmPriority>1</AlarmPriority><AlarmMethod>2</AlarmMethod>"
            b"<AlarmTime>2026-11-29T08:31:00</AlarmTime><Longitude>east</Longitude></Notify>"
        )
        assert (await ipc.send_alarm(ALARM, body=wire)).status == 400
        assert await alarm_count(ctx) == 1 and len(heard) == 1
        assert (metric(ctx, "new"), metric(ctx, "duplicate"), metric(ctx, "invalid")) == (1, 1, 1)

        # The API: the camera's region sees it; another region does not.
        ops = bearer(await add_user(ctx, "ops", ["operator"], REGION))
        far = bearer(await add_user(ctx, "far", ["operator"], OTHER_REGION))
        page = (await api.get("/api/gb28181/alarms", headers=ops)).json()
        assert page["total"] == 1
        a = page["items"][0]
        assert (a["device"], a["channel"], a["channel_name"]) == (IPC, IPC_CHANNEL, "大门")
        assert (a["priority"], a["method"], a["method_name"], a["type"]) == (2, 5, "video", "6")
        assert (a["description"], a["lon"], a["lat"]) == ("大门入侵", 120.15, 30.25)
        assert a["recording"] is None and a["incident"] is None
        r = await api.get(f"/api/gb28181/alarms?channel={IPC_CHANNEL}&priority=1", headers=ops)
        assert r.json()["total"] == 0
        r = await api.get(f"/api/gb28181/alarms?since={a['received_at'] + 60}", headers=ops)
        assert r.json()["total"] == 0
        assert (await api.get("/api/gb28181/alarms", headers=far)).json()["total"] == 0
        r = await api.get(f"/api/gb28181/alarms/{a['id']}", headers=far)
        assert r.status_code == 404
        r = await api.get(f"/api/gb28181/alarms/{a['id']}", headers=ops)
        assert r.status_code == 200 and r.json()["sn"] == 4711
        r = await api.get("/api/gb28181/alarms?since=yesterday", headers=ops)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "since"
        r = await api.get("/api/gb28181/alarms?channel=door", headers=ops)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channel"
    finally:
        await ipc.close()
        await gb.stop()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
async def test_an_alarm_records_its_camera_and_opens_an_incident(
    node: NodeContext,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    from vmesh.media.service import MediaService

    cmd = node.config.command.model_copy(update={"alarm_priorities": [1]})
    node.config = node.config.model_copy(update={"command": cmd})
    gb = await start_gb(node)
    media = MediaService(
        MediaConfig(source_linger_seconds=0.2, input_port_range=(38400, 38499)), tmp_path / "m"
    )
    media.gb = gb
    await media.transport.start()
    node.media = media
    rec = RecordingService(
        RecordingConfig(enabled=True, segment_seconds=1, stall_seconds=10),
        node.config.node.data_dir, node.db, node.audit, media,
    )  # fmt: skip
    await rec.start()
    node.recording = rec
    wire_alarms(node)
    ipc = await registered_ipc(node, gb, clip=h264_clip(tmp_path / "c.h264"))
    try:
        plan = {"mode": "alarm", "post_alarm_seconds": 3}
        await queries.save_plan(node, Actor("test"), IPC_CHANNEL, plan)
        await asyncio.sleep(0)
        assert IPC_CHANNEL not in rec.recorders  # an alarm plan records nothing by itself

        first = replace(ALARM, priority="1")
        assert (await ipc.send_alarm(first)).status == 200

        async def recording() -> bool:
            return rec.state_of(IPC_CHANNEL) == "recording"

        await eventually(recording, "the alarm started the camera's recorder", 60)
        started_until = rec.alarm_until[IPC_CHANNEL]
        second = replace(ALARM, sn=4720, priority="3")
        assert (await ipc.send_alarm(second)).status == 200

        async def extended() -> bool:
            return rec.alarm_until.get(IPC_CHANNEL, 0) > started_until

        await eventually(extended, "the second alarm extended the window")

        async def stopped() -> bool:
            return IPC_CHANNEL not in rec.recorders and IPC_CHANNEL not in rec.alarm_until

        await eventually(stopped, "the recorder stopped after the alarm window", 60)
        await gb.alarms.idle()
        async with node.db.sessions() as s:
            rows = (await s.scalars(select(AlarmRow).order_by(AlarmRow.sn))).all()
            segs = (await s.scalars(select(Segment).order_by(Segment.start_at))).all()
        assert [r.sn for r in rows] == [4711, 4720]
        assert segs and all(s.camera_code == IPC_CHANNEL for s in segs)
        api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(node)), base_url="http://n.test"
        )
        ops = bearer(await add_user(node, "ops", ["operator"], REGION))
        async with api:
            items = (await api.get("/api/gb28181/alarms", headers=ops)).json()["items"]
            t0, t1 = segs[0].start_at - 60, segs[-1].end_at + 60
            tl = await api.get(
                f"/api/recordings/{IPC_CHANNEL}/timeline?start={t0}&end={t1}", headers=ops
            )
        marks = tl.json()["alarms"]  # the timeline's alarm marks
        assert [(m["id"], m["priority"]) for m in marks] == [(r.id, int(r.priority)) for r in rows]
        by_sn = {a["sn"]: a for a in items}
        linked = by_sn[4711]["recording"]
        assert linked is not None and linked["segments"], linked
        assert linked["play"].startswith(f"/api/recordings/{IPC_CHANNEL}/play.mp4?start=")
        frames = 0
        for s in segs:
            path = rec.folder / s.path
            if any(x["start"] == s.start_at for x in linked["segments"]):
                with av.open(str(path)) as f:
                    frames += sum(1 for _ in f.decode(video=0))
        assert frames > 0

        # Priority 1 is configured: the first alarm opened an incident naming it; the second
        # (priority 3) did not.
        iid = by_sn[4711]["incident"]
        assert iid is not None and by_sn[4720]["incident"] is None
        inc, entries = await node.command.store.get(iid)  # type: ignore[union-attr]
        assert (inc.severity, inc.type, inc.lat, inc.lon) == ("I", "security", 30.25, 120.15)
        assert [e.action for e in entries] == ["open", "note", "feed_on"]
        assert {e.actor for e in entries} == {f"alarm:gb28181:{IPC}"}
        assert f"alarm #{by_sn[4711]['id']}" in entries[1].detail["text"]
        assert entries[2].detail["code"] == IPC_CHANNEL and IPC_CHANNEL in inc.feeds
    finally:
        await ipc.close()
        await rec.stop()
        await media.transport.close()
