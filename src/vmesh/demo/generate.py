"""The demo's sample network: a Zhejiang directory generated from a seed. Pure, no I/O.

``generate(villages, seed)`` returns rows in the directory's import format (columns ``FIELDS``:
``code,parent_code,kind,tier,name,lat,lon,tags,status,attrs``, every value text as in a CSV file),
parents before children. The same arguments always give the same rows.

Shape: province 330000 浙江省 with the node itself as a platform (type 200), provincial departments
and the main conference venue; 11 real cities; real county-level divisions spread over the cities
(all 90 from medium size up); townships and villages below them. Each level carries what it has in
life: departments (业务分组, type 215) with public-security NVRs and crossroads cameras, emergency
field terminals (单兵) and petition rooms; government conference terminals; township cameras; and
in every village a service room (村委会视频室) and one to three cameras. Cameras are synthetic video
sources (``SYNTHETIC_CAMERA``: 640×360 at 25 fps, clip mode), so the demo's video wall plays.

Codes are GB/T 28181: the division of the place, industry 00, the kind's type, net 6 (e-government
extranet) and a serial counted per division and type. Villages share their township's division.

Public: ``FIELDS``, ``SIZES``, ``SYNTHETIC_CAMERA``, ``NODE_CODE``, ``PROVINCE_CODE``, ``Shape``,
``shape_for``, ``generate``, ``count_kinds``.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass

from vmesh.demo import places
from vmesh.identity.codes import compose

FIELDS = ("code", "parent_code", "kind", "tier", "name", "lat", "lon", "tags", "status", "attrs")

# Villages in each named size. Zhejiang has about 20,000 villages: ``large`` is the real province.
SIZES: dict[str, int] = {"small": 200, "medium": 3000, "large": 20000}
MAX_VILLAGES = 200_000

PROVINCE_CENTER = places.PROVINCE[0] + "00"
NODE_CODE = compose(PROVINCE_CENTER, "200", 1)
PROVINCE_CODE = compose(PROVINCE_CENTER, "216", 1)

ORG_KINDS = ("region", "department")
# Every demo camera is a synthetic source (vmesh.ingest): its name burnt in, a colour patch of its
# own (from its code), a tone; a pre-encoded clip looped, started only while someone watches it.
SYNTHETIC_CAMERA: dict[str, object] = {
    "source": "synthetic", "width": 640, "height": 360, "fps": 25, "gop": 25, "mode": "clip",
}  # fmt: skip
VILLAGES_PER_TOWNSHIP = 15
VILLAGES_PER_COUNTY = 30
ALL_COUNTIES = sum(len(c[4]) for c in places.CITIES)

Row = dict[str, str]


@dataclass(frozen=True)
class Shape:
    """How many of each level: counties in all (spread over the 11 cities), townships each."""

    villages: int
    counties: int
    townships_per_county: int


def shape_for(villages: int) -> Shape:
    if not 1 <= villages <= MAX_VILLAGES:
        raise ValueError(f"villages must be 1..{MAX_VILLAGES}, got {villages}")
    cities = len(places.CITIES)
    counties = min(ALL_COUNTIES, max(cities, math.ceil(villages / VILLAGES_PER_COUNTY)))
    townships = max(1, math.ceil(villages / (counties * VILLAGES_PER_TOWNSHIP)))
    return Shape(villages, counties, min(townships, 99))


def _counties_per_city(total: int) -> list[int]:
    """Deal ``total`` counties round-robin over the cities, never more than a city has."""
    have = [len(c[4]) for c in places.CITIES]
    take = [0] * len(have)
    left = total
    while left:
        for i, n in enumerate(have):
            if left and take[i] < n:
                take[i] += 1
                left -= 1
    return take


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rows: list[Row] = []
        self.serials: Counter[tuple[str, str]] = Counter()
        self.crossing = 0

    def code(self, center: str, type_code: str) -> str:
        self.serials[(center, type_code)] += 1
        return compose(center, type_code, self.serials[(center, type_code)])

    def near(self, lat: float, lon: float, spread: float) -> tuple[float, float]:
        return (
            max(27.0, min(31.5, lat + self.rng.uniform(-spread, spread))),
            max(118.0, min(123.0, lon + self.rng.uniform(-spread, spread))),
        )

    def status(self) -> str:
        x = self.rng.random()
        return "online" if x < 0.86 else "offline" if x < 0.96 else "unknown"

    def add(
        self,
        *,
        center: str,
        type_code: str,
        parent: str,
        kind: str,
        name: str,
        at: tuple[float, float],
        tier: str = "",
        tags: tuple[str, ...] = (),
        status: str | None = None,
        attrs: dict[str, object] | None = None,
    ) -> str:
        code = self.code(center, type_code)
        self.rows.append(
            {
                "code": code,
                "parent_code": parent,
                "kind": kind,
                "tier": tier,
                "name": name,
                "lat": f"{at[0]:.6f}",
                "lon": f"{at[1]:.6f}",
                "tags": " ".join(tags),
                "status": status or ("online" if kind in ORG_KINDS else self.status()),
                "attrs": json.dumps(
                    attrs or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":")
                ),
            }
        )
        return code

    # -- endpoints ------------------------------------------------------------------------------

    def camera(
        self, center: str, parent: str, name: str, at: tuple[float, float], tags: tuple[str, ...]
    ) -> None:
        vendor, model = self.rng.choice(places.CAMERA_MODELS)
        self.add(
            center=center, type_code="132", parent=parent, kind="camera", name=name,
            at=self.near(*at, 0.004), tags=("雪亮", *tags),
            attrs={"vendor": vendor, "model": model, "ptz": model.startswith("DS-2DE"),
                   **SYNTHETIC_CAMERA},
        )  # fmt: skip

    def terminal(self, center: str, parent: str, name: str, at: tuple[float, float]) -> None:
        vendor, model = self.rng.choice(places.TERMINAL_MODELS)
        self.add(
            center=center, type_code="400", parent=parent, kind="conference_terminal", name=name,
            at=self.near(*at, 0.003), tags=("视频会议",), attrs={"vendor": vendor, "model": model},
        )  # fmt: skip

    def crossing_name(self) -> str:
        roads, i = places.ROADS, self.crossing
        self.crossing += 1
        a = roads[i % len(roads)]
        b = roads[(i * 7 + 1) % len(roads)]
        if a == b:
            b = roads[(i + 1) % len(roads)]
        corner = places.CORNERS[(i // len(roads)) % len(places.CORNERS)]
        return f"{a}与{b.removesuffix('路')}路口{corner}"

    def departments(
        self, level: str, center: str, parent: str, place: str, at: tuple[float, float]
    ) -> dict[str, str]:
        codes = {}
        for suffix, tag in places.DEPARTMENTS[level]:
            name = f"{place}{suffix}" if level != "province" else f"浙江省{suffix}"
            codes[tag] = self.add(
                center=center, type_code="215", parent=parent, kind="department", name=name,
                at=self.near(*at, 0.01), tags=(tag,),
            )  # fmt: skip
        return codes

    def police_cameras(
        self, center: str, dept: str, place: str, at: tuple[float, float], n: int
    ) -> None:
        nvr = self.add(
            center=center, type_code="118", parent=dept, kind="nvr", name=f"{place}公安局中心NVR",
            at=self.near(*at, 0.005), tags=("雪亮",),
            attrs={"vendor": "海康威视", "model": "DS-9632N", "channels": 32},
        )  # fmt: skip
        for _ in range(n):
            self.camera(center, nvr, self.crossing_name(), at, ("路口",))

    # -- places -----------------------------------------------------------------------------------

    def place_names(self, count: int, suffixes: tuple[str, ...], taken: set[str]) -> list[str]:
        names: list[str] = []
        while len(names) < count:
            name = (
                self.rng.choice(places.NAME_FIRST)
                + self.rng.choice(places.NAME_SECOND)
                + self.rng.choice(suffixes)
            )
            if name not in taken:
                taken.add(name)
                names.append(name)
        return names


def generate(villages: int, seed: int = 1) -> list[Row]:
    """The demo network with ``villages`` villages, in import order (parents first)."""
    shape = shape_for(villages)
    b = _Builder(seed)
    _, pname, plat, plon = places.PROVINCE
    pat = (plat, plon)
    province = b.add(
        center=PROVINCE_CENTER, type_code="216", parent="", kind="region", tier="province",
        name=pname, at=pat,
    )  # fmt: skip
    b.add(
        center=PROVINCE_CENTER, type_code="200", parent=province, kind="platform",
        name="浙江省视频一张网节点", at=pat, tags=("节点",), status="online",
        attrs={"role": "province node"},
    )  # fmt: skip
    b.departments("province", PROVINCE_CENTER, province, pname, pat)
    b.terminal(PROVINCE_CENTER, province, "省政府视频会议主会场", pat)

    per_city = _counties_per_city(shape.counties)
    n_townships = shape.counties * shape.townships_per_county
    base, extra = divmod(villages, n_townships)
    township_index = 0
    for (cdiv, cname, clat, clon, counties), take in zip(places.CITIES, per_city, strict=True):
        ccenter = cdiv + "00"
        cat = (clat, clon)
        city = b.add(
            center=ccenter, type_code="216", parent=province, kind="region", tier="city",
            name=cname, at=cat,
        )  # fmt: skip
        depts = b.departments("city", ccenter, city, cname, cat)
        b.terminal(ccenter, city, f"{cname}政府视频会议室", cat)
        b.police_cameras(ccenter, depts["公安"], cname, cat, 4)
        for kdiv, kname in counties[:take]:
            kcenter = kdiv + "00"
            kat = b.near(clat, clon, 0.3)
            county = b.add(
                center=kcenter, type_code="216", parent=city, kind="region", tier="county",
                name=kname, at=kat,
            )  # fmt: skip
            kdepts = b.departments("county", kcenter, county, kname, kat)
            b.terminal(kcenter, county, f"{kname}视频会议室", kat)
            b.police_cameras(kcenter, kdepts["公安"], kname, kat, 4)
            for i in range(1, 3):
                b.add(
                    center=kcenter, type_code="138", parent=kdepts["应急"], kind="field_terminal",
                    name=f"{kname}应急单兵{i:02d}", at=b.near(*kat, 0.05), tags=("应急", "单兵"),
                    attrs={"network": "4G"},
                )  # fmt: skip
            b.add(
                center=kcenter, type_code="401", parent=kdepts["信访"], kind="service_room",
                name=f"{kname}信访局远程接访室", at=b.near(*kat, 0.01), tags=("远程接访",),
                attrs={"id_reader": True, "document_camera": True},
            )  # fmt: skip
            real = places.TOWNSHIPS.get(kdiv, [])
            taken = set(real)
            names = real[: shape.townships_per_county]
            names += b.place_names(
                shape.townships_per_county - len(names), places.TOWNSHIP_SUFFIXES, taken
            )
            for group, tname in enumerate(names, start=1):
                count = base + (1 if township_index < extra else 0)
                township_index += 1
                _township(b, kcenter[:6] + f"{group:02d}", county, tname, b.near(*kat, 0.08), count)
    return b.rows


def _township(
    b: _Builder, center: str, county: str, name: str, at: tuple[float, float], villages: int
) -> None:
    township = b.add(
        center=center, type_code="216", parent=county, kind="region", tier="township",
        name=name, at=at,
    )  # fmt: skip
    b.terminal(center, township, f"{name}视频会议室", at)
    b.camera(center, township, f"{name}政府门口", at, ("公共场所",))
    for vname in b.place_names(villages, ("村",), set()):
        vat = b.near(*at, 0.03)
        village = b.add(
            center=center, type_code="216", parent=township, kind="region", tier="village",
            name=vname, at=vat,
        )  # fmt: skip
        b.add(
            center=center, type_code="401", parent=village, kind="service_room",
            name=f"{vname}村委会视频室", at=b.near(*vat, 0.002), tags=("远程申办",),
            attrs={"id_reader": True, "document_camera": True},
        )  # fmt: skip
        for spot, tag in b.rng.sample(places.VILLAGE_SPOTS, b.rng.randint(1, 3)):
            b.camera(center, village, f"{vname}{spot}", vat, (tag,))


def count_kinds(rows: list[Row]) -> dict[str, int]:
    """How many rows of each kind (regions split by tier), for the demo's summary."""
    c: Counter[str] = Counter()
    for r in rows:
        c[r["tier"] if r["kind"] == "region" else r["kind"]] += 1
    return dict(c)
