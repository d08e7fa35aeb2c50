"""``MediaService``: live video on one node — the switch, Janus, the channel pool and the sources.

Start order (``start``): the switch's UDP transport → Janus (``JanusEdge``, configuration rendered
into ``<data_dir>/janus``) → one Janus session of the node with a Streaming handle → the pool of
``[media] channels`` RTP mountpoints, each fed by two switch outputs (video H.264 with RTCP, audio
Opus) with stable SSRCs. ``stop`` undoes it in reverse: sources' ffmpeg children, mountpoints,
session, Janus, transport.

Viewers (``media.viewers``) ``lend()`` a channel, ``play(channel, code, spec)`` routes a camera into
it (the switch replays the camera's GOP so the first frame is immediate, and re-routing the same
channel is how polling switches without renegotiation), and ``give_back(channel)`` unroutes and
returns it.

Sources are ``vmesh.ingest`` sources (``SyntheticCamera``, ``RtspCamera``: supervised ffmpeg
children with states, failure reasons, a no-signal watchdog of ``no_signal_seconds`` and reconnects
with back-off), each sending RTP to a block of 4 ports of ``input_port_range`` (video, audio, their
RTCP). On-demand sources start when a camera is first played and stop ``source_linger_seconds``
after the last channel left them; RTSP cameras with ``attrs.pull = "always"`` start with the node
and never linger out. Every status change of a source is written to its directory entry
(online/offline and ``last_seen``, via ``SourceDirectory``) when the service has one.

``signal_of(code)`` maps the source's ingest state to a tile state: ``connecting`` (starting,
connecting, probing), ``playing`` (sending), ``no_signal`` (it sent and stopped) or ``error`` with
the reason (``"wrong credentials: 401 Unauthorized"``, ``"unsupported codec: video codec mjpeg"``,
``"unreachable: Connection refused"``). Switch counters and pool usage are exported to the node's
Prometheus registry.

A camera of another node (``vmesh.media.remote.RemoteSpec``) is carried here by the fabric
(``fabric``, set by the node process): the channel is routed from the fabric's input, and its
signal comes from the link (``no_signal`` naming the upstream node when packets stop).

Public: ``MediaService``, ``SourceSignal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vmesh.config import MediaConfig
from vmesh.edge.janus import JanusError, JanusHandle, JanusSession
from vmesh.edge.service import JanusEdge
from vmesh.edge.streaming import (
    STREAMING,
    RtpMountpoint,
    create_mountpoint,
    destroy_mountpoint,
)
from vmesh.errors import Conflict, VmeshError
from vmesh.ingest.ffmpeg import RtpTarget
from vmesh.ingest.rtsp import RtspCamera, RtspSettings
from vmesh.ingest.runner import FfmpegSource
from vmesh.ingest.status import IngestState, IngestStatus
from vmesh.ingest.synthetic import ClipCache, SyntheticCamera, SyntheticSpec
from vmesh.media.channels import Channel, ChannelPool
from vmesh.media.remote import FabricHooks, RemoteSpec
from vmesh.media.sources import SourceDirectory, SourceSpec, pull_of, source_from_attrs, utc
from vmesh.node.supervisor import DAEMON_RESTART, ProcessState, RestartPolicy
from vmesh.switch.codecs import Codec
from vmesh.switch.core import InputSpec, OutputSpec, Switch, SwitchConfig
from vmesh.switch.transport import SwitchTransport

log = logging.getLogger(__name__)


class BrowserHooks(Protocol):
    """What ``vmesh.media.publish.BrowserSources`` answers for the service."""

    def owns(self, spec: object) -> bool: ...

    def play(self, ch: Channel, code: str) -> None: ...

    def signal_of(self, code: str) -> SourceSignal | None: ...


class GbSourceFactory(Protocol):
    """What ``vmesh.gb28181.service.GbService`` answers for the service (a live INVITE source)."""

    def open_source(
        self,
        code: str,
        spec: object,
        target: RtpTarget,
        on_status: Callable[[IngestStatus], None] | None,
        stall_seconds: float,
    ) -> object: ...


@dataclass(frozen=True)
class SourceSignal:
    state: str  # connecting | playing | no_signal | error
    reason: str = ""


@dataclass
class _Source:
    code: str
    spec: SourceSpec
    port_base: int
    camera: FfmpegSource | None = None
    channels: set[int] = field(default_factory=set)
    linger: asyncio.Task[None] | None = None

    @property
    def always(self) -> bool:
        return pull_of(self.spec) == "always"

    @property
    def video_input(self) -> str:
        return f"{self.code}/video"

    @property
    def audio_input(self) -> str | None:
        # RTSP cameras are pulled video only: the channels' audio is Opus, cameras' mostly G.711
        # or AAC, and the switch does not transcode.
        has_audio = isinstance(self.spec, SyntheticSpec) and self.spec.audio
        return f"{self.code}/audio" if has_audio else None

    @property
    def target(self) -> RtpTarget:
        base = self.port_base
        return RtpTarget(
            "127.0.0.1",
            base,
            base + 2 if self.audio_input else None,
            video_ssrc=0x1000_0000 + base * 2,
            audio_ssrc=0x1000_0001 + base * 2,
        )


@dataclass
class _Remote:
    """A camera of another node carried here by the fabric, and the channels showing it."""

    code: str
    node: str
    since: float
    channels: set[int] = field(default_factory=set)
    audio: bool = False  # its audio carried too (a browser publication, RemoteSpec.audio)


class MediaService:
    """See the module docstring."""

    def __init__(
        self,
        config: MediaConfig,
        data_dir: Path,
        metrics: CollectorRegistry | None = None,
        *,
        ffmpeg: str = "ffmpeg",
        janus_binary: str = "janus",
        directory: SourceDirectory | None = None,
    ) -> None:
        self.config = config
        self.data_dir = data_dir.resolve()
        self.ffmpeg = ffmpeg
        self.directory = directory
        self.clips = ClipCache(self.data_dir / "ingest" / "clips", ffmpeg)
        self._presence: asyncio.Queue[tuple[str, bool, float | None]] = asyncio.Queue()
        self._presence_task: asyncio.Task[None] | None = None
        self._online: dict[str, bool] = {}
        self.janus_binary = janus_binary
        self.transport = SwitchTransport(
            Switch(SwitchConfig(gop_cache=config.gop_cache)),
            host="127.0.0.1",
            cpus=config.dataplane_cpus or None,
            realtime_priority=config.dataplane_priority or None,
        )
        self.pool = ChannelPool(config.channels, config.channel_port_range[0])
        self.edge: JanusEdge | None = None
        self.session: JanusSession | None = None
        self._handle: JanusHandle | None = None
        self._sources: dict[str, _Source] = {}
        self._source_locks: dict[str, asyncio.Lock] = {}
        self._used_input_bases: set[int] = set()
        self._started = False
        self._watch_task: asyncio.Task[None] | None = None
        # Browser cameras published into Janus's VideoRoom (vmesh.media.publish.BrowserSources);
        # set by that module on first use.
        self.browser: BrowserHooks | None = None
        self.publishing: object | None = None  # vmesh.media.publish.BrowserRoom, made on first use
        # GB/T 28181 channels (attrs.source = gb28181) are INVITEd through the node's GbService
        # ([gb28181] enabled); set by the node process.
        self.gb: GbSourceFactory | None = None
        # Cameras of other nodes come through the node's fabric agent ([fabric] enabled); set by
        # the node process (vmesh.media.remote).
        self.fabric: FabricHooks | None = None
        self._remote: dict[str, _Remote] = {}
        self._background: set[asyncio.Task[None]] = set()
        if metrics is not None:
            metrics.register(_MediaCollector(self))

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        c = self.config
        await self.transport.start()
        try:
            settings: dict[str, object] = {
                "http_port": c.janus_http_port,
                "admin_port": c.janus_admin_port,
                "rtp_port_range": c.ice_port_range,
                "streaming_port_range": c.streaming_port_range,
            }
            if c.public_address:
                settings["sdp_address"] = c.public_address
                settings["ice_enforce_list"] = (c.public_address,)
            self.edge = JanusEdge.for_data_dir(
                self.data_dir,
                binary=self.janus_binary,
                restart=DAEMON_RESTART,
                **settings,  # type: ignore[arg-type]
            )
            await self.edge.start()
            await self._open_channels()
        except BaseException:
            await self.stop()
            raise
        self._started = True
        self._watch_task = asyncio.create_task(self._watch_janus(), name="media-janus-watch")
        if self.directory is not None:
            self._presence_task = asyncio.create_task(
                self._write_presence(self.directory), name="media-presence"
            )
            await self._start_always(self.directory)
        log.info("media started channels=%d janus=%s", self.pool.size, self.edge.version)

    async def _start_always(self, directory: SourceDirectory) -> None:
        """Start the sources of cameras pulled ``always`` (a bad one is logged, not fatal)."""
        for code, name, attrs in await directory.always_pulled():
            try:
                await self._acquire_source(code, source_from_attrs(code, name, attrs))
            except Exception as e:
                log.warning("media source=%s (pull always) not started: %s", code, e)

    async def _open_channels(self) -> None:
        assert self.edge is not None
        self.session = await self.edge.client.create_session()
        self._handle = await self.session.attach(STREAMING)
        key = self.edge.settings.secrets.plugin_admin_key
        # Every mountpoint first: its ports are fixed ([media] channel_port_range, inside the
        # kernel's ephemeral range), and an output's RTCP socket bound to any free port in
        # between could take a later channel's port before Janus binds it ("Can't add 'rtp'
        # stream, error creating data source stream" at start, now and then).
        for ch in self.pool.channels:
            mp = RtpMountpoint.video_audio(
                ch.mountpoint_id,
                ch.name,
                video_port=ch.video_port,
                audio_port=ch.audio_port,
                description=f"vmesh {ch.name}",
            )
            await create_mountpoint(self._handle, mp, key)
        for ch in self.pool.channels:
            if ch.video_output not in self.transport.switch.snapshot().outputs:
                await self.transport.add_output(
                    OutputSpec(
                        ch.video_output,
                        Codec.h264,
                        ssrc=ch.video_ssrc,
                        dest=("127.0.0.1", ch.video_port),
                        rtcp_dest=("127.0.0.1", ch.video_port + 1),
                        payload_type=96,
                        nack_history=512,
                    )
                )
                await self.transport.add_output(
                    OutputSpec(
                        ch.audio_output,
                        Codec.opus,
                        ssrc=ch.audio_ssrc,
                        dest=("127.0.0.1", ch.audio_port),
                        payload_type=111,
                    )
                )

    async def _watch_janus(self) -> None:
        """If Janus restarts, its mountpoints are gone: make them again once it runs."""
        while True:
            session = self.session
            if session is None or self.edge is None:
                return
            await session.closed.wait()
            if not self._started:
                return
            log.warning("media janus session lost (%s); re-creating channels", session.close_reason)
            while self._started:
                try:
                    await self.edge.process.wait_for(ProcessState.RUNNING)
                    await self._open_channels()
                    break
                except Exception as e:
                    log.warning("media channels not re-created yet: %s", e)
                    await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Stop sources, mountpoints, Janus and the switch, in that order. Safe to call twice."""
        self._started = False
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None
        for src in list(self._sources.values()):
            await self._stop_source(src)
        if self._presence_task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._presence.join()
            self._presence_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._presence_task
            self._presence_task = None
        if (
            self._handle is not None
            and self.session is not None
            and not self.session.closed.is_set()
        ):
            for ch in self.pool.channels:
                with contextlib.suppress(Exception):
                    await destroy_mountpoint(self._handle, ch.mountpoint_id)
            with contextlib.suppress(Exception):
                await self.session.destroy()
        self._handle = None
        self.session = None
        if self.edge is not None:
            await self.edge.stop()
            self.edge = None
        await self.transport.close()
        log.info("media stopped")

    # --- channels -------------------------------------------------------------------------------

    def lend(self, owner: str) -> Channel:
        """A free channel for ``owner`` (``NoFreeChannel`` when every one is in use)."""
        return self.pool.acquire(owner)

    async def play(self, ch: Channel, code: str, spec: SourceSpec, *, user: str = "") -> None:
        """Route camera ``code`` into ``ch`` (starting its source if needed; a ``RemoteSpec``
        through the fabric, on behalf of ``user``)."""
        if ch.source == code:
            return
        if isinstance(spec, RemoteSpec):
            await self._play_remote(ch, code, spec, user)
            return
        if self.browser is not None and self.browser.owns(spec):
            previous = ch.source
            self.browser.play(ch, code)
            if previous is not None:
                self._release_source(previous, ch.index)
            return
        src = await self._acquire_source(code, spec)
        previous = ch.source
        sw = self.transport
        sw.route(ch.video_output, src.video_input)
        if src.audio_input is not None:
            sw.route(ch.audio_output, src.audio_input)
        else:
            sw.unroute(ch.audio_output)
        src.channels.add(ch.index)
        ch.source = code
        if previous is not None:
            self._release_source(previous, ch.index)
        log.info("media channel=%d source=%s previous=%s", ch.index, code, previous)

    async def page_session(self, current: JanusSession | None) -> JanusSession:
        """``current`` while it is open, else a new Janus session for a console page's handles.

        Raises ``JanusError`` when live video is not running on this node."""
        if current is None or current.closed.is_set():
            if self.edge is None:
                raise JanusError("create", None, "live video is not running on this node")
            current = await self.edge.client.create_session()
        return current

    def give_back(self, ch: Channel) -> None:
        """Unroute ``ch`` and return it to the pool."""
        if ch.owner is None:
            return
        with contextlib.suppress(Exception):
            self.transport.unroute(ch.video_output)
            self.transport.unroute(ch.audio_output)
        if ch.source is not None:
            self._release_source(ch.source, ch.index)
        self.pool.release(ch)
        log.info("media channel=%d released", ch.index)

    # --- cameras of other nodes (vmesh.media.remote) ----------------------------------------------

    async def _play_remote(self, ch: Channel, code: str, spec: RemoteSpec, user: str) -> None:
        if self.fabric is None:
            raise Conflict(
                f"camera {code} is at node {spec.node}; this node runs without [fabric] enabled"
            )

        async def early(input_id: str) -> None:
            # Routed while the hops above are asked: the first keyframe is shown as it comes.
            self.transport.route(ch.video_output, input_id)

        input_id = await self.fabric.acquire(
            code, spec.node, f"channel-{ch.index}", user, on_input=early
        )
        r = self._remote.get(code)
        if r is None:
            r = self._remote[code] = _Remote(code, spec.node, time.time())
        r.channels.add(ch.index)
        previous = ch.source
        self.transport.route(ch.video_output, input_id)
        audio = None
        if spec.audio:  # a browser publication's audio is a stream of its own (<code>/audio)
            r.audio = True
            try:
                audio = await self.fabric.acquire(
                    f"{code}/audio", spec.node, f"channel-{ch.index}", user
                )
            except VmeshError as e:
                log.warning("media channel=%d remote=%s no audio: %s", ch.index, code, e)
        if audio is not None:
            self.transport.route(ch.audio_output, audio)
        else:
            self.transport.unroute(ch.audio_output)  # a camera's video only
        ch.source = code
        if previous is not None:
            self._release_source(previous, ch.index)
        log.info(
            "media channel=%d remote=%s node=%s previous=%s", ch.index, code, spec.node, previous
        )

    def _release_remote(self, r: _Remote, channel: int) -> None:
        r.channels.discard(channel)
        if not r.channels and self._remote.get(r.code) is r:
            del self._remote[r.code]
        if self.fabric is not None:
            for stream in (r.code, f"{r.code}/audio") if r.audio else (r.code,):
                t = asyncio.ensure_future(self.fabric.release(stream, f"channel-{channel}"))
                self._background.add(t)
                t.add_done_callback(self._background.discard)

    def _remote_signal(self, r: _Remote) -> SourceSignal:
        sig = self.fabric.signal(r.code) if self.fabric is not None else None
        if sig is None:
            return SourceSignal("error", f"the stream from node {r.node} is not carried here")
        upstream, last = sig
        now = time.time()
        quiet = now - (last if last is not None else r.since)
        if quiet > self.config.no_signal_seconds:
            return SourceSignal(
                "no_signal",
                f"no video from node {upstream} for {quiet:.0f} s (camera at node {r.node})",
            )
        return SourceSignal("playing" if last is not None else "connecting")

    async def hold(self, code: str, spec: SourceSpec, holder: int) -> str:
        """Start (or share) camera ``code``'s source for ``holder`` (not a channel: the fabric);
        its video switch input id."""
        src = await self._acquire_source(code, spec)
        src.channels.add(holder)
        return src.video_input

    def unhold(self, code: str, holder: int) -> None:
        self._release_source(code, holder)

    # --- sources --------------------------------------------------------------------------------

    def source_running(self, code: str) -> bool:
        return code in self._sources

    def source_status(self, code: str) -> IngestStatus | None:
        """The ingest status of camera ``code``'s source, if it runs."""
        src = self._sources.get(code)
        return src.camera.status if src is not None and src.camera is not None else None

    def signal_of(self, code: str) -> SourceSignal:
        if (r := self._remote.get(code)) is not None:
            return self._remote_signal(r)
        if self.browser is not None and (sig := self.browser.signal_of(code)) is not None:
            return sig
        st = self.source_status(code)
        if st is None:
            return SourceSignal("connecting")
        if st.video_codec not in (None, "h264"):
            return SourceSignal(
                "error",
                f"unsupported codec: video codec {st.video_codec} "
                "(browser channels carry H.264 only)",
            )
        match st.state:
            case IngestState.SENDING:
                return SourceSignal("playing")
            case IngestState.NO_SIGNAL:
                return SourceSignal("no_signal", st.failure.reason if st.failure else "")
            case IngestState.ERROR:
                return SourceSignal("error", str(st.failure) if st.failure else "source failed")
            case _:
                return SourceSignal("connecting")

    async def _acquire_source(self, code: str, spec: SourceSpec) -> _Source:
        async with self._source_lock(code):
            src = self._sources.get(code)
            if src is not None and src.spec != spec:
                # The camera's attributes changed since its source started: start it anew.
                await self._stop_source(src)
                src = None
            if src is not None:
                if src.linger is not None:
                    src.linger.cancel()
                    src.linger = None
                return src
            src = await self._start_source(code, spec)
            self._sources[code] = src
            return src

    def _source_lock(self, code: str) -> asyncio.Lock:
        """Starting and stopping camera ``code``'s source never interleave."""
        return self._source_locks.setdefault(code, asyncio.Lock())

    def _free_input_base(self) -> int:
        lo, hi = self.config.input_port_range
        for base in range(lo, hi - 2, 4):
            if base in self._used_input_bases:
                continue
            if all(_udp_free(p) for p in range(base, base + 4)):
                return base
        raise Conflict(
            f"no free UDP ports left in [media] input_port_range {lo}-{hi} (4 per watched camera)"
        )

    async def _start_source(self, code: str, spec: SourceSpec) -> _Source:
        base = self._free_input_base()
        self._used_input_bases.add(base)
        src = _Source(code, spec, base)
        try:
            await self.transport.add_input(InputSpec(src.video_input, Codec.h264), port=base)
            if src.audio_input is not None:
                await self.transport.add_input(
                    InputSpec(src.audio_input, Codec.opus), port=base + 2
                )
            retry = RestartPolicy(initial_delay=1.0, factor=2.0, max_delay=30.0, window=600.0)
            stall = self.config.no_signal_seconds

            def on_status(st: IngestStatus) -> None:
                self._on_source_status(code, st)

            camera: FfmpegSource
            if type(spec).__name__ in ("GbSpec", "GbPlaybackSpec"):
                if self.gb is None:
                    raise Conflict("GB/T 28181 is not enabled on this node ([gb28181] enabled)")
                camera = self.gb.open_source(code, spec, src.target, on_status, stall)  # type: ignore[assignment]
            elif isinstance(spec, RtspSettings):
                camera = RtspCamera(
                    code,
                    spec,
                    src.target,
                    data_dir=self.data_dir,
                    on_status=on_status,
                    stall_seconds=stall,
                    retry=retry,
                )
            else:
                camera = SyntheticCamera(
                    spec,
                    src.target,
                    data_dir=self.data_dir,
                    clips=self.clips,
                    ffmpeg=self.ffmpeg if self.ffmpeg != "ffmpeg" else None,
                    on_status=on_status,
                    stall_seconds=stall,
                    retry=retry,
                )
            src.camera = camera
            await camera.start()
        except BaseException:
            self._remove_inputs(src)
            self._used_input_bases.discard(base)
            raise
        kind = "rtsp" if isinstance(spec, RtspSettings) else "synthetic"
        if type(spec).__name__ in ("GbSpec", "GbPlaybackSpec"):
            kind = "gb28181"
        log.info("media source=%s kind=%s pull=%s port=%d started", code, kind, pull_of(spec), base)
        return src

    def _on_source_status(self, code: str, st: IngestStatus) -> None:
        """Queue the directory's presence update when a source comes online or goes offline."""
        if self.directory is None or st.state in (
            IngestState.STARTING,
            IngestState.CONNECTING,
            IngestState.STOPPED,
        ):
            return  # starting says nothing yet; a stopped on-demand source is just unwatched
        online = st.online
        if self._online.get(code) == online:
            return
        self._online[code] = online
        self._presence.put_nowait((code, online, st.last_packet_at))

    async def _write_presence(self, directory: SourceDirectory) -> None:
        while True:
            code, online, last = await self._presence.get()
            try:
                seen = utc(last)
                if online and seen is None:
                    seen = utc(time.time())
                await directory.set_presence(code, online, seen)
            except Exception:
                log.warning("media presence of %s not written", code, exc_info=True)
            finally:
                self._presence.task_done()

    def _release_source(self, code: str, channel: int) -> None:
        r = self._remote.get(code)
        if r is not None and channel in r.channels:
            self._release_remote(r, channel)
            return
        src = self._sources.get(code)
        if src is None:
            return
        src.channels.discard(channel)
        if not src.channels and src.linger is None and not src.always:
            src.linger = asyncio.create_task(self._linger(src), name=f"linger-{code}")

    async def _linger(self, src: _Source) -> None:
        await asyncio.sleep(self.config.source_linger_seconds)
        # Under the camera's lock: a viewer who comes while the source stops waits for it to be
        # gone, then starts a new one (never "input … already exists").
        async with self._source_lock(src.code):
            if src.channels or self._sources.get(src.code) is not src:
                return
            src.linger = None
            await self._stop_source(src)

    async def _stop_source(self, src: _Source) -> None:
        if self._sources.get(src.code) is src:
            del self._sources[src.code]
        if src.linger is not None and src.linger is not asyncio.current_task():
            src.linger.cancel()
        # Its switch inputs go first (nothing routes to a stopping camera); its ports stay taken
        # until the process is gone, so no other camera's source is handed them meanwhile.
        self._remove_inputs(src)
        try:
            if src.camera is not None:
                await src.camera.stop()
        finally:
            self._used_input_bases.discard(src.port_base)
        log.info("media source=%s stopped", src.code)

    def _remove_inputs(self, src: _Source) -> None:
        for input_id in (src.video_input, src.audio_input):
            if input_id is not None:
                with contextlib.suppress(Exception):
                    self.transport.remove_input(input_id)

    # --- for metrics and tests ------------------------------------------------------------------

    @property
    def sources(self) -> dict[str, _Source]:
        return dict(self._sources)


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _MediaCollector(Collector):
    """Switch counters and channel pool usage, read at scrape time."""

    def __init__(self, media: MediaService) -> None:
        self.media = media

    def collect(self) -> Iterator[Metric]:
        snap = self.media.transport.switch.snapshot()
        in_labels = ["input"]
        ip = CounterMetricFamily("vmesh_switch_input_packets", "RTP packets in", labels=in_labels)
        ib = CounterMetricFamily("vmesh_switch_input_bytes", "RTP bytes in", labels=in_labels)
        il = GaugeMetricFamily(
            "vmesh_switch_input_lost_packets", "RTP packets lost (RFC 3550 A.3)", labels=in_labels
        )
        ij = GaugeMetricFamily(
            "vmesh_switch_input_jitter_seconds",
            "interarrival jitter (RFC 3550 A.8)",
            labels=in_labels,
        )
        for s in snap.inputs.values():
            ip.add_metric([s.id], s.packets)
            ib.add_metric([s.id], s.bytes)
            il.add_metric([s.id], s.lost)
            ij.add_metric([s.id], s.jitter)
        out_labels = ["output"]
        op = CounterMetricFamily(
            "vmesh_switch_output_packets", "RTP packets out", labels=out_labels
        )
        ob = CounterMetricFamily("vmesh_switch_output_bytes", "RTP bytes out", labels=out_labels)
        ol = GaugeMetricFamily(
            "vmesh_switch_output_lost_packets",
            "packets lost as the receiver reports",
            labels=out_labels,
        )
        oj = GaugeMetricFamily(
            "vmesh_switch_output_jitter_seconds",
            "jitter as the receiver reports",
            labels=out_labels,
        )
        for o in snap.outputs.values():
            op.add_metric([o.id], o.packets)
            ob.add_metric([o.id], o.bytes)
            ol.add_metric([o.id], o.receiver_lost)
            oj.add_metric([o.id], o.receiver_jitter)
        pool = self.media.pool
        size = GaugeMetricFamily("vmesh_media_channels", "channels in the pool")
        size.add_metric([], pool.size)
        busy = GaugeMetricFamily("vmesh_media_channels_in_use", "channels lent to viewers")
        busy.add_metric([], pool.busy)
        srcs = GaugeMetricFamily("vmesh_media_sources", "sources (cameras) running")
        srcs.add_metric([], len(self.media.sources))
        yield from (ip, ib, il, ij, op, ob, ol, oj, size, busy, srcs)
