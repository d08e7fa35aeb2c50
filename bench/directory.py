"""Directory benchmark: import a province of endpoints, then time search and tree listing over HTTP.

For each database (SQLite and PostgreSQL in the same run) it:

1. generates a realistic directory as CSV (province › 11 cities › ~90 counties › ~1,300
   townships › villages › cameras, terminals and service rooms with Chinese names such as
   西湖区文三路与学院路口东北角), ``--rows`` entries in all;
2. imports it with ``vmesh.directory.transfer`` (parse + check + write, one transaction) and
   reports rows/s;
3. starts the real node (``vmesh node run``) as a subprocess on that database, logs in over HTTP
   and times, one request at a time, Chinese-substring searches of 1, 2 and 3+ characters,
   code-prefix searches, a subtree-limited search and tree-level listings (client-side latency,
   p50/p99), while sampling the node process's resident memory with psutil.

Prints one JSON document. Results and the exact command go to docs/BENCHMARKS.md.

    .venv/bin/python bench/directory.py --rows 1000000
    .venv/bin/python bench/directory.py --rows 20000 --db sqlite      # a quick look
    .venv/bin/python bench/directory.py --rows 1000000 --db sqlite --import-only [--checks process]
    .venv/bin/python bench/directory.py --rows 1000000 --db sqlite --sqlite-mmap-mib 0,1024
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import platform
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the PostgreSQL cluster helper of the test suite

from vmesh.audit.log import Actor  # noqa: E402
from vmesh.auth import service  # noqa: E402
from vmesh.config import parse_config  # noqa: E402
from vmesh.directory import transfer  # noqa: E402
from vmesh.identity.codes import compose  # noqa: E402
from vmesh.node.context import NodeContext  # noqa: E402

NODE_CODE = "33000000002006000001"
PROVINCE = "33000000002166000001"
ADMIN = Actor("bench", "admin", "127.0.0.1")
PASSWORD = "bench-Passw0rd!"

CITIES = [
    "杭州市",
    "宁波市",
    "温州市",
    "嘉兴市",
    "湖州市",
    "绍兴市",
    "金华市",
    "衢州市",
    "舟山市",
    "台州市",
    "丽水市",
]
COUNTY_STEMS = [
    "西湖",
    "上城",
    "拱墅",
    "滨江",
    "萧山",
    "余杭",
    "临平",
    "富阳",
    "临安",
    "桐庐",
    "淳安",
    "建德",
    "海曙",
    "江北",
    "北仑",
    "镇海",
    "鄞州",
    "奉化",
    "象山",
    "宁海",
    "余姚",
    "慈溪",
    "鹿城",
    "龙湾",
    "瓯海",
    "洞头",
    "永嘉",
    "平阳",
    "苍南",
    "文成",
    "泰顺",
    "瑞安",
    "乐清",
    "龙港",
    "南湖",
    "秀洲",
    "嘉善",
    "海盐",
    "海宁",
    "平湖",
    "桐乡",
    "吴兴",
    "南浔",
    "德清",
    "长兴",
    "安吉",
    "越城",
    "柯桥",
    "上虞",
    "新昌",
    "诸暨",
    "嵊州",
    "婺城",
    "金东",
    "武义",
    "浦江",
    "磐安",
    "兰溪",
    "义乌",
    "东阳",
    "永康",
    "柯城",
    "衢江",
    "常山",
    "开化",
    "龙游",
    "江山",
    "定海",
    "普陀",
    "岱山",
    "嵊泗",
    "椒江",
    "黄岩",
    "路桥",
    "三门",
    "天台",
    "仙居",
    "温岭",
    "临海",
    "玉环",
    "莲都",
    "青田",
    "缙云",
    "遂昌",
    "松阳",
    "云和",
    "庆元",
    "景宁",
    "龙泉",
    "曲江",
]
PLACE = list(
    "东西南北中上下前后新老大小长高山水江河湖溪塘桥港湾坞岭坑岙岗林竹茶花桃李梅兰"
    "松柏枫杨柳金银玉石龙凤云霞光明安宁康泰和平福寿春秋丰华兴旺乐清文武仁义"
)
ROADS = [
    "文三路",
    "学院路",
    "天目山路",
    "莫干山路",
    "延安路",
    "解放路",
    "庆春路",
    "凤起路",
    "体育场路",
    "环城西路",
    "教工路",
    "古墩路",
    "紫金港路",
    "余杭塘路",
    "文一西路",
    "留和路",
    "转塘街",
    "之江路",
    "人民路",
    "中山路",
    "建设路",
    "新华路",
    "工农路",
    "滨江大道",
    "江南大道",
    "时代大道",
    "世纪大道",
    "迎宾大道",
    "振兴路",
    "创业路",
]
SPOTS = [
    "东北角",
    "西南角",
    "东南角",
    "西北角",
    "北侧",
    "南侧",
    "入口",
    "出口",
    "广场",
    "停车场",
    "路口",
    "桥头",
    "村口",
    "村委会门口",
    "学校门口",
    "卫生院门口",
    "菜市场",
    "公交站",
    "码头",
    "加油站",
]
ENDPOINT_KINDS = [
    ("camera", "132", 0.86),
    ("camera", "131", 0.06),
    ("conference_terminal", "400", 0.03),
    ("service_room", "401", 0.03),
    ("field_terminal", "138", 0.02),
]


def place_name(rng: random.Random, n: int = 2) -> str:
    return "".join(rng.choice(PLACE) for _ in range(n))


def generate(rows: int, seed: int = 28181) -> tuple[str, dict[str, list[str]]]:
    """The CSV text of a directory of ``rows`` entries, and sample codes by level."""
    rng = random.Random(seed)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        ["code", "parent_code", "kind", "tier", "name", "lat", "lon", "tags", "status", "attrs"]
    )
    levels: dict[str, list[str]] = {
        "province": [PROVINCE],
        "city": [],
        "county": [],
        "township": [],
        "village": [],
        "endpoint": [],
    }
    n = 0

    def row(
        code: str,
        parent: str,
        kind: str,
        tier: str,
        name: str,
        lat: float,
        lon: float,
        tags: str = "",
        status: str = "unknown",
    ) -> None:
        nonlocal n
        w.writerow([code, parent, kind, tier, name, f"{lat:.5f}", f"{lon:.5f}", tags, status, ""])
        n += 1

    row(PROVINCE, "", "region", "province", "浙江省", 30.26, 120.15)
    # Org units take ~2% of the rows, as in the real network (1.3k townships, 20k villages per 1M).
    n_counties = 90
    n_townships = max(n_counties, min(1300, rows // 700))
    n_villages = max(n_townships, min(20000, rows // 50))
    stems = iter(COUNTY_STEMS)
    counties: list[tuple[str, str, float, float]] = []
    for ci, city in enumerate(CITIES, start=1):
        c_center = f"33{ci:02d}0000"
        c_code = compose(c_center, "216", 1)
        lat, lon = 27.5 + rng.random() * 3, 118.5 + rng.random() * 3
        row(c_code, PROVINCE, "region", "city", city, lat, lon)
        levels["city"].append(c_code)
        per_city = n_counties // len(CITIES) + (1 if ci <= n_counties % len(CITIES) else 0)
        for k in range(1, per_city + 1):
            stem = next(stems)
            k_code = compose(f"33{ci:02d}{k:02d}00", "216", 1)
            suffix = "区" if k <= 4 else "县"
            row(k_code, c_code, "region", "county", stem + suffix, lat, lon)
            levels["county"].append(k_code)
            counties.append((k_code, stem + suffix, lat, lon))
    townships: list[tuple[str, str, str, float, float]] = []
    for t in range(n_townships):
        k_code, k_name, lat, lon = counties[t % len(counties)]
        group = t // len(counties) + 1
        center = k_code[:6] + f"{group:02d}"
        t_code = compose(center, "216", 1)
        t_name = place_name(rng) + rng.choice(["街道", "镇", "乡"])
        la, lo = lat + rng.uniform(-0.3, 0.3), lon + rng.uniform(-0.3, 0.3)
        row(t_code, k_code, "region", "township", t_name, la, lo)
        levels["township"].append(t_code)
        townships.append((t_code, center, k_name, la, lo))
    villages: list[tuple[str, str, str, str, float, float]] = []
    serial_next: dict[tuple[str, str], int] = {}

    def next_serial(center: str, t: str) -> int:
        s = serial_next.get((center, t), 2 if t == "216" else 1)
        serial_next[(center, t)] = s + 1
        return s

    for vi in range(n_villages):
        t_code, center, k_name, la, lo = townships[vi % len(townships)]
        v_code = compose(center, "216", next_serial(center, "216"))
        v_name = place_name(rng) + "村"
        vla, vlo = la + rng.uniform(-0.05, 0.05), lo + rng.uniform(-0.05, 0.05)
        row(v_code, t_code, "region", "village", v_name, vla, vlo)
        levels["village"].append(v_code)
        villages.append((v_code, center, k_name, v_name, vla, vlo))
    kinds = [k for k, _, _ in ENDPOINT_KINDS]
    weights = [wt for _, _, wt in ENDPOINT_KINDS]
    types = {(k, t) for k, t, _ in ENDPOINT_KINDS}
    type_of = {k: [t for kk, t in types if kk == k] for k in kinds}
    i = 0
    while n < rows:
        v_code, center, k_name, v_name, la, lo = villages[i % len(villages)]
        i += 1
        kind = rng.choices(kinds, weights)[0]
        t = rng.choice(type_of[kind])
        code = compose(center, t, next_serial(center, t))
        if kind == "camera":
            if rng.random() < 0.5:
                name = f"{k_name}{rng.choice(ROADS)}与{rng.choice(ROADS)}口{rng.choice(SPOTS)}"
            else:
                name = f"{v_name}{rng.choice(SPOTS)}{rng.randint(1, 9)}号"
        elif kind == "conference_terminal":
            name = f"{v_name}会议终端"
        elif kind == "service_room":
            name = f"{v_name}便民服务室"
        else:
            name = f"{k_name}执法记录仪{rng.randint(1, 999):03d}"
        status = rng.choices(["online", "offline", "unknown"], [0.8, 0.15, 0.05])[0]
        tags = rng.choice(["", "", "hd", "雪亮", "hd 雪亮", "重点"])
        row(
            code,
            v_code,
            kind,
            "",
            name,
            la + rng.uniform(-0.01, 0.01),
            lo + rng.uniform(-0.01, 0.01),
            tags,
            status,
        )
        if len(levels["endpoint"]) < 5000:
            levels["endpoint"].append(code)
    return out.getvalue(), levels


def node_config(data_dir: Path, url: str, port: int) -> dict[str, Any]:
    return {
        "node": {
            "code": NODE_CODE,
            "name": "浙江省节点",
            "tier": "province",
            "data_dir": str(data_dir),
        },
        "database": {"url": url},
        "http": {"host": "127.0.0.1", "port": port},
        "log": {"level": "WARNING"},
    }


def toml_of(cfg: dict[str, Any]) -> str:
    lines = []
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        for k, val in values.items():
            lines.append(f"{k} = {json.dumps(val, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


async def do_import(cfg: dict[str, Any], text: str) -> dict[str, Any]:
    ctx = await NodeContext.open(parse_config(cfg))
    try:
        load0 = os.getloadavg()[0]
        k0 = children_cpu()
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        # Parse, check and write, streamed: a chunk is parsed and checked while the previous
        # one is written.
        report = await transfer.import_file(ctx.db, ctx.audit, Actor("cli", "system"), text, "csv")
        t2, c2, m2 = time.perf_counter(), time.process_time(), time.thread_time()
        k2 = children_cpu()
        await service.create_user(
            ctx, ADMIN, username="bench", password=PASSWORD, roles=["admin"], scope_code=PROVINCE
        )
        return {
            "rows": report.created,
            "total_s": round(t2 - t0, 2),
            "rows_per_s": round(report.created / (t2 - t0)),
            # CPU seconds (this process: parsing and checks on the main thread, the database
            # driver's thread for SQLite): what the import costs whatever the machine's load.
            "cpu_s": round(c2 - c0, 2),
            "main_thread_cpu_s": round(m2 - m0, 2),
            # The checking process of a big SQLite import (vmesh.directory.checkproc).
            "checking_process_cpu_s": round(k2 - k0, 2),
            "load_avg": [round(load0, 1), round(os.getloadavg()[0], 1)],
        }
    finally:
        await ctx.close()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, round(p / 100 * (len(xs) - 1))))
    return round(xs[k] * 1000, 2)


def query_sets(
    text: str, levels: dict[str, list[str]], n: int, seed: int = 7
) -> dict[str, list[str]]:
    rng = random.Random(seed)
    names = [line.split(",")[4] for line in rng.sample(text.splitlines()[1:], 4000)]

    def sub(k: int) -> str:
        while True:
            nm = rng.choice(names)
            if len(nm) >= k:
                i = rng.randrange(0, len(nm) - k + 1)
                return nm[i : i + k]

    codes = levels["endpoint"] + levels["village"]
    orgs = levels["city"] + levels["county"] + levels["township"] + levels["village"]

    def search(**params: object) -> str:
        return f"/api/directory/search?{httpx.QueryParams(params)}"

    def prefix() -> str:
        return rng.choice(codes)[: rng.choice([4, 6, 8, 10, 13, 16])]

    return {
        "name_1char": [search(q=sub(1)) for _ in range(n)],
        "name_2char": [search(q=sub(2)) for _ in range(n)],
        "name_3plus": [search(q=sub(rng.randint(3, 6))) for _ in range(n)],
        "code_prefix": [search(code_prefix=prefix(), sort="code") for _ in range(n)],
        "name_in_county": [
            search(q=sub(rng.randint(1, 2)), under=rng.choice(levels["county"])) for _ in range(n)
        ],
        "tree_level": [
            f"/api/directory/entries/{rng.choice(orgs)}/children?limit=50" for _ in range(n)
        ],
    }


def _rss_anon(pid: int) -> int:
    """Anonymous resident memory of ``pid`` in bytes (Linux), 0 where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _db_connections(pid: int, db_file: Path) -> int:
    """How many open files of ``pid`` are ``db_file`` (SQLite: one per pooled connection)."""
    n = 0
    with contextlib.suppress(OSError):  # the node has exited
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed meanwhile
                n += os.readlink(fd) == str(db_file)
    return n


def serve_and_measure(
    cfg: dict[str, Any], workdir: Path, sets: dict[str, list[str]]
) -> dict[str, Any]:
    conf = workdir / "vmesh.toml"
    conf.write_text(toml_of(cfg), encoding="utf-8")
    port = cfg["http"]["port"]
    log = (workdir / "node.log").open("w")
    argv = [str(Path(sys.executable).parent / "vmesh"), "node", "run", "--config", str(conf)]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        ps = psutil.Process(proc.pid)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=base, timeout=60) as c:
            while True:
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"node did not start; see {workdir / 'node.log'}")
                time.sleep(0.2)
            r = c.post("/api/auth/login", json={"username": "bench", "password": PASSWORD})
            r.raise_for_status()
            rss_max = uss_max = anon_max = conns_max = 0
            db_file = (Path(cfg["node"]["data_dir"]) / "vmesh.db").resolve()
            results: dict[str, Any] = {}
            for name, urls in sets.items():
                for u in urls[:10]:  # warm-up
                    c.get(u).raise_for_status()
                times: list[float] = []
                capped = unsorted = 0
                for u in urls:
                    t0 = time.perf_counter()
                    r = c.get(u)
                    times.append(time.perf_counter() - t0)
                    r.raise_for_status()
                    body = r.json()
                    capped += bool(body.get("total_capped"))
                    # Too many name matches to sort: a page in creation order (sorted_by says so).
                    unsorted += body.get("sorted_by", "").lstrip("-") == "created"
                    if len(times) % 20 == 0:
                        mem = ps.memory_full_info()
                        rss_max, uss_max = max(rss_max, mem.rss), max(uss_max, mem.uss)
                        anon_max = max(anon_max, _rss_anon(proc.pid))
                        conns_max = max(conns_max, _db_connections(proc.pid, db_file))
                results[name] = {
                    "n": len(times),
                    "p50_ms": pct(times, 50),
                    "p99_ms": pct(times, 99),
                    "max_ms": round(max(times) * 1000, 2),
                    "mean_ms": round(statistics.fmean(times) * 1000, 2),
                    "capped_totals": capped,
                    "creation_order_pages": unsorted,
                    "load_avg_1m": round(os.getloadavg()[0], 1),
                }
            # RSS and USS count the database pages SQLite maps (mmap: page cache the kernel can
            # drop); RssAnon is the node's own heap.
            results["node_rss_mb_max"] = round(rss_max / 2**20, 1)
            results["node_uss_mb_max"] = round(uss_max / 2**20, 1)
            results["node_rss_anon_mb_max"] = round(anon_max / 2**20, 1)
            if cfg["database"]["url"] == "":
                # Each connection maps the file on its own ([database] sqlite_mmap_mib).
                results["node_sqlite_connections_max"] = conns_max
            return results
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300, help="requests per query kind")
    ap.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    ap.add_argument(
        "--import-only", action="store_true", help="import and report, do not serve or search"
    )
    ap.add_argument(
        "--checks",
        choices=["node", "here", "process"],
        default="node",
        help="node: as the node does (a big SQLite import is checked in a process of its own, "
        "transfer.SEPARATE_CHECKS_ROWS); here: always in the importing process; process: from "
        "BULK_REBUILD_ROWS lines in a process of its own (vmesh.directory.checkproc)",
    )
    ap.add_argument(
        "--sqlite-mmap-mib",
        default="0",
        help="[database] sqlite_mmap_mib of the node serving SQLite; several, comma-separated "
        "(e.g. 0,1024), serve the same import once each, one after the other",
    )
    ap.add_argument(
        "--pg-url",
        help="an empty PostgreSQL database (default: start a throwaway "
        "cluster with the test suite's helper)",
    )
    args = ap.parse_args()
    if args.checks == "process":
        transfer.SEPARATE_CHECKS_ROWS = transfer.BULK_REBUILD_ROWS
    elif args.checks == "here":
        transfer.SEPARATE_CHECKS_ROWS = None
    t0 = time.perf_counter()
    text, levels = generate(args.rows)
    gen_s = time.perf_counter() - t0
    sets = query_sets(text, levels, args.queries)
    report: dict[str, Any] = {
        "rows": args.rows,
        "generate_s": round(gen_s, 1),
        "checks": args.checks,
        "org_units": {k: len(v) for k, v in levels.items() if k != "endpoint"},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_start": [round(x, 1) for x in os.getloadavg()],
            "platform": platform.platform(),
            "mem_gb": round(psutil.virtual_memory().total / 2**30, 1),
        },
        "databases": {},
    }
    cluster = None
    with tempfile.TemporaryDirectory(prefix="vmesh-bench-") as tmp:
        for db in [d.strip() for d in args.db.split(",") if d.strip()]:
            work = Path(tmp) / db
            work.mkdir()
            url = ""
            if db == "postgresql":
                if args.pg_url:
                    url = args.pg_url
                else:
                    from pg import PgCluster

                    cluster = PgCluster()
                    cluster.start()
                    url = cluster.url(cluster.create_database())
            cfg = node_config(work / "data", url, free_port())
            imp = asyncio.run(do_import(cfg, text))
            print(
                f"{db}: imported {imp['rows']} rows at {imp['rows_per_s']} rows/s", file=sys.stderr
            )
            served: dict[str, Any] = {}
            if args.import_only:
                pass
            elif db == "sqlite":
                by_mmap = {}
                for mib in [int(x) for x in args.sqlite_mmap_mib.split(",")]:
                    cfg["database"]["sqlite_mmap_mib"] = mib
                    by_mmap[str(mib)] = serve_and_measure(cfg, work, sets)
                del cfg["database"]["sqlite_mmap_mib"]
                one = len(by_mmap) == 1
                served = {"sqlite_mmap_mib": mib, **by_mmap[str(mib)]} if one else by_mmap
            else:
                served = serve_and_measure(cfg, work, sets)
            report["databases"][db] = {"import": imp, **served}
            if db == "sqlite":
                size = sum(f.stat().st_size for f in (work / "data").glob("vmesh.db*"))
                report["databases"][db]["db_file_mb"] = round(size / 2**20, 1)
        if cluster is not None:
            cluster.stop()
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
