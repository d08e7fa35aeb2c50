"""A province user plays back a county camera's recording: province ← county as two hosts
(network namespaces, ``netns.vnet``), each a real ``vmesh node run`` with nats-server, Janus, its
switch and ``[recording] enabled``.

1. the province's admin sets the county camera's plan from the province (relayed to the county,
   audited there as ``admin-prov@<province>``); the county records it in 2 s segments;
2. the province's timeline of the camera shows the span recorded at the county;
3. the province's play.mp4 of the span is the county's MP4 byte for byte (streamed through in
   chunks over NATS: the file is larger than one chunk), PyAV decodes it and sees the camera's
   colour; a byte range across a chunk boundary is answered 206 with those bytes, one past the
   end 416; the playback is audited at the province (``recording.playback`` naming the county)
   and at the county (``recording.serve`` naming the province);
4. a province user whose scope is another city, holding no grant, is refused (404) and the
   refusal audited; a bad range is refused naming the field.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace
from typing import Any

import av
import httpx
import pytest

from netns.fednodes import wait_until
from netns.vnet import (
    NEEDS_MEDIA_NETWORK,
    PROV_SPEC,
    WENCHENG_SPEC,
    Net,
    Topology,
    camera,
    network_fixture,
)
from vmesh.directory.store import Directory
from vmesh.ingest.synthetic import patch_rect
from vmesh.recording.remote import CHUNK

pytestmark = [pytest.mark.integration, *NEEDS_MEDIA_NETWORK]

TOPO = Topology(
    {
        "prov": PROV_SPEC,
        "county": replace(WENCHENG_SPEC, parents=("prov",)),
    },
    media=True,
    overrides={
        "recording": {
            "enabled": True,
            "segment_seconds": 2,
            "stall_seconds": 6,
            "min_free_percent": 0,
        }
    },
)
PROV, COUNTY = TOPO.nodes["prov"].code, TOPO.nodes["county"].code
CAM = "33032800001320000001"
OTHER_CITY = "33010000002166000001"  # 杭州市: a region of the province's directory
RECORD_S = 10.0


async def _setup(name: str, directory: Directory, org: str) -> None:
    if name == "county":
        # ~1.2 Mbit/s: 10 s are more than one chunk of the province↔county stream-through.
        await camera(
            directory, org, CAM, "文成县府门口", color="#e02020",
            width=640, height=360, bitrate_kbps=1200,
        )  # fmt: skip
    else:
        from factories import TEST_ACTOR

        await directory.create(
            TEST_ACTOR,
            {"code": OTHER_CITY, "parent_code": org, "kind": "region", "tier": "city",
             "name": "杭州市"},
        )  # fmt: skip


net = network_fixture(TOPO, _setup)


async def _get(net: Net, node: str, path: str, headers: dict[str, str] | None = None,
               cookies: httpx.Cookies | None = None, **params: Any) -> httpx.Response:  # fmt: skip
    h = {} if cookies is not None else {"Authorization": f"Bearer {net.tokens[node]}"}
    async with httpx.AsyncClient(timeout=60, cookies=cookies) as c:
        return await c.get(net.url(node) + path, params=params, headers=h | (headers or {}))


def _red(mp4: bytes) -> tuple[int, tuple[int, int, int]]:
    """Frames PyAV decodes from the MP4, and the colour of the centre of the colour patch of its
    last frame."""
    n, last = 0, None
    with av.open(io.BytesIO(mp4)) as c:
        for f in c.decode(video=0):
            n, last = n + 1, f
    assert last is not None
    px, py, pw, ph = patch_rect(last.width, last.height)
    x, y = px + pw // 2, py + ph // 2
    rgb = last.reformat(format="rgb24")
    plane = rgb.planes[0]
    row = bytes(plane)[y * plane.line_size : (y + 1) * plane.line_size]
    return n, (row[x * 3], row[x * 3 + 1], row[x * 3 + 2])


async def test_a_province_user_plays_back_a_county_camera(net: Net) -> None:
    async def known() -> bool:
        page = await net.get("prov", "/api/network/catalogue", code_prefix=CAM)
        return page["total"] == 1

    await wait_until(known, "the county camera in the province's catalogue", within=60)

    # 1. the plan, set at the province, stored and audited at the county
    plan = await net.send("prov", "PUT", f"/api/recordings/{CAM}/plan", {"mode": "always"})
    assert plan["mode"] == "always"
    assert (await net.get("county", f"/api/recordings/{CAM}/plan"))["mode"] == "always"
    rows = (await net.get("county", "/api/audit", action="recording.plan"))["items"]
    assert [r["username"] for r in rows] == [f"admin-prov@{PROV}"], rows
    r = await net.request("prov", "PUT", f"/api/recordings/{CAM}/plan", {"mode": "sometimes"})
    assert r.status_code == 422 and "mode" in r.text, r.text

    # 2. the timeline at the province
    t0 = time.time() - 600

    async def recorded() -> dict[str, Any] | None:
        tl = await net.get("prov", f"/api/recordings/{CAM}/timeline", start=t0, end=t0 + 3600)
        long = [s for s in tl["spans"] if s["end"] - s["start"] >= RECORD_S]
        return tl if long else None

    tl = await wait_until(recorded, f"{RECORD_S:g} s recorded at the county", within=120)
    span = max(tl["spans"], key=lambda s: s["end"] - s["start"])
    assert tl["gaps"] and tl["segments"] >= RECORD_S / 2

    # 3. the MP4 streamed through the province: the county's bytes, decodable, the camera's colour
    # ends a second early: the segment the county completes next is not part of it
    rng = {"start": span["start"], "end": span["end"] - 1}
    at_prov = await _get(net, "prov", f"/api/recordings/{CAM}/play.mp4", **rng)
    assert at_prov.status_code == 200, at_prov.text
    at_county = await _get(net, "county", f"/api/recordings/{CAM}/play.mp4", **rng)
    assert at_county.status_code == 200, at_county.text
    body = at_prov.content
    assert len(body) > CHUNK and body == at_county.content
    assert at_prov.headers["x-vmesh-start"] == at_county.headers["x-vmesh-start"]
    frames, (red, green, blue) = _red(body)
    assert frames >= RECORD_S * 20 and red > 150 and green < 90 and blue < 90, (red, green, blue)
    first, last = CHUNK - 100, CHUNK + 99  # across the first chunk's end
    part = await _get(
        net, "prov", f"/api/recordings/{CAM}/play.mp4", {"Range": f"bytes={first}-{last}"}, **rng
    )
    assert part.status_code == 206 and part.content == body[first : last + 1]
    assert part.headers["content-range"] == f"bytes {first}-{last}/{len(body)}"
    past = await _get(
        net, "prov", f"/api/recordings/{CAM}/play.mp4", {"Range": f"bytes={len(body)}-"}, **rng
    )
    assert past.status_code == 416
    plays = (await net.get("prov", "/api/audit", action="recording.playback"))["items"]
    assert plays and all(p["detail"]["node"] == COUNTY for p in plays), plays
    serves = (await net.get("county", "/api/audit", action="recording.serve"))["items"]
    assert {(s["username"], s["detail"]["viewer_node"]) for s in serves} == {
        (f"admin-prov@{PROV}", PROV)
    }, serves

    # 4. a province user of another city, without a grant: refused; a bad range: named
    await net.send("prov", "POST", "/api/users", {
        "username": "hz-viewer", "password": "s3cret-pass", "roles": ["viewer"],
        "scope_code": OTHER_CITY,
    })  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as c:
        login = await c.post(
            net.url("prov") + "/api/auth/login",
            json={"username": "hz-viewer", "password": "s3cret-pass"},
        )
        assert login.status_code == 200, login.text
        cookies = c.cookies
    for what in ("timeline", "play.mp4"):
        r = await _get(net, "prov", f"/api/recordings/{CAM}/{what}", cookies=cookies, **rng)
        assert r.status_code == 404, r.text
    denied = await net.get("prov", "/api/audit", action="recording.playback", result="denied")
    assert any(d["username"] == "hz-viewer" for d in denied["items"]), denied
    r = await _get(net, "prov", f"/api/recordings/{CAM}/clip.mp4", start=10, end=5)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "end", r.text

    # 5. a snapshot of the county camera's live picture, asked at the province, taken at the
    # county: a JPEG of the camera's colour, audited at both nodes; refused out of scope
    snap = await _get(net, "prov", f"/api/cameras/{CAM}/snapshot.jpg")
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg", snap.text
    with av.open(io.BytesIO(snap.content)) as c:
        pic = next(c.decode(video=0))
    px, py, pw, ph = patch_rect(pic.width, pic.height)
    x, y = px + pw // 2, py + ph // 2
    plane = pic.reformat(format="rgb24").planes[0]
    red, green, blue = bytes(plane)[y * plane.line_size + x * 3 :][:3]
    assert red > 150 and green < 90 and blue < 90, (red, green, blue)
    taken = (await net.get("prov", "/api/audit", action="camera.snapshot"))["items"]
    assert [t["detail"]["node"] for t in taken] == [COUNTY], taken
    served = (await net.get("county", "/api/audit", action="camera.snapshot"))["items"]
    assert [(s["username"], s["detail"]["viewer_node"]) for s in served] == [
        (f"admin-prov@{PROV}", PROV)
    ], served
    r = await _get(net, "prov", f"/api/cameras/{CAM}/snapshot.jpg", cookies=cookies)
    assert r.status_code == 404, r.text
