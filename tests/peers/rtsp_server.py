"""A real RTSP server for tests: GStreamer's RTSP server (libgstrtspserver) through PyGObject.

Runs under Debian's system Python (``/usr/bin/python3``, which has ``python3-gi``), not the venv:
start it as a subprocess (``tests/peers/rtsp.py`` does). Debian packages:
gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-base, -good (RTP payloaders, JPEG,
A-law/mu-law) and -ugly (x264).

    /usr/bin/python3 tests/peers/rtsp_server.py --port 8554 --path /cam \
        [--video h264|h265|mjpeg] [--audio none|opus|pcma|pcmu] [--user U --password P]
        [--size 320x240] [--fps 25] [--gop 25]

Serves one live test pattern (``videotestsrc``, ``is-live``) at ``rtsp://127.0.0.1:PORT/PATH``,
shared by every client. With ``--user``/``--password`` the mount needs HTTP Basic authentication
(a wrong or missing password is answered ``401 Unauthorized``); other paths answer ``404``.
``--video mjpeg`` serves a codec vmesh does not switch (for the unsupported-codec test).
Prints ``READY <port>`` on stdout once it listens; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

VIDEO = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max={gop} "
    "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} "
    "! rtph265pay name=pay0 pt=96 config-interval=-1",
    "mjpeg": "jpegenc quality=60 ! rtpjpegpay name=pay0 pt=26",
}
_G711 = "audioresample ! audio/x-raw,rate=8000,channels=1 ! "
AUDIO = {
    "opus": "opusenc ! rtpopuspay name=pay1 pt=111",
    "pcma": _G711 + "alawenc ! rtppcmapay name=pay1 pt=8",
    "pcmu": _G711 + "mulawenc ! rtppcmupay name=pay1 pt=0",
}


def launch_line(video: str, audio: str, width: int, height: int, fps: int, gop: int) -> str:
    v = (
        f"videotestsrc is-live=true pattern=smpte "
        f"! video/x-raw,width={width},height={height},framerate={fps}/1,format=I420 "
        f"! {VIDEO[video].format(gop=gop)}"
    )
    if audio != "none":
        v += f" audiotestsrc is-live=true freq=440 wave=sine ! audioconvert ! {AUDIO[audio]}"
    return f"( {v} )"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--video", choices=sorted(VIDEO), default="h264")
    ap.add_argument("--audio", choices=["none", *sorted(AUDIO)], default="none")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--gop", type=int, default=25)
    args = ap.parse_args()
    width, height = (int(x) for x in args.size.split("x"))

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.video, args.audio, width, height, args.fps, args.gop))
    factory.set_shared(True)
    # A client that goes away must not keep the pipeline (and the next client) waiting.
    factory.set_eos_shutdown(False)

    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_role_from_structure(
            Gst.Structure.new_from_string(
                "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )
        factory.set_permissions(perms)

    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
