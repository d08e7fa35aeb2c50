"""A demo node's data folder: configuration, generated directory, users; made once, then reused.

``prepare(...)`` makes (or finds) the folder: ``vmesh.toml`` (rewritten every time with the given
host and port, and with live video on: ``[media] enabled`` with Janus's API ports picked free at
each start; the demo's cameras are synthetic sources that run only while watched),
``directory.csv`` (the generated network in the import format), ``vmesh.db`` (the directory
imported through ``vmesh.directory.transfer``, so the demo goes through the same checks as any
import), two users created through ``vmesh.auth.service`` — ``admin`` for the whole province and
``xihu``, an operator scoped to 西湖区 — with generated passwords, and ``demo.json`` (mode
0600: what was generated and the logins), written last. A folder with ``demo.json`` is reused as
it is. A folder left by an interrupted run is completed: the import is all or nothing, so it is
either there or not, and a user that exists gets a new password.

Calls: ``vmesh.demo.generate``, ``vmesh.directory.transfer``, ``vmesh.auth.service``.
Public: ``DemoSite``, ``Login``, ``prepare``, ``populate``, ``new_password``, ``rows_as_csv``,
``write_config``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select

from vmesh.audit.log import Actor
from vmesh.auth import service
from vmesh.config import NodeConfig, load_config
from vmesh.demo.generate import FIELDS, NODE_CODE, PROVINCE_CODE, count_kinds, generate
from vmesh.directory import transfer
from vmesh.directory.models import Entry
from vmesh.errors import NotFound
from vmesh.node.context import NodeContext
from vmesh.node.files import write_atomic

log = logging.getLogger(__name__)

DEMO_ACTOR = Actor("demo", "system")
STATE_FILE = "demo.json"
CONFIG_FILE = "vmesh.toml"
DIRECTORY_FILE = "directory.csv"
OPERATOR_COUNTY = "西湖区"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    roles: list[str]
    scope_code: str
    scope_name: str


@dataclass(frozen=True)
class DemoSite:
    data_dir: Path
    config_path: Path
    villages: int
    seed: int
    counts: dict[str, int]
    logins: list[Login]
    reused: bool

    @property
    def entries(self) -> int:
        return sum(self.counts.values())


def new_password(length: int = 12) -> str:
    """Letters and digits without look-alikes (0/O, 1/l/I), easy to type from the screen."""
    alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _free_port(first: int, last: int, taken: int = 0) -> int:
    """The first TCP port in ``[first, last]`` free on loopback (not ``taken``)."""
    for port in range(first, last + 1):
        if port == taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in {first}-{last} for Janus")


def write_config(data_dir: Path, host: str, port: int, *, media: bool = True) -> Path:
    """The demo node's configuration; its data folder is the folder the file is in.

    With ``media`` the node runs live video: Janus's HTTP and admin API on free loopback ports,
    UDP port ranges below Linux's ephemeral ports (32768+), sources started on demand and stopped
    10 s after their last viewer (a demo with thousands of cameras runs ffmpeg only for those
    watched)."""
    path = data_dir / CONFIG_FILE
    text = (
        "# Written by `vmesh demo` on every start (host and port come from its options).\n"
        "[node]\n"
        f'code = "{NODE_CODE}"\n'
        'name = "浙江省节点"\n'
        'tier = "province"\n'
        'data_dir = "."\n\n'
        "[http]\n"
        f"host = {json.dumps(host)}\n"
        f"port = {port}\n\n"
        "[log]\n"
        'level = "INFO"\n\n'
        "[servicedesk]\n"
        "sample_catalogue = true  # 40 items of 9 departments (vmesh/servicedesk/catalogue.json)\n"
    )
    if media:
        http = _free_port(8088, 8188)
        admin = _free_port(7088, 7188, taken=http)
        text += (
            "\n[media]\n"
            "enabled = true\n"
            f"janus_http_port = {http}\n"
            f"janus_admin_port = {admin}\n"
            "ice_port_range = [20000, 20999]\n"
            "streaming_port_range = [21000, 21099]\n"
            "channel_port_range = [21100, 21999]\n"
            "input_port_range = [22000, 23999]\n"
            "channels = 16\n"
            "source_linger_seconds = 10\n"
        )
    write_atomic(path, text, 0o644)
    return path


def rows_as_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()


def _load_state(data_dir: Path) -> DemoSite | None:
    path = data_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return DemoSite(
            data_dir=data_dir,
            config_path=data_dir / CONFIG_FILE,
            villages=int(d["villages"]),
            seed=int(d["seed"]),
            counts={str(k): int(n) for k, n in d["counts"].items()},
            logins=[Login(**x) for x in d["logins"]],
            reused=True,
        )
    except (ValueError, KeyError, TypeError) as e:
        log.warning("demo state=%s unreadable (%s): preparing the folder again", path, e)
        return None


async def _import(ctx: NodeContext, data: bytes, root: str, progress: Progress | None) -> None:
    async with ctx.db.sessions() as s:
        present = await s.scalar(select(Entry.id).where(Entry.code == root))
    if present is not None:
        log.info("demo directory already imported; keeping it")
        return
    rows = transfer.parse_file(data, "csv")
    await transfer.import_rows(
        ctx.db, ctx.audit, DEMO_ACTOR, rows, fmt="csv", source=DIRECTORY_FILE, progress=progress
    )


async def _ensure_user(ctx: NodeContext, login: Login, display_name: str) -> None:
    try:
        await service.get_user(ctx, DEMO_ACTOR, login.username)
    except NotFound:
        await service.create_user(
            ctx,
            DEMO_ACTOR,
            username=login.username,
            password=login.password,
            roles=login.roles,
            scope_code=login.scope_code,
            display_name=display_name,
        )
        return
    await service.set_password(ctx, DEMO_ACTOR, login.username, login.password)


def prepare(
    data_dir: Path,
    *,
    villages: int,
    seed: int,
    host: str,
    port: int,
    progress: Progress | None = None,
    media: bool = True,
) -> DemoSite:
    """Make the demo folder (or reuse it) and return what it holds; the node is not started."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = write_config(data_dir, host, port, media=media)
    found = _load_state(data_dir)
    if found is not None:
        return found

    rows = generate(villages, seed)
    csv_text = rows_as_csv(rows)
    write_atomic(data_dir / DIRECTORY_FILE, csv_text, 0o644)
    county = next(r for r in rows if r["tier"] == "county" and r["name"] == OPERATOR_COUNTY)
    logins = [
        Login("admin", new_password(), ["admin"], PROVINCE_CODE, "浙江省"),
        Login("xihu", new_password(), ["operator"], county["code"], OPERATOR_COUNTY),
    ]
    users = [(logins[0], "演示管理员"), (logins[1], "西湖区值班员")]
    asyncio.run(
        populate(load_config(config_path), csv_text.encode("utf-8"), PROVINCE_CODE, users, progress)
    )

    site = DemoSite(data_dir, config_path, villages, seed, count_kinds(rows), logins, reused=False)
    state = {
        "villages": villages,
        "seed": seed,
        "counts": site.counts,
        "logins": [asdict(x) for x in logins],
    }
    write_atomic(
        data_dir / STATE_FILE, json.dumps(state, ensure_ascii=False, indent=2) + "\n", 0o600
    )
    log.info("demo prepared dir=%s villages=%d seed=%d entries=%d", data_dir, villages, seed,
             site.entries)  # fmt: skip
    return site


async def populate(
    config: NodeConfig,
    csv_data: bytes,
    root: str,
    users: list[tuple[Login, str]],
    progress: Progress | None,
) -> None:
    """Import ``csv_data`` into the node of ``config`` unless ``root`` (its first org unit) is
    already there, and create (or re-password) ``users`` with their display names."""
    ctx = await NodeContext.open(config)
    try:
        await _import(ctx, csv_data, root, progress)
        for login, display_name in users:
            await _ensure_user(ctx, login, display_name)
    finally:
        await ctx.close()
