"""The switch: a sans-IO crossbar of RTP inputs and output channels. No sockets, no clock, no tasks.

Datagrams go in, ``Send(dest, data)`` tuples come out; the caller (``switch/transport.py``, or a
test) owns the sockets and passes the time ``now`` (Unix seconds, float) to every call.

Model
-----
- An **input** (``InputSpec``) is one RTP stream from a source: an ingest process, a Janus
  ``rtp_forward``, a neighbour node. The switch counts its packets, bytes, loss (RFC 3550 A.3) and
  interarrival jitter (A.8), and for video keeps its **GOP cache**: every packet since the first
  packet of the last keyframe, bounded by bytes and packets (on overflow the cache is dropped until
  the next keyframe). It learns the source's SSRC from the first packet; a new SSRC, or a sequence
  jump confirmed by two packets (A.1), is a *source restart*: the cache is reset and video outputs
  wait for the next keyframe.
- An **output** (``OutputSpec``) is a long-lived channel, e.g. a Janus Streaming mountpoint: its own
  SSRC, a destination token, and continuous sequence numbers and timestamps for its whole life,
  whatever input feeds it. An output has at most one input; an input feeds any number of outputs.
- **route(output, input)** starts or changes ("splices") what an output carries. The new input is
  taken when it can be decoded from its first packet: audio at once; video when the input has a GOP
  cached, which is replayed first, so the first frame decodes without waiting for the next
  keyframe. Until then the output keeps its old input (or sends nothing, never delta frames it
  cannot decode) and a keyframe request goes to the new input if it accepts them. If the output
  is in the middle of a frame of its old input, the splice waits for that frame's end (marker bit or
  a new timestamp), at most ``SwitchConfig.splice_deadline`` seconds (``tick`` enforces it).
- ``route(..., replay=Replay.keyframe)`` (conference splices, where one roll call re-routes a
  hundred outputs at once) replays only the cached GOP's keyframe — the new picture at once, a few
  packets instead of the whole GOP per output — then asks the input for a keyframe and holds the
  output on that picture until the next keyframe arrives, where it goes live (no delta frame whose
  reference was skipped is ever sent). A source that sends none within
  ``SwitchConfig.keyframe_wait`` seconds gets the ``Replay.gop`` splice after all.
- At a splice the sequence offset is chosen so the output's numbers go on with no gap and no
  duplicate (late packets of the new input from before the splice are dropped), and the timestamp
  offset so the output's clock advances by the wall-clock time since its last packet (at least one
  frame interval). Replayed frames are stamped one tick apart ending at that point, so the receiver
  decodes them at once and shows the live picture: timestamps stay monotonic and aligned with real
  time.
- RTCP from an output's receiver: PLI, FIR and NACKs the output cannot answer from its own
  retransmission history (``OutputSpec.nack_history``) become a keyframe request to the input,
  at most one per ``keyframe_request_interval`` per input (a request inside the interval is held
  and sent by ``tick`` unless a keyframe arrives first). Receiver reports are kept in the output's
  counters. ``tick(now)`` returns due sender reports (+ CNAME) for outputs and receiver reports for
  inputs that have an RTCP destination.
- Malformed datagrams are counted on their input or output and dropped; they never raise.
  Unknown ids and contradictory configuration raise ``NotFound`` / ``Conflict`` / ``InvalidInput``.

Public: ``Switch``, ``SwitchConfig``, ``InputSpec``, ``OutputSpec``, ``KeyframeRequest``,
``Replay``, ``Send``, ``InputStats``, ``OutputStats``, ``SwitchSnapshot``.
"""

from __future__ import annotations

import logging
import random
import struct
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from vmesh.errors import Conflict, InvalidInput, NotFound
from vmesh.switch.codecs import (
    CODEC_KIND,
    DEFAULT_CLOCK_RATE,
    H264_KEY_TYPES,
    H265_KEY_TYPES,
    Codec,
    MediaKind,
    starts_keyframe,
)
from vmesh.switch.rtcp import (
    ReportBlock,
    RtcpBye,
    RtcpFir,
    RtcpNack,
    RtcpPacket,
    RtcpPli,
    RtcpReceiverReport,
    RtcpSdes,
    RtcpSenderReport,
    ntp_middle32,
    ntp_timestamp,
    parse_compound,
    serialize_compound,
)
from vmesh.switch.rtp import MalformedPacket, payload_bounds

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHII")
MAX_DROPOUT = 3000  # RFC 3550 A.1
MAX_MISORDER = 100
_IN_ORDER, _OLD, _BAD, _RESTART = 0, 1, 2, 3


class Send(NamedTuple):
    """One datagram to send: ``dest`` is the token given in the spec, ``data`` the bytes."""

    dest: Hashable
    data: bytes


class Replay(StrEnum):
    """What a video splice sends first (see the module docstring): the cached GOP, or only its
    keyframe and then live from the source's next keyframe (which is asked for)."""

    gop = "gop"
    keyframe = "keyframe"


class KeyframeRequest(StrEnum):
    """How to ask a source for a keyframe; ``none`` for sources that ignore RTCP (most cameras)."""

    none = "none"
    pli = "pli"
    fir = "fir"


@dataclass(frozen=True)
class SwitchConfig:
    gop_cache: bool = True
    gop_max_bytes: int = 4_000_000
    gop_max_packets: int = 4000
    keyframe_request_interval: float = 0.5
    rtcp_interval: float = 1.0
    splice_deadline: float = 0.1
    keyframe_wait: float = 1.0  # Replay.keyframe: then replay the GOP if no keyframe came


@dataclass(frozen=True)
class InputSpec:
    """An RTP source. ``rtcp_dest`` is where RTCP to the source goes (keyframe requests, RR)."""

    id: str
    codec: Codec
    clock_rate: int | None = None
    keyframe_request: KeyframeRequest = KeyframeRequest.none
    rtcp_dest: Hashable | None = None
    cname: str = "vmesh-switch"


@dataclass(frozen=True)
class OutputSpec:
    """An output channel. ``payload_type`` rewrites the PT if set; ``nack_history`` is the number
    of sent packets kept to answer NACKs (0: none, NACKs become keyframe requests)."""

    id: str
    codec: Codec
    ssrc: int
    dest: Hashable
    rtcp_dest: Hashable | None = None
    payload_type: int | None = None
    clock_rate: int | None = None
    nack_history: int = 0
    cname: str = "vmesh-switch"


@dataclass(frozen=True)
class InputStats:
    id: str
    codec: Codec
    ssrc: int | None
    packets: int
    bytes: int
    lost: int
    jitter: float  # seconds
    malformed: int
    dropped: int
    restarts: int
    keyframes: int
    gop_packets: int
    gop_bytes: int
    gop_overflows: int
    keyframe_requests_sent: int
    keyframe_requests_held: int
    keyframe_requests_unrelayable: int
    outputs: int


@dataclass(frozen=True)
class OutputStats:
    id: str
    codec: Codec
    ssrc: int
    input: str | None
    pending_input: str | None
    packets: int
    bytes: int
    replayed: int
    dropped: int
    splices: int
    nacks: int
    retransmitted: int
    plis: int
    firs: int
    rtcp_malformed: int
    receiver_fraction_lost: float
    receiver_lost: int
    receiver_jitter: float  # seconds
    rtt: float | None  # seconds
    send_errors: int = 0  # copies the transport could not send (forward_rtp)


@dataclass(frozen=True)
class SwitchSnapshot:
    inputs: dict[str, InputStats]
    outputs: dict[str, OutputStats]


class _Input:
    __slots__ = (
        "bad_seq",
        "base_seq",
        "bytes",
        "clock",
        "cur_key",
        "cur_ts",
        "cycles",
        "dropped",
        "expected_prior",
        "fanout",
        "fir_seq",
        "frame_interval",
        "frame_start",
        "gop",
        "gop_bytes",
        "gop_overflows",
        "gop_valid",
        "jit_arrival",
        "jit_ts",
        "jitter",
        "keyframes",
        "keytest",
        "kf_held",
        "kf_last",
        "kf_pending",
        "kf_sent",
        "kf_unrelayable",
        "kind",
        "local_ssrc",
        "lost_before",
        "malformed",
        "max_seq",
        "packets",
        "received",
        "received_prior",
        "restarts",
        "rr_due",
        "spec",
        "sr_at",
        "sr_mid",
        "ssrc",
        "video",
        "waiting",
    )  # fmt: skip

    def __init__(self, spec: InputSpec, clock: int, local_ssrc: int) -> None:
        self.spec = spec
        self.kind = CODEC_KIND[spec.codec]
        self.video = self.kind is MediaKind.video
        self.keytest = _KEYTEST.get(spec.codec, 0)
        self.clock = clock
        self.local_ssrc = local_ssrc
        self.ssrc: int | None = None
        self.packets = 0
        self.bytes = 0
        self.malformed = 0
        self.dropped = 0
        self.restarts = 0
        self.base_seq = 0
        self.max_seq: int | None = None
        self.cycles = 0
        self.bad_seq = -1
        self.received = 0
        self.lost_before = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self.jit_ts: int | None = None
        self.jit_arrival = 0.0
        self.gop: list[tuple[int, int, bytes, int]] = []  # (seq, ts, datagram, payload length)
        self.gop_bytes = 0
        self.gop_valid = False
        self.frame_start = 0
        self.cur_ts: int | None = None
        self.cur_key = False
        self.frame_interval = clock // 25 if self.kind is MediaKind.video else clock // 50
        self.keyframes = 0
        self.gop_overflows = 0
        self.fanout: tuple[_Output, ...] = ()
        self.waiting: list[_Output] = []
        self.kf_last: float | None = None
        self.kf_pending = False
        self.kf_sent = 0
        self.kf_held = 0
        self.kf_unrelayable = 0
        self.fir_seq = 0
        self.sr_mid = 0
        self.sr_at = 0.0
        self.rr_due: float | None = None  # when the next RR is due (tick: RFC 3550 timing)

    def ready(self) -> bool:
        """Whether an output can start on this input now (audio always; video on a cached GOP)."""
        return self.kind is MediaKind.audio or (self.gop_valid and bool(self.gop))

    def expected(self) -> int:
        return 0 if self.max_seq is None else self.cycles + self.max_seq - self.base_seq + 1

    def lost(self) -> int:
        return self.lost_before + max(0, self.expected() - self.received)

    def reset_seq(self, seq: int) -> None:
        self.lost_before = self.lost()
        self.base_seq = seq
        self.max_seq = seq
        self.cycles = 0
        self.bad_seq = -1
        self.received = 1
        self.expected_prior = 0
        self.received_prior = 0
        self.jit_ts = None

    def update_seq(self, seq: int) -> int:
        """RFC 3550 A.1 without probation: in order, old (reordered/duplicate), bad, restart."""
        if self.max_seq is None:
            self.reset_seq(seq)
            return _IN_ORDER
        udelta = (seq - self.max_seq) & 0xFFFF
        if 0 < udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += 0x10000
            self.max_seq = seq
            self.received += 1
            return _IN_ORDER
        if udelta == 0 or udelta > 0x10000 - MAX_MISORDER:
            self.received += 1
            return _OLD
        if seq == self.bad_seq:
            self.reset_seq(seq)
            return _RESTART
        self.bad_seq = (seq + 1) & 0xFFFF
        return _BAD

    def clear_gop(self) -> None:
        self.gop.clear()
        self.gop_bytes = 0
        self.gop_valid = False
        self.frame_start = 0


class _Output:
    __slots__ = (
        "bytes",
        "clock",
        "dest",
        "dropped",
        "ever_routed",
        "firs",
        "guard",
        "history",
        "input",
        "key_wait",
        "key_wait_since",
        "kind",
        "last_in_ts",
        "last_sent_at",
        "last_ts",
        "mask",
        "mid_frame",
        "nacks",
        "next_seq",
        "origin",
        "packets",
        "payload_bytes",
        "pending",
        "pending_since",
        "plis",
        "pt",
        "replay",
        "replayed",
        "retransmitted",
        "rr_fraction",
        "rr_jitter",
        "rr_lost",
        "rtcp_malformed",
        "rtt",
        "send_errors",
        "seq_offset",
        "spec",
        "splices",
        "sr_due",
        "sr_mid",
        "ssrc",
        "synced",
        "ts_offset",
    )  # fmt: skip

    def __init__(self, spec: OutputSpec, clock: int, first_seq: int, first_ts: int) -> None:
        self.spec = spec
        self.kind = CODEC_KIND[spec.codec]
        self.clock = clock
        self.ssrc = spec.ssrc
        self.dest = spec.dest
        self.pt = spec.payload_type
        self.input: _Input | None = None
        self.pending: _Input | None = None
        self.pending_since = 0.0
        self.synced = False
        self.seq_offset = 0
        self.ts_offset = 0
        self.guard = 0
        self.next_seq = first_seq
        self.last_ts = first_ts
        self.last_sent_at: float | None = None
        # (wall time, output timestamp) of the first synced frame: the output's clock follows
        # the wall clock from there across splices (``Switch._sync``)
        self.origin: tuple[float, int] | None = None
        self.last_in_ts: int | None = None
        self.mid_frame = False
        self.packets = 0
        self.bytes = 0
        self.payload_bytes = 0
        self.replayed = 0
        self.dropped = 0
        self.splices = 0
        self.nacks = 0
        self.retransmitted = 0
        self.plis = 0
        self.firs = 0
        self.rtcp_malformed = 0
        self.send_errors = 0
        self.rr_fraction = 0.0
        self.rr_lost = 0
        self.rr_jitter = 0.0
        self.rtt: float | None = None
        size = 1 << (spec.nack_history - 1).bit_length() if spec.nack_history > 0 else 0
        self.history: list[bytes | None] | None = [None] * size if size else None
        self.mask = size - 1
        self.sr_due: float | None = None  # when the next SR is due (tick: RFC 3550 timing)
        self.sr_mid = 0
        self.ever_routed = False
        self.replay = Replay.gop  # of the splice being made
        # Replay.keyframe: the input whose keyframe (by its count) was shown, waiting for the next
        self.key_wait: tuple[_Input, int] | None = None
        self.key_wait_since = 0.0


class Switch:
    """The crossbar. Every method that can produce datagrams returns them as ``list[Send]``."""

    def __init__(self, config: SwitchConfig | None = None, rng: random.Random | None = None):
        self.config = config or SwitchConfig()
        self._rng = rng or random.Random()
        self._inputs: dict[str, _Input] = {}
        self._outputs: dict[str, _Output] = {}

    # -- configuration -------------------------------------------------------------------------

    def add_input(self, spec: InputSpec) -> None:
        if spec.id in self._inputs:
            raise Conflict(f"input {spec.id!r} already exists")
        if spec.keyframe_request is not KeyframeRequest.none and spec.rtcp_dest is None:
            raise InvalidInput.one(
                "rtcp_dest", "needed to send keyframe requests", spec.keyframe_request
            )
        clock = _clock(spec.codec, spec.clock_rate)
        self._inputs[spec.id] = _Input(spec, clock, self._rng.getrandbits(32))

    def remove_input(self, input_id: str) -> None:
        """Forget an input; outputs it fed go on to their pending input, or carry nothing."""
        inp = self._input(input_id)
        for o in inp.fanout:
            o.input = None  # a pending input takes over on its next packet
            o.mid_frame = False
        for o in inp.waiting:
            o.pending = None
            o.key_wait = None
        del self._inputs[input_id]

    def add_output(self, spec: OutputSpec) -> None:
        if spec.id in self._outputs:
            raise Conflict(f"output {spec.id!r} already exists")
        if not 0 < spec.ssrc <= 0xFFFFFFFF:
            raise InvalidInput.one("ssrc", "must be between 1 and 4294967295", spec.ssrc)
        if any(o.ssrc == spec.ssrc for o in self._outputs.values()):
            raise Conflict(f"ssrc {spec.ssrc} is already used by another output")
        if spec.payload_type is not None and not 0 <= spec.payload_type <= 127:
            raise InvalidInput.one("payload_type", "must be between 0 and 127", spec.payload_type)
        if spec.nack_history < 0:
            raise InvalidInput.one("nack_history", "must not be negative", spec.nack_history)
        clock = _clock(spec.codec, spec.clock_rate)
        self._outputs[spec.id] = _Output(
            spec, clock, self._rng.getrandbits(16), self._rng.getrandbits(32)
        )

    def remove_output(self, output_id: str) -> list[Send]:
        """Forget an output; returns an RTCP BYE for its receiver if it has an RTCP destination."""
        self.unroute(output_id)
        o = self._outputs.pop(output_id)
        if o.spec.rtcp_dest is None or o.packets == 0:
            return []
        bye = serialize_compound([RtcpReceiverReport(o.ssrc), RtcpBye((o.ssrc,))])
        return [Send(o.spec.rtcp_dest, bye)]

    # -- routing -------------------------------------------------------------------------------

    def route(
        self, output_id: str, input_id: str, now: float, replay: Replay = Replay.gop
    ) -> list[Send]:
        """Make ``input_id`` feed ``output_id`` as soon as it can be decoded (see module doc);
        ``replay``: what a video splice sends first."""
        o = self._output(output_id)
        inp = self._input(input_id)
        if inp.spec.codec is not o.spec.codec:
            raise InvalidInput.one(
                "input_id",
                f"carries {inp.spec.codec}, output {output_id!r} carries {o.spec.codec}",
                input_id,
            )
        if inp.clock != o.clock:
            raise InvalidInput.one(
                "input_id", f"clock {inp.clock} Hz differs from the output's {o.clock} Hz", input_id
            )
        if o.input is inp and o.pending is None:
            return []
        if o.pending is inp:
            return []
        if o.pending is not None:
            o.pending.waiting.remove(o)
            o.pending = None
        o.key_wait = None
        if o.input is inp:  # back to the current input before the splice happened
            return []
        o.replay = replay
        o.pending = inp
        o.pending_since = now
        inp.waiting.append(o)
        out: list[Send] = []
        if inp.ready():
            if o.input is None or not o.mid_frame:
                self._activate(o, inp, now, out)
        else:
            self._request_keyframe(inp, now, out)
        return out

    def unroute(self, output_id: str) -> None:
        """Stop feeding ``output_id``; it keeps its SSRC, sequence and timestamp for next time."""
        o = self._output(output_id)
        if o.input is not None:
            o.input.fanout = tuple(x for x in o.input.fanout if x is not o)
            o.input = None
        if o.pending is not None:
            o.pending.waiting.remove(o)
            o.pending = None
        o.key_wait = None

    def _activate(self, o: _Output, inp: _Input, now: float, out: list[Send]) -> None:
        """Switch ``o`` to ``inp`` now, replaying ``inp``'s GOP cache if it is video (or, for
        ``Replay.keyframe``, only its keyframe while the GOP has more: ``_show_keyframe``)."""
        if o.replay is Replay.keyframe and inp.video and inp.gop:
            if o.key_wait is not None and o.key_wait[0] is inp:
                waiting = o.key_wait[1] == inp.keyframes  # no new keyframe yet
                if waiting and now - o.key_wait_since < self.config.keyframe_wait:
                    return
            elif inp.gop[-1][1] != inp.gop[0][1]:  # more than the keyframe: show it, wait
                self._show_keyframe(o, inp, now, out)
                return
        shown = o.key_wait is not None  # the splice was counted with the keyframe shown
        o.key_wait = None
        old = o.input
        if old is not None:
            old.fanout = tuple(x for x in old.fanout if x is not o)
        if o.pending is not None:
            o.pending.waiting.remove(o)
            o.pending = None
        if o.ever_routed and not shown:
            o.splices += 1
        o.ever_routed = True
        o.input = inp
        inp.fanout = (*inp.fanout, o)
        o.synced = False
        o.mid_frame = False
        o.last_in_ts = None
        if inp.kind is MediaKind.audio or not inp.gop:
            return
        frames: dict[int, int] = {}
        for _, ts, _, _ in inp.gop:
            frames.setdefault(ts, len(frames))
        last_ts = inp.gop[-1][1]
        m = len(frames)
        self._sync(o, inp, inp.gop[0][0], last_ts, now, m - 1)
        base = (last_ts + o.ts_offset - (m - 1)) & 0xFFFFFFFF
        for seq, ts, data, plen in inp.gop:
            self._emit(o, data, seq, (base + frames[ts]) & 0xFFFFFFFF, plen, now, out)
        o.replayed += len(inp.gop)
        o.last_in_ts = last_ts
        o.mid_frame = not inp.gop[-1][2][1] & 0x80

    def _show_keyframe(self, o: _Output, inp: _Input, now: float, out: list[Send]) -> None:
        """``Replay.keyframe``: send the cached GOP's keyframe (its first frame) now, leave the
        old input, stay pending on ``inp`` until its next keyframe, and ask for one."""
        old = o.input
        if old is not None:
            old.fanout = tuple(x for x in old.fanout if x is not o)
            o.input = None
        if o.ever_routed:
            o.splices += 1
        o.ever_routed = True
        key_ts = inp.gop[0][1]
        self._sync(o, inp, inp.gop[0][0], key_ts, now, 0)
        n = 0
        for seq, ts, data, plen in inp.gop:
            if ts != key_ts:
                break
            self._emit(o, data, seq, (ts + o.ts_offset) & 0xFFFFFFFF, plen, now, out)
            n += 1
        o.replayed += n
        o.last_in_ts = key_ts
        o.mid_frame = False
        o.key_wait = (inp, inp.keyframes)
        o.key_wait_since = now
        self._request_keyframe(inp, now, out)

    def _sync(self, o: _Output, inp: _Input, seq: int, ts: int, now: float, extra: int) -> None:
        """Choose offsets so input ``seq`` is the output's next number and input ``ts`` (the
        frame arriving ``now``) lands where the wall clock says the output is, at least a tick
        after its last timestamp (``extra`` ticks more for a replayed GOP's earlier frames).

        The wall clock counts from the output's first frame (``origin``), not from its last
        packet: anchored on the last packet, every splice's error was carried on (a keyframe,
        slower to encode, comes late), and with the old "at least a frame" per splice — a roll
        call splices twice, right after a packet — the output's clock ran two frames ahead of
        the wall clock per roll call; a receiver then holds every later frame that much longer
        (its jitter buffer's delay grew ~40 ms per roll call in the conference bench, to
        0.5 s). A splice moves the output's clock at most one frame beyond the time that
        passed, either way: a source whose capture clock drifted over hours is brought back a
        frame per splice, not in one jump the receiver would wait out."""
        if o.last_sent_at is None or o.origin is None:
            step = 0
            o.origin = (now, (o.last_ts + extra) & 0xFFFFFFFF)
        else:
            t0, ts0 = o.origin
            wall = (ts0 + round((now - t0) * o.clock)) & 0xFFFFFFFF
            behind = ((wall - o.last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            elapsed = round((now - o.last_sent_at) * o.clock)
            frame = inp.frame_interval
            step = min(max(behind - extra, elapsed - frame, 1), elapsed + frame)
        o.seq_offset = (o.next_seq - seq) & 0xFFFF
        o.ts_offset = (o.last_ts + step + extra - ts) & 0xFFFFFFFF
        o.guard = seq
        o.synced = True

    # -- media ---------------------------------------------------------------------------------

    def on_rtp(self, input_id: str, data: bytes, now: float) -> list[Send]:
        """One RTP datagram from an input; returns what to send to outputs (and sources)."""
        out: list[Send] = []

        def collect(buf: bytearray, dest: Hashable) -> None:
            out.append(Send(dest, bytes(buf)))

        return self.forward_rtp(input_id, data, now, collect, out)

    def forward_rtp(
        self,
        input_id: str,
        data: bytes,
        now: float,
        send: Callable[[bytearray, Any], object],
        out: list[Send] | None = None,
    ) -> list[Send]:
        """:meth:`on_rtp` for a transport: each output's copy is handed to ``send(buf, dest)``
        (the argument order of ``socket.sendto``, so a socket's ``sendto`` can be passed as it is)
        as soon as it is made, in a scratch buffer that is only valid during that call (send it,
        do not keep it). An ``OSError`` from ``send`` drops that copy and is counted in
        ``OutputStats.send_errors``. What is left (GOP replays, keyframe requests) is appended to
        ``out`` (a new list if not given), which is returned."""
        inp = self._inputs.get(input_id)
        if inp is None:
            raise NotFound(f"input {input_id!r} does not exist")
        if out is None:
            out = []
        # The per-packet path: plain ints and one scratch buffer; no packet objects.
        n = len(data)
        if n >= 12 and data[0] == 0x80 and not 200 <= data[1] <= 204:
            start, end = 12, n  # the plain 12-byte header nearly every source sends
        else:
            try:
                start, end = payload_bounds(data)
            except MalformedPacket as e:
                inp.malformed += 1
                log.debug(
                    "malformed rtp input=%s field=%s reason=%s", inp.spec.id, e.field, e.reason
                )
                return out
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        max_seq = inp.max_seq
        if inp.ssrc != ssrc and inp.ssrc is not None:
            inp.reset_seq(seq)
            state = _RESTART
        elif max_seq is not None and 0 < (seq - max_seq) & 0xFFFF < MAX_DROPOUT:
            if seq < max_seq:  # in order, the common case of update_seq
                inp.cycles += 0x10000
            inp.max_seq = seq
            inp.received += 1
            state = _IN_ORDER
        else:
            state = inp.update_seq(seq)
        inp.ssrc = ssrc
        if state == _BAD:
            inp.dropped += 1
            return out
        if state == _RESTART:
            self._restart(inp, now, out)
        inp.packets += 1
        inp.bytes += n
        in_order = state != _OLD
        if in_order and ts != inp.jit_ts:
            arrival = now * inp.clock
            if inp.jit_ts is not None:
                dts = ((ts - inp.jit_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                inp.jitter += (abs(arrival - inp.jit_arrival - dts) - inp.jitter) / 16
            inp.jit_ts = ts
            inp.jit_arrival = arrival
        plen = end - start
        video = inp.video
        if video:
            self._cache(inp, in_order, seq, ts, data, start, end)
        if inp.kf_pending:
            self._request_keyframe(inp, now, out)

        marker = bool(b1 & 0x80)
        buf: bytearray | None = None
        pack_into = _HEADER.pack_into
        for o in inp.fanout:
            if o.pending is not None or not o.synced:
                target = o.pending
                if target is not None and target.ready():
                    if in_order and ts != o.last_in_ts:
                        self._activate(o, target, now, out)
                        continue
                    self._forward(o, inp, data, seq, ts, marker, in_order, plen, now, out)
                    if marker:
                        self._activate(o, target, now, out)
                    continue
                self._forward(o, inp, data, seq, ts, marker, in_order, plen, now, out)
                continue
            # The steady state: an output synced to this input, nothing pending.
            g = (seq - o.guard) & 0xFFFF
            if g >= 0x8000:
                o.dropped += 1  # from before the splice: its number was used by the old input
                continue
            if g > 0x4000:
                o.guard = (seq - 0x2000) & 0xFFFF
            if in_order:
                o.last_in_ts = ts
                if video:
                    o.mid_frame = not marker
            oseq = (seq + o.seq_offset) & 0xFFFF
            ots = (ts + o.ts_offset) & 0xFFFFFFFF
            if buf is None:
                buf = bytearray(data)
            pt = o.pt
            pack_into(buf, 0, b0, b1 if pt is None else (b1 & 0x80) | pt, oseq, ots, o.ssrc)
            if (oseq - o.next_seq) & 0xFFFF < 0x8000:
                o.next_seq = (oseq + 1) & 0xFFFF
                o.last_ts = ots
                o.last_sent_at = now
            o.packets += 1
            o.bytes += n
            o.payload_bytes += plen
            if o.history is not None:
                o.history[oseq & o.mask] = bytes(buf)
            try:
                send(buf, o.dest)
            except OSError as e:  # UDP: a full send buffer or an ICMP error loses this copy
                o.send_errors += 1
                log.debug("send output=%s error=%s", o.spec.id, e)
        if inp.waiting and inp.ready():
            for o in tuple(inp.waiting):
                if o.input is None or not o.mid_frame:
                    self._activate(o, inp, now, out)
        return out

    def _forward(
        self,
        o: _Output,
        inp: _Input,
        data: bytes,
        seq: int,
        ts: int,
        marker: bool,
        in_order: bool,
        plen: int,
        now: float,
        out: list[Send],
    ) -> None:
        if not o.synced:
            self._sync(o, inp, seq, ts, now, 0)
        elif (seq - o.guard) & 0xFFFF >= 0x8000:
            o.dropped += 1  # from before the splice: its number was used by the old input
            return
        elif (seq - o.guard) & 0xFFFF > 0x4000:
            o.guard = (seq - 0x2000) & 0xFFFF
        if in_order:
            o.last_in_ts = ts
            if o.kind is MediaKind.video:
                o.mid_frame = not marker
        self._emit(o, data, seq, (ts + o.ts_offset) & 0xFFFFFFFF, plen, now, out)

    def _emit(
        self, o: _Output, data: bytes, seq: int, ots: int, plen: int, now: float, out: list[Send]
    ) -> None:
        oseq = (seq + o.seq_offset) & 0xFFFF
        b1 = data[1] if o.pt is None else (data[1] & 0x80) | o.pt
        pkt = _HEADER.pack(data[0], b1, oseq, ots, o.ssrc) + data[12:]
        if (oseq - o.next_seq) & 0xFFFF < 0x8000:
            o.next_seq = (oseq + 1) & 0xFFFF
            o.last_ts = ots
            o.last_sent_at = now
        o.packets += 1
        o.bytes += len(pkt)
        o.payload_bytes += plen
        if o.history is not None:
            o.history[oseq & o.mask] = pkt
        out.append(Send(o.dest, pkt))

    def _cache(
        self, inp: _Input, in_order: bool, seq: int, ts: int, data: bytes, start: int, end: int
    ) -> None:
        """Keep the GOP: from the first packet of the last keyframe's frame to now."""
        if in_order and ts != inp.cur_ts:
            if inp.cur_ts is not None:
                dts = (ts - inp.cur_ts) & 0xFFFFFFFF
                if 0 < dts < inp.clock:
                    inp.frame_interval = dts
            inp.cur_ts = ts
            inp.cur_key = False
            if not inp.gop_valid or not self.config.gop_cache:
                inp.clear_gop()  # without a valid GOP only the current frame matters
            inp.frame_start = len(inp.gop)
        if ts == inp.cur_ts and not inp.cur_key and _starts_keyframe(inp, data, start, end):
            if inp.frame_start:
                dropped = inp.gop[: inp.frame_start]
                del inp.gop[: inp.frame_start]
                inp.gop_bytes -= sum(len(d) for _, _, d, _ in dropped)
                inp.frame_start = 0
            inp.gop_valid = True
            inp.cur_key = True
            inp.keyframes += 1
            inp.kf_pending = False
        inp.gop.append((seq, ts, data, end - start))
        inp.gop_bytes += len(data)
        cfg = self.config
        if inp.gop_valid and (
            inp.gop_bytes > cfg.gop_max_bytes or len(inp.gop) > cfg.gop_max_packets
        ):
            inp.gop_overflows += 1
            inp.clear_gop()
            inp.frame_start = 0

    def _restart(self, inp: _Input, now: float, out: list[Send]) -> None:
        """The source behind ``inp`` started over: its old GOP and offsets are worthless."""
        inp.restarts += 1
        inp.clear_gop()
        inp.cur_ts = None
        inp.cur_key = False
        for o in inp.fanout:
            o.synced = False
            if inp.kind is MediaKind.video:
                o.input = None
                if o.pending is None:
                    o.pending = inp
                    o.pending_since = now
                    inp.waiting.append(o)
        if inp.kind is MediaKind.video:
            inp.fanout = ()
            if inp.waiting:
                self._request_keyframe(inp, now, out)

    # -- RTCP ----------------------------------------------------------------------------------

    def on_rtcp(self, output_id: str, data: bytes, now: float) -> list[Send]:
        """RTCP from an output's receiver: reports, NACK (answered or escalated), PLI, FIR."""
        o = self._output(output_id)
        try:
            packets = parse_compound(data)
        except MalformedPacket as e:
            o.rtcp_malformed += 1
            log.debug("malformed rtcp output=%s field=%s reason=%s", output_id, e.field, e.reason)
            return []
        out: list[Send] = []
        want_key = False
        for p in packets:
            if isinstance(p, RtcpReceiverReport | RtcpSenderReport):
                for block in p.reports:
                    if block.ssrc == o.ssrc:
                        self._receiver_report(o, block, now)
            elif isinstance(p, RtcpPli):
                if p.media_ssrc in (o.ssrc, 0):
                    o.plis += 1
                    want_key = True
            elif isinstance(p, RtcpFir):
                if any(ssrc == o.ssrc for ssrc, _ in p.entries):
                    o.firs += 1
                    want_key = True
            elif isinstance(p, RtcpNack) and p.media_ssrc == o.ssrc:
                o.nacks += 1
                for s in p.lost:
                    got = o.history[s & o.mask] if o.history is not None else None
                    if got is not None and int.from_bytes(got[2:4], "big") == s:
                        o.retransmitted += 1
                        out.append(Send(o.spec.dest, got))
                    else:
                        want_key = True
        source = o.input or o.pending
        if want_key and source is not None and source.kind is MediaKind.video:
            self._request_keyframe(source, now, out)
        return out

    def on_input_rtcp(self, input_id: str, data: bytes, now: float) -> list[Send]:
        """RTCP from a source: its sender reports are kept for our receiver reports' LSR/DLSR."""
        inp = self._input(input_id)
        try:
            packets = parse_compound(data)
        except MalformedPacket as e:
            inp.malformed += 1
            log.debug("malformed rtcp input=%s field=%s reason=%s", input_id, e.field, e.reason)
            return []
        for p in packets:
            if isinstance(p, RtcpSenderReport) and p.ssrc == inp.ssrc:
                inp.sr_mid = ntp_middle32(p.ntp_timestamp)
                inp.sr_at = now
        return []

    def _receiver_report(self, o: _Output, block: ReportBlock, now: float) -> None:
        o.rr_fraction = block.fraction_lost / 256
        o.rr_lost = block.cumulative_lost
        o.rr_jitter = block.jitter / o.clock
        if block.lsr:
            a = ntp_middle32(ntp_timestamp(now))
            rtt = ((a - block.lsr - block.dlsr) & 0xFFFFFFFF) / 65536
            if rtt < 60:
                o.rtt = rtt

    def _request_keyframe(self, inp: _Input, now: float, out: list[Send]) -> None:
        dest = inp.spec.rtcp_dest
        if inp.spec.keyframe_request is KeyframeRequest.none or dest is None:
            inp.kf_unrelayable += 1
            inp.kf_pending = False
            return
        if inp.ssrc is None or (
            inp.kf_last is not None and now - inp.kf_last < self.config.keyframe_request_interval
        ):
            if not inp.kf_pending:
                inp.kf_held += 1
            inp.kf_pending = True
            return
        inp.kf_pending = False
        inp.kf_last = now
        inp.kf_sent += 1
        req: RtcpPacket
        if inp.spec.keyframe_request is KeyframeRequest.pli:
            req = RtcpPli(inp.local_ssrc, inp.ssrc)
        else:
            inp.fir_seq = (inp.fir_seq + 1) & 0xFF
            req = RtcpFir(inp.local_ssrc, ((inp.ssrc, inp.fir_seq),))
        out.append(Send(dest, serialize_compound([RtcpReceiverReport(inp.local_ssrc), req])))

    # -- time ----------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Send]:
        """Due work: overdue splices, held keyframe requests, sender and receiver reports."""
        out: list[Send] = []
        cfg = self.config
        for o in self._outputs.values():
            t = o.pending
            if t is not None and t.ready() and now - o.pending_since >= cfg.splice_deadline:
                self._activate(o, t, now, out)
        for inp in self._inputs.values():
            if inp.kf_pending:
                self._request_keyframe(inp, now, out)
            if inp.spec.rtcp_dest is None or inp.ssrc is None:
                continue
            send, inp.rr_due = self._rtcp_due(inp.rr_due, now)
            if send:
                out.append(Send(inp.spec.rtcp_dest, self._input_rr(inp, now)))
        for o in self._outputs.values():
            if o.spec.rtcp_dest is None or o.last_sent_at is None:
                continue
            send, o.sr_due = self._rtcp_due(o.sr_due, now)
            if send:
                out.append(Send(o.spec.rtcp_dest, self._output_sr(o, now)))
        return out

    def _rtcp_due(self, due: float | None, now: float) -> tuple[bool, float]:
        """RFC 3550 §6.2/§6.3 timing of one stream's reports: whether one is due now, and when the
        next is. The first comes a random part of half an interval after it can be made (a
        hundred outputs routed at once do not all report in one tick), then every interval times
        a random factor in [0.5, 1.5] (they never fall back into step). Each tick then makes a
        few reports, not one for every stream."""
        interval = self.config.rtcp_interval
        if due is None:
            return False, now + interval * 0.5 * self._rng.random()
        if now < due:
            return False, due
        return True, now + interval * (0.5 + self._rng.random())

    def _output_sr(self, o: _Output, now: float) -> bytes:
        assert o.last_sent_at is not None
        ntp = ntp_timestamp(now)
        rtp_ts = (o.last_ts + round((now - o.last_sent_at) * o.clock)) & 0xFFFFFFFF
        sr = RtcpSenderReport(o.ssrc, ntp, rtp_ts, o.packets, o.payload_bytes)
        return serialize_compound([sr, RtcpSdes.cname(o.ssrc, o.spec.cname)])

    def _input_rr(self, inp: _Input, now: float) -> bytes:
        assert inp.ssrc is not None and inp.max_seq is not None
        expected = inp.expected()
        exp_i = expected - inp.expected_prior
        rec_i = inp.received - inp.received_prior
        inp.expected_prior = expected
        inp.received_prior = inp.received
        lost_i = exp_i - rec_i
        fraction = (lost_i << 8) // exp_i if exp_i > 0 and lost_i > 0 else 0
        dlsr = round((now - inp.sr_at) * 65536) if inp.sr_mid else 0
        block = ReportBlock(
            ssrc=inp.ssrc,
            fraction_lost=min(fraction, 255),
            cumulative_lost=inp.lost(),
            highest_sequence=inp.cycles + inp.max_seq,
            jitter=int(inp.jitter),
            lsr=inp.sr_mid,
            dlsr=dlsr,
        )
        rr = RtcpReceiverReport(inp.local_ssrc, (block,))
        return serialize_compound([rr, RtcpSdes.cname(inp.local_ssrc, inp.spec.cname)])

    # -- counters ------------------------------------------------------------------------------

    def output_counts(self, output_id: str) -> tuple[int, int, int] | None:
        """(RTP packets, bytes, retransmissions) sent by one output so far; ``None`` for an
        unknown output. Cheaper than ``snapshot`` for one output."""
        o = self._outputs.get(output_id)
        return None if o is None else (o.packets, o.bytes, o.retransmitted)

    def snapshot(self) -> SwitchSnapshot:
        """Counters of every input and output, for ``/metrics`` and tests."""
        inputs = {
            i.spec.id: InputStats(
                id=i.spec.id,
                codec=i.spec.codec,
                ssrc=i.ssrc,
                packets=i.packets,
                bytes=i.bytes,
                lost=i.lost(),
                jitter=i.jitter / i.clock,
                malformed=i.malformed,
                dropped=i.dropped,
                restarts=i.restarts,
                keyframes=i.keyframes,
                gop_packets=len(i.gop) if i.gop_valid else 0,
                gop_bytes=i.gop_bytes if i.gop_valid else 0,
                gop_overflows=i.gop_overflows,
                keyframe_requests_sent=i.kf_sent,
                keyframe_requests_held=i.kf_held,
                keyframe_requests_unrelayable=i.kf_unrelayable,
                outputs=len(i.fanout),
            )
            for i in self._inputs.values()
        }
        outputs = {
            o.spec.id: OutputStats(
                id=o.spec.id,
                codec=o.spec.codec,
                ssrc=o.ssrc,
                input=o.input.spec.id if o.input else None,
                pending_input=o.pending.spec.id if o.pending else None,
                packets=o.packets,
                bytes=o.bytes,
                replayed=o.replayed,
                dropped=o.dropped,
                splices=o.splices,
                nacks=o.nacks,
                retransmitted=o.retransmitted,
                plis=o.plis,
                firs=o.firs,
                rtcp_malformed=o.rtcp_malformed,
                receiver_fraction_lost=o.rr_fraction,
                receiver_lost=o.rr_lost,
                receiver_jitter=o.rr_jitter,
                rtt=o.rtt,
                send_errors=o.send_errors,
            )
            for o in self._outputs.values()
        }
        return SwitchSnapshot(inputs, outputs)

    def gop(self, input_id: str) -> list[bytes]:
        """The RTP datagrams of the input's cached GOP, keyframe first (empty when none is valid;
        ``vmesh.recording.snapshot`` decodes it into a JPEG)."""
        inp = self._input(input_id)
        return [d for _, _, d, _ in inp.gop] if inp.gop_valid else []

    def _input(self, input_id: str) -> _Input:
        try:
            return self._inputs[input_id]
        except KeyError:
            raise NotFound(f"input {input_id!r} does not exist") from None

    def _output(self, output_id: str) -> _Output:
        try:
            return self._outputs[output_id]
        except KeyError:
            raise NotFound(f"output {output_id!r} does not exist") from None


_KEYTEST = {Codec.h264: 1, Codec.h265: 2}


def _starts_keyframe(inp: _Input, data: bytes, start: int, end: int) -> bool:
    """``codecs.starts_keyframe`` on ``data[start:end]``, answering the common packets (a
    fragment that does not begin a NAL unit, a single NAL unit) from their first bytes."""
    if end - start < 3:
        return starts_keyframe(inp.spec.codec, data[start:end])
    if inp.keytest == 1:  # H.264: FU-A (28) or a single NAL unit (1-23)
        t = data[start] & 0x1F
        if t == 28:
            fu = data[start + 1]
            return bool(fu & 0x80) and (fu & 0x1F) in H264_KEY_TYPES
        if 1 <= t <= 23:
            return t in H264_KEY_TYPES
    elif inp.keytest == 2:  # H.265: FU (49) or a single NAL unit
        t = (data[start] >> 1) & 0x3F
        if t == 49:
            fu = data[start + 2]
            return bool(fu & 0x80) and (fu & 0x3F) in H265_KEY_TYPES
        if t != 48:
            return t in H265_KEY_TYPES
    else:
        return True  # audio: every packet
    return starts_keyframe(inp.spec.codec, data[start:end])  # aggregation packets: rare


def _clock(codec: Codec, clock_rate: int | None) -> int:
    if clock_rate is None:
        return DEFAULT_CLOCK_RATE[codec]
    if clock_rate <= 0:
        raise InvalidInput.one("clock_rate", "must be a positive number of Hz", clock_rate)
    return clock_rate
