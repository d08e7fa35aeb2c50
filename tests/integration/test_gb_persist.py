"""GB/T 28181 registrations across a node restart, and catalogue subscriptions, on SQLite and
PostgreSQL (the ``ctx`` fixture runs both).

A simulated NVR registers; the node SUBSCRIBEs to its catalogue; the NVR's NOTIFYs (and a MESSAGE
of the same shape) add, delete and switch channels off and on in the directory. The node's GB
service is then stopped and a new one started on the same database and port: the NVR is still
known and online (its keepalive gets 200, PTZ reaches it without a new REGISTER), while an IPC
whose registration ended is known but offline until its keepalive's 403 makes it register again.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import generate_latest
from test_gb_device import (
    IPC,
    NVR,
    NVR_CHANNELS,
    REGION,
    audit_rows,
    device,
    entry,
    eventually,
    start_gb,
    status_of,
)

from vmesh.audit.log import Actor
from vmesh.directory.store import Directory
from vmesh.gb28181.manscdp import CatalogItem
from vmesh.gb28181.message import Headers, SipRequest, SipUri
from vmesh.gb28181.store import RegistrationStore
from vmesh.gb28181.transaction import new_branch
from vmesh.node.context import NodeContext

pytestmark = pytest.mark.integration

NEW_CHANNEL = "33000000001310000019"


def devices_online(ctx: NodeContext) -> float:
    for line in generate_latest(ctx.metrics).decode().splitlines():
        if line.startswith("vmesh_gb28181_devices_online "):
            return float(line.split()[1])
    raise AssertionError("no vmesh_gb28181_devices_online on /metrics")


async def test_catalog_subscription_and_restart(ctx: NodeContext) -> None:
    await Directory(ctx.db, ctx.audit).create(
        Actor("test"), {"code": REGION, "name": "浙江省", "kind": "region", "tier": "province"}
    )
    gb = await start_gb(ctx, catalog_subscribe_seconds=600)
    ch0, ch1 = NVR_CHANNELS[0][0], NVR_CHANNELS[1][0]
    nvr = await device(gb, NVR, channels=NVR_CHANNELS[:2], page_size=1)
    ipc = await device(gb, IPC, channels=[(IPC, "大门")])
    try:
        assert await nvr.register() == 200

        async def subscribed() -> bool:
            return nvr.subscribes == 1 and gb.devices[NVR].subscribed_until is not None

        # Catalogue pages, DeviceInfo, DeviceStatus, then SUBSCRIBE: a longer hang guard (a
        # loaded machine), not a measurement.
        await eventually(subscribed, "the node SUBSCRIBEd to the NVR's catalogue", limit=90)

        # NOTIFY: a new channel (GB2312 name), one switched off, one deleted.
        added = CatalogItem(NEW_CHANNEL, name="新增通道", parent_id=NVR, status="ON", event="ADD")
        off, gone = CatalogItem(ch0, event="OFF"), CatalogItem(ch1, event="DEL")
        assert await nvr.notify_catalog([added, off, gone]) == 200

        async def applied() -> bool:
            e = await entry(ctx, NEW_CHANNEL)
            return (
                e is not None
                and e.name == "新增通道"
                and await status_of(ctx, ch0) == "offline"
                and await entry(ctx, ch1) is None
            )

        await eventually(applied, "ADD, OFF and DEL applied to the directory", limit=90)
        assert (ch1, "ok") in await audit_rows(ctx, "directory.delete")
        # The same Notify in a MESSAGE (devices that do not use NOTIFY).
        assert await nvr.notify_catalog([CatalogItem(ch0, event="ON")], sip_method="MESSAGE") == 200

        async def back_on() -> bool:
            return await status_of(ctx, ch0) == "online"

        await eventually(back_on, "ON applied")

        # A NOTIFY of another event package is refused (489), and changes nothing.
        assert nvr.endpoint is not None
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {nvr.local[0]}:{nvr.local[1]};branch={new_branch()}")
        h.add("From", f"<sip:{NVR}@3300000000>;tag=x1")
        h.add("To", f"<sip:{gb.server_id}@3300000000>")
        h.add("Call-ID", "bad-event-1")
        h.add("CSeq", "1 NOTIFY")
        h.add("Event", "presence")
        bad = SipRequest(
            headers=h, body=b"", method="NOTIFY", uri=SipUri(host="127.0.0.1", user=gb.server_id)
        )
        assert (await nvr.endpoint.request(bad, ("127.0.0.1", gb.port))).status == 489

        # An IPC whose registration runs out (Expires 1) before the restart.
        assert await ipc.register(expires=1) == 200
        rows = {r.code: r for r in await RegistrationStore(ctx.db).load()}
        assert rows[NVR].online and rows[NVR].subscribed_until is not None
        assert rows[NVR].host == "127.0.0.1" and rows[NVR].port == nvr.local[1]
        await asyncio.sleep(1.2)

        # Restart: a new service on the same database and port.
        port = gb.port
        await gb.stop()
        gb = await start_gb(ctx, sip_port=port, catalog_subscribe_seconds=600)
        assert set(gb.devices) == {NVR, IPC}
        assert gb.devices[NVR].online and not gb.devices[IPC].online
        assert devices_online(ctx) == 1
        assert await status_of(ctx, IPC) == "offline"
        assert await status_of(ctx, NEW_CHANNEL) == "online"
        # The NVR carries on without registering again: keepalive 200, PTZ reaches it.
        assert await nvr.keepalive() == 200
        await gb.ptz(ch0, "left")

        async def steered() -> bool:
            return len(nvr.ptz) == 1

        await eventually(steered, "PTZ after the restart at the NVR", limit=90)
        # The IPC's keepalive gets 403; it registers again and is online.
        assert await ipc.keepalive() == 403
        assert await ipc.register() == 200
        assert gb.devices[IPC].online and devices_online(ctx) == 2
        assert await status_of(ctx, IPC) == "online"
    finally:
        await nvr.close()
        await ipc.close()
        if ctx.gb28181 is not None:
            await ctx.gb28181.stop()
