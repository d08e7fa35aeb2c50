"""Recording on a real node (``vmesh node run``: switch, Janus, ffmpeg recorder, SQLite):
a synthetic camera whose colour patch changes every ``N`` seconds (the issue's "every minute",
scaled: one "minute" here is ``N`` = 2 s, 2-second segments, about 24 s recorded instead of
10 minutes; ``VMESH_RECORDING_MINUTE=60`` runs it at the issue's own scale: docs/recording.md)
is recorded; the timeline shows the span; the served MP4 decoded with PyAV at
"minute 7" shows minute 7's colour; a 2-"minute" clip is an MP4 ffprobe reads; retention under a
byte budget deletes the oldest segments; a snapshot is a JPEG of the live picture; a node killed
with SIGKILL while recording restarts with disk and index consistent.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from media_site import (
    ADMIN,
    OUT_OF_SCOPE_CAMERA,
    XIHU_OPERATOR,
    camera_code,
    login_cookie,
    media_node,
)

pytestmark = pytest.mark.integration

# one scaled "minute" (seconds); VMESH_RECORDING_MINUTE=60 gives the real minute
N = float(os.environ.get("VMESH_RECORDING_MINUTE", "2"))
SEGMENT_S = 2 if N <= 10 else 10
COLOURS = ["#ff0000", "#00ff00", "#0000ff", "#ffff00"]
CYCLE_CAM = camera_code(40)
MAX_BYTES = 600_000
EXTRA = {
    CYCLE_CAM: {
        "name": "录像测试摄像机",
        "attrs": {
            "source": "synthetic", "mode": "live", "width": 320, "height": 180, "fps": 25,
            "gop": 25, "colors": COLOURS, "color_seconds": N, "class": "I",
        },
    }
}  # fmt: skip
RECORDING = (
    f"\n[recording]\nenabled = true\nsegment_seconds = {SEGMENT_S}\nstall_seconds = 6\n"
    f"max_bytes = {MAX_BYTES}\nmin_free_percent = 0\nretention_interval_seconds = 3600\n"
    "health_sample_seconds = 3600\n"
)
# Readiness bounds (how long to wait for something to happen), not performance assertions.
WAIT_S = 120.0 + 13 * N


def call(
    node: Any, method: str, path: str, cookie: str, body: Any = None
) -> tuple[int, bytes, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        node.base_url + path, data=data, method=method,
        headers={"Cookie": cookie, "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("recnode")
    n = media_node(base, extra_cameras=EXTRA, extra_toml=RECORDING)
    yield n
    n.stop()


@pytest.fixture(scope="module")
def admin(node: Any) -> str:
    return login_cookie(node, *ADMIN)


def timeline(node: Any, cookie: str) -> dict[str, Any]:
    now = time.time()
    st, body, _ = call(
        node, "GET", f"/api/recordings/{CYCLE_CAM}/timeline?start={now - 3600}&end={now + 60}",
        cookie,
    )  # fmt: skip
    assert st == 200, body
    return json.loads(body)


def wait_recorded(node: Any, cookie: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        tl = timeline(node, cookie)
        if tl["spans"] and max(s["end"] - s["start"] for s in tl["spans"]) >= seconds:
            return tl
        if time.monotonic() > deadline:
            pytest.fail(f"recorded only {tl} within {WAIT_S} s:\n{node.log_text()}")
        time.sleep(1)


def rgb_at(frame: av.VideoFrame, x: int, y: int) -> tuple[int, int, int]:
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    row = bytes(plane)[y * plane.line_size : y * plane.line_size + rgb.width * 3]
    return row[x * 3], row[x * 3 + 1], row[x * 3 + 2]


def colour_at(mp4: bytes, tmp: Path, offset: float) -> tuple[int, int, int]:
    path = tmp / "play.mp4"
    path.write_bytes(mp4)
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if f.time is not None and f.time >= offset:
                return rgb_at(f, 40, 22)  # the patch's centre (320x180: 80x44 in the corner)
    pytest.fail(f"no frame at {offset:.1f} s in the served MP4")


def nearest(rgb: tuple[int, int, int]) -> str:
    def dist(hexc: str) -> int:
        v = int(hexc[1:], 16)
        return sum(
            (a - b) ** 2 for a, b in zip(rgb, (v >> 16, (v >> 8) & 255, v & 255), strict=True)
        )

    return min(COLOURS, key=dist)


def ffprobe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return float(out.strip())


def test_plan_rejects_bad_input_and_writes_nothing(node: Any, admin: str) -> None:
    st, body, _ = call(
        node, "PUT", f"/api/recordings/{CYCLE_CAM}/plan", admin,
        {"mode": "sometimes", "retention_days": 0, "schedule": [{"days": [9], "start": "25:00"}]},
    )  # fmt: skip
    assert st == 422, body
    fields = {e["field"] for e in json.loads(body)["errors"]}
    assert {"mode", "retention_days", "schedule[0].days"} <= fields
    st, body, _ = call(node, "GET", f"/api/recordings/{CYCLE_CAM}/plan", admin)
    assert json.loads(body)["mode"] == "off"
    op = login_cookie(node, *XIHU_OPERATOR)
    st, _, _ = call(
        node, "PUT", f"/api/recordings/{OUT_OF_SCOPE_CAMERA}/plan", op, {"mode": "always"}
    )
    assert st == 404


def test_record_timeline_seek_and_clip(node: Any, admin: str, tmp_path: Path) -> None:
    st, body, _ = call(node, "PUT", f"/api/recordings/{CYCLE_CAM}/plan", admin, {"mode": "always"})
    assert st == 200, body
    tl = wait_recorded(node, admin, 10 * N + 3 * N)
    span = max(tl["spans"], key=lambda s: s["end"] - s["start"])
    assert tl["segments"] >= 10
    # "minute" 0 is the first whole colour period inside the span
    p0 = math.ceil(span["start"] / N) * N
    play = f"/api/recordings/{CYCLE_CAM}/play.mp4?start={span['start']}&end={span['end']}"
    st, mp4, headers = call(node, "GET", play, admin)
    assert st == 200 and headers["Content-Type"] == "video/mp4"
    served_start = float(headers["X-Vmesh-Start"])
    seen = {}
    for minute in (7, 8):
        t = p0 + minute * N + N / 2
        want = COLOURS[math.floor(t / N) % len(COLOURS)]
        seen[minute] = nearest(colour_at(mp4, tmp_path, t - served_start))
        assert seen[minute] == want, f"minute {minute} shows {seen[minute]}, expected {want}"
    assert seen[7] != seen[8]
    # a range request, as <video> seeking makes
    req = urllib.request.Request(
        node.base_url
        + f"/api/recordings/{CYCLE_CAM}/play.mp4?start={span['start']}&end={span['end']}",
        headers={"Cookie": admin, "Range": "bytes=100-199"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 206 and r.read() == mp4[100:200]
    # a 2-"minute" clip downloads as a playable MP4
    st, clip, headers = call(
        node, "GET", f"/api/recordings/{CYCLE_CAM}/clip.mp4?start={p0 + 3 * N}&end={p0 + 5 * N}",
        admin,
    )  # fmt: skip
    assert st == 200 and "attachment" in headers["Content-Disposition"]
    out = tmp_path / "clip.mp4"
    out.write_bytes(clip)
    d = ffprobe_duration(out)
    assert 2 * N - 0.5 <= d <= 2 * N + 2 * SEGMENT_S + 0.5  # whole segments around the range
    # bad range: refused, naming the field
    st, body, _ = call(node, "GET", f"/api/recordings/{CYCLE_CAM}/clip.mp4?start=10&end=5", admin)
    assert st == 422 and json.loads(body)["errors"][0]["field"] == "end"


def test_retention_frees_disk_under_pressure(node: Any, admin: str) -> None:
    wait_recorded(node, admin, 4)
    before = timeline(node, admin)
    data = Path(node.config).parent / "data" / "recordings" / CYCLE_CAM
    files_before = {p for p in data.rglob("*.mp4") if ".incoming" not in p.parts}
    st, body, _ = call(node, "POST", "/api/recordings/retention", admin)
    assert st == 200, body
    res = json.loads(body)
    assert res["deleted"]["disk"]["segments"] > 0
    assert res["used_bytes"] <= MAX_BYTES
    after = timeline(node, admin)
    assert after["spans"][0]["start"] > before["spans"][0]["start"]  # the oldest went first
    files_after = {p for p in data.rglob("*.mp4") if ".incoming" not in p.parts}
    assert len(files_after - files_before) <= 2  # (new ones may have been indexed meanwhile)
    assert len(files_before - files_after) >= res["deleted"]["disk"]["segments"]


def test_snapshot_is_a_jpeg_of_the_live_picture(node: Any, admin: str, tmp_path: Path) -> None:
    red = camera_code(1)  # colour #e02020 (tests/media_site.py)
    st, jpeg, headers = call(node, "GET", f"/api/cameras/{red}/snapshot.jpg", admin)
    assert st == 200 and headers["Content-Type"] == "image/jpeg", jpeg[:200]
    (tmp_path / "s.jpg").write_bytes(jpeg)
    with av.open(str(tmp_path / "s.jpg")) as c:
        frame = next(iter(c.decode(video=0)))
    r, g, b = rgb_at(frame, 40, 22)
    assert r > 180 and g < 80 and b < 80, (r, g, b)
    op = login_cookie(node, *XIHU_OPERATOR)
    st, _, _ = call(node, "GET", f"/api/cameras/{OUT_OF_SCOPE_CAMERA}/snapshot.jpg", op)
    assert st == 404


def test_online_rate_report_exports_csv(node: Any, admin: str) -> None:
    st, body, _ = call(node, "POST", "/api/camera-health/sample", admin)
    assert st == 200 and json.loads(body)["rows"] > 0
    st, body, _ = call(node, "GET", "/api/camera-health/online-rate?kind=region&format=csv", admin)
    assert st == 200
    text = body.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("org_code,org_name")
    assert "西湖区" in text
    st, body, _ = call(node, "GET", "/api/camera-health/online-rate?camera_class=I", admin)
    rows = json.loads(body)["items"]
    assert any(r["total"] >= 1 for r in rows)


def test_kill_while_recording_restarts_consistent(node: Any, admin: str) -> None:
    wait_recorded(node, admin, 2)
    rec = Path(node.config).parent / "data" / "recordings"
    incoming = rec / CYCLE_CAM / ".incoming"
    deadline = time.monotonic() + WAIT_S
    while not list(incoming.glob("*.mp4")):
        assert time.monotonic() < deadline, "no segment being written"
        time.sleep(0.2)
    os.killpg(node.proc.pid, signal.SIGKILL)
    node.proc.wait(timeout=15)
    partial = sorted(incoming.glob("*.mp4"))[-1]
    node.start()
    cookie = login_cookie(node, *ADMIN)
    st, _, _ = call(node, "PUT", f"/api/recordings/{CYCLE_CAM}/plan", cookie, {"mode": "off"})
    assert st == 200
    node.stop()
    db = sqlite3.connect(Path(node.config).parent / "data" / "vmesh.db")
    rows = {p for (p,) in db.execute("select path from recording_segments")}
    db.close()
    on_disk = {str(p.relative_to(rec)) for p in rec.rglob("*.mp4") if ".playback" not in p.parts}
    assert rows == on_disk, rows ^ on_disk
    assert not partial.exists() or str(partial.relative_to(rec)) not in on_disk
    for p in sorted(rows)[:3] + sorted(rows)[-3:]:
        assert ffprobe_duration(rec / p) > 0
    node.start()  # leave it running for the module's teardown
