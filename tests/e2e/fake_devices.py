"""Chromium with fake camera and microphone of a known picture and tone, and what a page receives.

``fake_media(dir, name, colour, tone)`` makes, with ffmpeg, a small Y4M of one solid colour and a
WAV of one sine tone; ``browser_args(y4m, wav)`` are the Chromium flags that capture them (each
browser process has one camera and one microphone, so venues with distinct pictures and tones are
separate browsers). ``SENSE_JS`` is a script added to a page's context: ``__vm.colour(sel)``
samples the centre pixel of a ``<video>`` as decoded (``IS_COLOUR_JS`` waits for it to be a given
palette colour), ``__vm.tones(sel, freqs)`` the level in dB of each frequency in a playing
element's stream (WebAudio ``AnalyserNode``), ``__vm.level(sel)`` the ``audioLevel`` of its
connection's inbound audio is left to the page's own stats.
``TcpRelay`` puts a cuttable TCP hop between one browser and the node (a venue's network
failure).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from pathlib import Path
from typing import Any

from e2e.console_node import media_browser_args

# Colours far apart in YUV, so H.264's rounding never makes one look like another.
PALETTE = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 50, 220)}
# A tone counts as heard above this level (dBFS in the analyser); silence is about -120.
HEARD_DB = -75.0


def fake_media(folder: Path, name: str, colour: str, tone_hz: int) -> tuple[Path, Path]:
    """A 320x240 15 fps Y4M of ``colour`` (a PALETTE name) and a 48 kHz WAV of ``tone_hz``."""
    r, g, b = PALETTE[colour]
    y4m, wav = folder / f"{name}.y4m", folder / f"{name}.wav"
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"color=c=0x{r:02x}{g:02x}{b:02x}:s=320x240:r=15",
            "-t", "2", "-pix_fmt", "yuv420p", str(y4m),
        ],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate=48000:duration=4",
            "-ac", "1", str(wav),
        ],
        check=True,
    )  # fmt: skip
    return y4m, wav


def browser_args(y4m: Path, wav: Path) -> list[str]:
    return [
        *media_browser_args(fake_devices=1),
        f"--use-file-for-fake-video-capture={y4m}",
        f"--use-file-for-fake-audio-capture={wav}",
    ]


# For ``wait_for_function`` with ``arg=[selector, colour, PALETTE]``: true once the ``<video>``'s
# centre pixel is nearer ``colour`` than any other colour of the palette (needs ``SENSE_JS``).
IS_COLOUR_JS = """([sel, want, palette]) => {
    const c = window.__vm.colour(sel);
    if (!c) return false;
    let best = null, bestD = Infinity;
    for (const [name, rgb] of Object.entries(palette)) {
      const d = rgb.reduce((s, x, i) => s + (x - c[i]) ** 2, 0);
      if (d < bestD) { bestD = d; best = name; }
    }
    return best === want;
}"""

SENSE_JS = """
window.__vm = {
  colour(sel) {
    const v = document.querySelector(sel);
    if (!v || !v.videoWidth) return null;
    const c = document.createElement("canvas");
    c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext("2d");
    g.drawImage(v, 0, 0);
    const d = g.getImageData(c.width >> 1, c.height >> 1, 1, 1).data;
    return [d[0], d[1], d[2]];
  },
  tones(sel, freqs) {
    const el = document.querySelector(sel);
    const stream = el && el.srcObject;
    if (!stream || !stream.getAudioTracks().length) return freqs.map(() => -200);
    this.ac = this.ac || new AudioContext();
    this.an = this.an || new Map();
    let a = this.an.get(sel);
    if (!a || a.stream !== stream) {
      const node = this.ac.createAnalyser();
      node.fftSize = 4096;
      node.smoothingTimeConstant = 0;
      this.ac.createMediaStreamSource(stream).connect(node);
      a = { stream, node };
      this.an.set(sel, a);
    }
    const bins = new Float32Array(a.node.frequencyBinCount);
    a.node.getFloatFrequencyData(bins);
    const hz = this.ac.sampleRate / a.node.fftSize;
    return freqs.map((f) => {
      const i = Math.round(f / hz);
      return Math.max(bins[i - 1], bins[i], bins[i + 1]);
    });
  },
};
"""


class TcpRelay:
    """A TCP relay to the node on a port of its own, so that a test can cut one browser's
    connections (HTTP and WebSocket) as a network failure would, and restore them.

    ``cut()`` closes every relayed connection and stops listening (new connections are refused);
    ``restore()`` listens again on the same port. WebRTC media does not pass through it."""

    def __init__(self, target_port: int) -> None:
        import socket as _socket

        self._socket = _socket
        self.target = ("127.0.0.1", target_port)
        probe = _socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._listener: Any = None
        self.restore()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        s = self._socket.socket()
        s.setsockopt(self._socket.SOL_SOCKET, self._socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(self._socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(self._socket.SHUT_RDWR)
            c.close()

    close = cut

    def _accept(self, listener: Any) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = self._socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # a quiet WebSocket is not a dead one
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(src: Any, dst: Any) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(2)
