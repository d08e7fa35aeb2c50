"""GB/T 28181 live media over TCP (RFC 4571 framing), both directions, into a real switch input.

``tcp_passive``: the node listens on a port of its media range and offers ``TCP/RTP/AVP`` with
``a=setup:passive``; the simulated IPC connects and streams. ``tcp_active``: the node offers
``a=setup:active``, the IPC answers ``a=setup:passive`` with a port it listens on, and the node
connects after the ACK. Either way the switch input's GOP cache fills, BYE on stop releases the
SSRC and the listening port, and the TCP stream closing from the device side ends the session.
A channel's ``attrs.gb_media`` of another value is refused with the field named.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_gb_device import IPC, IPC_CHANNEL, device, eventually, node, start_gb  # noqa: F401

from peers.gb_device_sim import h264_clip
from vmesh.errors import InvalidInput
from vmesh.gb28181.session import GbSpec
from vmesh.ingest.ffmpeg import RtpTarget
from vmesh.ingest.status import IngestState
from vmesh.node.context import NodeContext
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, Switch, SwitchConfig
from vmesh.switch.transport import SwitchTransport

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]


@pytest.mark.parametrize("mode", ["tcp_passive", "tcp_active"])
async def test_tcp_media_feeds_the_switch(node: NodeContext, tmp_path: Path, mode: str) -> None:  # noqa: F811
    gb = await start_gb(node)
    clip = h264_clip(tmp_path / "clip.h264")
    ipc = await device(gb, IPC, channels=[(IPC_CHANNEL, "大门")], clip=clip)
    transport = SwitchTransport(Switch(SwitchConfig(gop_cache=True)), host="127.0.0.1")
    await transport.start()
    try:
        assert await ipc.register() == 200
        port = await transport.add_input(InputSpec("gb/video", Codec.h264), port=0)
        spec = GbSpec.from_attrs(IPC_CHANNEL, {"gb_device": IPC, "gb_media": mode})
        src = gb.open_source(IPC_CHANNEL, spec, RtpTarget("127.0.0.1", port), None, 3.0)
        await src.start()

        async def gop_filled() -> bool:
            st = transport.switch.snapshot().inputs["gb/video"]
            return st.keyframes > 0 and st.gop_packets > 0 and st.packets > 50

        await eventually(gop_filled, f"H.264 over {mode} at the switch input, GOP cache filled")
        offer = ipc.invites[0]
        assert offer.tcp and offer.connection_new
        assert offer.setup == ("passive" if mode == "tcp_passive" else "active")
        assert src.status.state is IngestState.SENDING and src.access_units > 10
        if mode == "tcp_passive":
            assert offer.port == src.port and src.port in gb._used_ports

        await src.stop()
        assert ipc.byes == [src.call_id]
        assert gb.ssrcs.in_use == 0 and gb._used_ports == set()

        # The device closing the TCP stream ends the session and frees the SSRC.
        src2 = gb.open_source(IPC_CHANNEL, spec, RtpTarget("127.0.0.1", port), None, 3.0)
        await src2.start()

        async def sending() -> bool:
            return src2.status.state is IngestState.SENDING

        await eventually(sending, "second TCP session sending")
        for s in list(ipc.streams.values()):
            assert s.task is not None
            s.task.cancel()  # the device drops the connection (closes its writer)

        async def ended() -> bool:
            return gb.ssrcs.in_use == 0 and src2.status.state is IngestState.ERROR

        await eventually(ended, "session ended when the TCP stream closed")
        assert src2.status.failure is not None
        assert "TCP media stream closed" in str(src2.status.failure)
    finally:
        await ipc.close()
        await transport.close()


def test_unknown_media_mode_is_refused() -> None:
    with pytest.raises(InvalidInput) as e:
        GbSpec.from_attrs(IPC_CHANNEL, {"gb_device": IPC, "gb_media": "sctp"})
    assert e.value.errors[0].field == "attrs.gb_media"
