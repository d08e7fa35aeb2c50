"""``vmesh directory import|export|search``: the directory from the node's command line.

The command line acts as the system user ``cli`` (``vmesh.audit.log.Actor``): it is not held to a
scope, and its imports are audited as ``directory.import`` by ``cli``. A file with errors is
rejected whole: every error is printed with its row and field, and the command exits with status 2
(``vmesh.cli.main`` does the printing). Progress of long imports goes to stderr.

    vmesh directory import zhejiang.csv [--dry-run] [--update]
    vmesh directory export out.json --under 33010600002166000001
    vmesh directory search --q 西湖 --kind camera --limit 20
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from vmesh.audit.log import Actor
from vmesh.directory import transfer
from vmesh.directory.search import SORTS, SearchQuery, search
from vmesh.directory.store import Directory
from vmesh.node.cli_common import as_json, config_option, run_with_node
from vmesh.node.context import NodeContext

CLI_ACTOR = Actor("cli", "system")


def _format(path: Path, given: str | None) -> str:
    if given:
        return given
    return "json" if path.suffix.lower() == ".json" else "csv"


class _Progress:
    """Prints ``phase done/total`` on stderr at most a few times a second."""

    def __init__(self) -> None:
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.5:
            return
        self.last = now
        end = "\n" if done >= total or not self.tty else ""
        click.echo(f"\r{phase}: {done}/{total} rows{end}", err=True, nl=False)


@click.group()
def directory() -> None:
    """The directory: org units and endpoints with GB/T 28181 codes."""


@directory.command("import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(transfer.FORMATS), help="default: by suffix")
@click.option("--dry-run", is_flag=True, help="check the file, change nothing")
@click.option("--update", is_flag=True, help="change entries whose code already exists")
def import_cmd(config_path: Path, file: Path, fmt: str | None, dry_run: bool, update: bool) -> None:
    """Import FILE (CSV or JSON), all or nothing."""
    fmt = _format(file, fmt)
    data = file.read_bytes()
    started = time.perf_counter()

    async def go(ctx: NodeContext) -> transfer.ImportReport:
        return await transfer.import_file(
            ctx.db,
            ctx.audit,
            CLI_ACTOR,
            data,
            fmt,
            dry_run=dry_run,
            update_existing=update,
            source=file.name,
            progress=_Progress(),
        )

    report = run_with_node(config_path, go)
    secs = time.perf_counter() - started
    what = "checked (dry run)" if dry_run else "imported"
    click.echo(
        f"{what} {report.rows} rows from {file}: {report.created} new, {report.updated} changed "
        f"in {secs:.1f} s"
    )


@directory.command("export")
@config_option
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(transfer.FORMATS), help="default: by suffix")
@click.option("--under", metavar="CODE", help="export only this entry's subtree")
def export_cmd(config_path: Path, file: Path, fmt: str | None, under: str | None) -> None:
    """Export the directory (or a subtree) to FILE ('-' for stdout)."""
    fmt = _format(file, fmt)

    async def go(ctx: NodeContext) -> int:
        d = Directory(ctx.db, ctx.audit)
        subtree = await d.resolve_under(CLI_ACTOR, under, "directory.export") if under else None
        n = 0
        tmp = None if str(file) == "-" else file.with_name(file.name + ".part")
        out = sys.stdout if tmp is None else tmp.open("w", encoding="utf-8", newline="")
        try:
            async for chunk in transfer.export_lines(ctx.db, fmt, subtree):
                out.write(chunk)
                n += chunk.count("\n")
        finally:
            if tmp is not None:
                out.close()
        if tmp is not None:
            tmp.replace(file)  # a half-written export never takes the file's name
        await ctx.audit.write(CLI_ACTOR, "directory.export", under or "", "ok", {"format": fmt})
        return n

    lines = run_with_node(config_path, go)
    if str(file) != "-":
        click.echo(f"exported to {file} ({lines} lines)", err=True)


@directory.command("search")
@config_option
@click.option("--q", help="substring of the name, e.g. 西湖")
@click.option("--code-prefix", help="leading digits of the code")
@click.option("--kind")
@click.option("--type", "type_", help="3-digit type code, e.g. 132")
@click.option("--status", type=click.Choice(["online", "offline", "unknown"]))
@click.option("--tag")
@click.option("--under", metavar="CODE", help="search this entry's subtree")
@click.option("--sort", type=click.Choice(SORTS), default="name", show_default=True)
@click.option("--offset", type=int, default=0)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json_", is_flag=True, help="print the page as JSON")
def search_cmd(
    config_path: Path,
    q: str | None,
    code_prefix: str | None,
    kind: str | None,
    type_: str | None,
    status: str | None,
    tag: str | None,
    under: str | None,
    sort: str,
    offset: int,
    limit: int,
    as_json_: bool,
) -> None:
    """Search the directory."""
    qry = SearchQuery(
        q=q,
        code_prefix=code_prefix,
        kind=kind,
        type=type_,
        status=status,
        tag=tag,
        sort=sort,
        offset=offset,
        limit=limit,
    )

    async def go(ctx: NodeContext) -> dict[str, object]:
        d = Directory(ctx.db, ctx.audit)
        subtree = await d.resolve_under(CLI_ACTOR, under, "directory.search") if under else None
        res = await search(ctx.db, qry, subtree)
        return {
            "items": res.items,
            "total": res.total,
            "total_capped": res.total_capped,
            "offset": offset,
            "limit": limit,
        }

    page = run_with_node(config_path, go)
    if as_json_:
        click.echo(as_json(page))
        return
    items = page["items"]
    assert isinstance(items, list)
    for it in items:
        click.echo(f"{it['code']}  {it['kind']:<19} {it['status']:<7}  {it['name']}")
    more = "+" if page["total_capped"] else ""
    click.echo(f"-- {len(items)} shown of {page['total']}{more}", err=True)
