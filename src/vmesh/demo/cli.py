"""``vmesh demo``: a sample Zhejiang network on a node of its own, ready to log in to.

    vmesh demo                              # small: 200 villages, starts in seconds
    vmesh demo --size large                 # the real province's size: 20,000 villages
    vmesh demo --villages 500 --seed 7 --data /tmp/demo --host 10.0.0.5 --port 8081
    vmesh demo --network                    # province, 2 cities, their counties: one node each

Live video is on (``[media]``: Janus, the switch, synthetic cameras started only while watched);
``--no-media`` leaves it off, for a machine without Janus. The first run generates the network
(``vmesh.demo.generate``), imports it and creates the logins (``vmesh.demo.site``); later runs
reuse the folder as it is. Then the node is started in this process and serves until Ctrl-C or
SIGTERM. ``--prepare-only`` stops before starting the node.

``--network`` runs the federated network instead (``vmesh.demo.network``): a node per province,
city and county, each its own process with its own nats-server and Janus, on loopback ports from
``--port`` up (default data folder ``demo-network``)."""

from __future__ import annotations

import errno
import logging
import socket
import sys
import time
from pathlib import Path

import click

from vmesh.config import load_config
from vmesh.demo.generate import MAX_VILLAGES, SIZES
from vmesh.demo.site import DemoSite, prepare

ORDER = [
    "province", "city", "county", "township", "village", "platform", "department", "nvr",
    "camera", "conference_terminal", "service_room", "field_terminal",
]  # fmt: skip


def _progress(phase: str, done: int, total: int, _last: list[float] = [0.0]) -> None:  # noqa: B006
    now = time.monotonic()
    if done < total and now - _last[0] < 1.0:
        return
    _last[0] = now
    click.echo(f"  {phase}: {done}/{total} rows", err=True)


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise click.UsageError(
                    f"port {port} on {host} is in use; choose another with --port"
                ) from None
            raise click.UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def _url(host: str, port: int) -> str:
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def _describe(site: DemoSite, host: str, port: int, *, media: bool = True) -> str:
    counts = ", ".join(f"{site.counts[k]} {k}" for k in ORDER if site.counts.get(k))
    lines = [
        f"vmesh demo: 浙江省, {site.villages} villages (seed {site.seed}), "
        f"{site.entries} directory entries" + (" (reused)" if site.reused else ""),
        f"  {counts}",
        "",
        f"  console:  {_url(host, port)}",
        f"  video:    {_url(host, port)}#/wall  (cameras play while watched)"
        if media
        else "  video:    off (--no-media)",
    ]
    for login in site.logins:
        lines.append(
            f"  login:    {login.username} / {login.password}   "
            f"({', '.join(login.roles)}, {login.scope_name})"
        )
    lines += [
        "",
        f"  data:     {site.data_dir}  (remove it to generate a new network)",
        f"  config:   {site.config_path}",
    ]
    return "\n".join(lines)


@click.command("demo")
@click.option(
    "--size",
    type=click.Choice(list(SIZES)),
    default="small",
    show_default=True,
    help="villages: " + ", ".join(f"{k} {v}" for k, v in SIZES.items()),
)
@click.option(
    "--villages",
    type=click.IntRange(1, MAX_VILLAGES),
    help="exact number of villages (overrides --size)",
)
@click.option("--seed", type=int, default=1, show_default=True, help="same seed, same network")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="folder for the demo's configuration, database and logins; reused when it exists "
    "[default: demo-data, or demo-network with --network]",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--prepare-only", is_flag=True, help="make the data folder, do not start the node")
@click.option(
    "--network",
    is_flag=True,
    help="a real multi-node network: the province, 杭州市, 温州市 and their counties, "
    "one node each "
    "(at least 400 villages)",
)
@click.option(
    "--media/--no-media",
    default=True,
    show_default=True,
    help="live video (Janus + synthetic cameras on the video wall)",
)
def demo(
    size: str,
    villages: int | None,
    seed: int,
    data_dir: Path | None,
    host: str,
    port: int,
    prepare_only: bool,
    network: bool,
    media: bool,
) -> None:
    """Generate a sample Zhejiang network, start a node on it, print the console and logins."""
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    wanted = villages or SIZES[size]
    if network:
        _network(data_dir or Path("demo-network"), max(wanted, 400) if villages is None else wanted,
                 seed, host, port, prepare_only=prepare_only, media=media)  # fmt: skip
        return
    data_dir = data_dir or Path("demo-data")
    if not prepare_only:
        _check_port(host, port)
    if not (data_dir / "demo.json").exists():
        click.echo(f"generating {wanted} villages into {data_dir} ...", err=True)
    site = prepare(
        data_dir,
        villages=wanted,
        seed=seed,
        host=host,
        port=port,
        progress=_progress,
        media=media,
    )
    if site.reused and (site.villages, site.seed) != (wanted, seed):
        click.echo(
            f"note: {site.data_dir} holds a demo of {site.villages} villages (seed {site.seed}); "
            "reusing it. Remove the folder or use --data to generate another.",
            err=True,
        )
    click.echo(_describe(site, host, port, media=media))
    sys.stdout.flush()
    if prepare_only:
        return

    from vmesh.node.server import serve

    config = load_config(site.config_path)
    logging.getLogger().setLevel(config.log.level)
    click.echo("  (Ctrl-C stops the node)", err=True)
    serve(config)


def _network(
    data_dir: Path,
    villages: int,
    seed: int,
    host: str,
    port: int,
    *,
    prepare_only: bool,
    media: bool,
) -> None:
    from vmesh.demo.network import describe, node_ports, prepare_network, run_network

    if host != "127.0.0.1" or not media:
        raise click.UsageError("--network runs on loopback with live video: drop --host/--no-media")
    if not (data_dir / "network.json").exists():
        click.echo(f"generating {villages} villages into {data_dir} ...", err=True)
    try:
        site = prepare_network(data_dir, villages=villages, seed=seed, http_base=port,
                               progress=_progress)  # fmt: skip
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if not prepare_only:
        for n in site.nodes:
            p = node_ports(n.index, port)
            for tcp in (p.http, p.nats_client, p.nats_monitor, p.leaf, p.janus_http, p.janus_admin):
                _check_port("127.0.0.1", tcp)
    click.echo(describe(site, port))
    sys.stdout.flush()
    if prepare_only:
        return
    sys.exit(run_network(site, port, echo=lambda m: click.echo(m, err=True)))
