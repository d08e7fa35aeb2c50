"""``vmesh ca``: the network CA at the province, and node certificates issued from it.

    vmesh ca init --dir /var/lib/vmesh/ca --name 浙江省视频一张网
    vmesh ca issue 33010000002006000001 --dir /var/lib/vmesh/ca --name 杭州市节点 \\
        --san 10.1.2.3 --san DNS:hz.vmesh.example --out ./hz-tls

The issued folder (ca.pem, node.pem, node.key) goes to the node's ``<data_dir>/federation/tls/``.
"""

from __future__ import annotations

from pathlib import Path

import click

from vmesh.federation.ca import init_ca, issue_node_cert

ca_dir_option = click.option(
    "--dir",
    "ca_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="VMESH_CA_DIR",
    default="vmesh-ca",
    show_default=True,
    help="folder of the network CA (ca.pem, ca.key); also $VMESH_CA_DIR",
)


@click.group()
def ca() -> None:
    """The network's certificate authority (at the province) and node certificates."""


@ca.command("init")
@ca_dir_option
@click.option("--name", required=True, help="the network's name, e.g. 浙江省视频一张网")
@click.option("--days", type=int, default=3650, show_default=True, help="validity of the CA")
def ca_init(ca_dir: Path, name: str, days: int) -> None:
    """Make the network CA (EC P-256; the key file is 0600). Never overwrites one."""
    files = init_ca(ca_dir, name=name, days=days)
    click.echo(f"CA certificate: {files.cert}")
    click.echo(f"CA key (keep it private, offline if you can): {files.key}")


@ca.command("issue")
@click.argument("node")
@ca_dir_option
@click.option("--name", default="", help="the node's name (written in the certificate)")
@click.option(
    "--san",
    "sans",
    multiple=True,
    help="address or host name children dial this node at: IP:ADDR, DNS:NAME or bare (repeat)",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="output folder [default: <ca dir>/issued/<NODE>]",
)
@click.option("--days", type=int, default=825, show_default=True, help="validity")
def ca_issue(
    node: str, ca_dir: Path, name: str, sans: tuple[str, ...], out_dir: Path | None, days: int
) -> None:
    """Issue NODE's certificate (NODE = its 20-digit code, type 200), server and client use."""
    out = out_dir if out_dir is not None else ca_dir / "issued" / node.strip()
    files = issue_node_cert(ca_dir, node.strip(), out_dir=out, name=name, sans=sans, days=days)
    click.echo(f"node certificate: {files.cert}")
    click.echo(f"node key: {files.key}")
    click.echo(f"CA certificate: {files.ca}")
    click.echo("copy these three files to the node's <data_dir>/federation/tls/")
