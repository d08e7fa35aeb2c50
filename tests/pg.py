"""A throw-away PostgreSQL cluster for the tests, from Debian's ``postgresql`` package.

One cluster per test session: ``initdb`` into a fresh temporary folder, a server on 127.0.0.1 at a
free port with its unix socket in that folder, run as the ``postgres`` user when the tests run as
root (PostgreSQL refuses to run as root). The schema is migrated once into a template database;
each test gets ``CREATE DATABASE t_xxx TEMPLATE vmesh_template`` (milliseconds instead of a full
Alembic run) and the database is dropped after the test. The server is a direct child of the test
process (not daemonised by ``pg_ctl``) and asked to die with it, so a killed test run leaves no
server behind; ``stop()`` shuts it down and removes the folder.

Durability is switched off (``fsync``, ``full_page_writes``, ``synchronous_commit``): the data is
discarded at the end anyway.

Public: ``PgCluster``, ``find_bindir``, ``PgUnavailable``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

TEMPLATE_DB = "vmesh_template"
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only calls it


class PgUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says what is missing."""


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<major>/bin`` that has ``initdb`` and ``postgres``."""
    root = Path(os.environ.get("VMESH_PG_ROOT", "/usr/lib/postgresql"))
    found: list[tuple[int, Path]] = []
    if root.is_dir():
        for d in root.iterdir():
            b = d / "bin"
            if d.name.isdigit() and (b / "initdb").is_file() and (b / "postgres").is_file():
                found.append((int(d.name), b))
    if not found:
        raise PgUnavailable(
            f"PostgreSQL server binaries not found in {root}/*/bin. Install the Debian package "
            "'postgresql' (`make test` does it via scripts/setup.sh), or set VMESH_SKIP_PG=1 to "
            "skip the PostgreSQL variants of the tests."
        )
    return max(found)[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demote(uid: int | None, gid: int | None) -> Callable[[], None]:
    """Runs in the child before exec: drop to the server's user, then die with the test process.

    The parent-death signal is set after the credentials change because changing them clears it.
    """

    def fn() -> None:
        if gid is not None and uid is not None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
        os.setsid()

    return fn


def _sweep_stale(min_age_s: float = 3600.0) -> None:
    """Remove folders left by killed test runs: old, and with no live server in them."""
    now = time.time()
    for d in Path(tempfile.gettempdir()).glob("vmesh-pg-*"):
        try:
            if now - d.stat().st_mtime < min_age_s:
                continue
            pidfile = d / "data" / "postmaster.pid"
            if pidfile.exists():
                pid = int(pidfile.read_text().split()[0])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 0)
                    continue  # still running: someone else's session
        except (OSError, ValueError, IndexError):
            continue
        shutil.rmtree(d, ignore_errors=True)


class PgCluster:
    """One running PostgreSQL server and the databases the tests make in it."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.dir: Path | None = None
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._uid: int | None = None
        self._gid: int | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable(
                    "running as root, but there is no 'postgres' user to run the server as "
                    "(the Debian package 'postgresql' creates it)"
                ) from None
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
        _sweep_stale()
        self.dir = Path(tempfile.mkdtemp(prefix="vmesh-pg-"))
        try:
            self._start_in(self.dir)
        except BaseException:
            self.stop()
            raise

    def _start_in(self, top: Path) -> None:
        if self._uid is not None:
            os.chown(top, self._uid, self._gid or -1)
        data = top / "data"
        self._run_as_server(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            what="initdb",
        )
        self.port = _free_port()
        logfile = top / "postgres.log"
        with open(logfile, "wb") as logf:
            if self._uid is not None:
                os.chown(logfile, self._uid, self._gid or -1)
            self.proc = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(data),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"port={self.port}",
                    "-c",
                    f"unix_socket_directories={top}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "max_connections=200",
                    "-c",
                    "shared_buffers=64MB",
                ],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_demote(self._uid, self._gid),
            )
        self._wait_ready(logfile)
        self.psql(f"CREATE DATABASE {TEMPLATE_DB}")
        log.info("postgresql %s started port=%s dir=%s", self.bindir, self.port, top)

    def _run_as_server(self, argv: list[str], *, what: str) -> None:
        r = subprocess.run(
            argv,
            capture_output=True,
            preexec_fn=_demote(self._uid, self._gid),
            cwd="/",
            check=False,
        )
        if r.returncode != 0:
            out = (r.stdout + r.stderr).decode(errors="replace")
            raise PgUnavailable(f"{what} failed (exit {r.returncode}):\n{out}")

    def _wait_ready(self, logfile: Path, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise PgUnavailable(
                    f"postgres exited with {self.proc.returncode} while starting:\n"
                    + logfile.read_text(errors="replace")
                )
            r = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise PgUnavailable(
            f"postgres did not accept connections within {timeout:.0f} s:\n"
            + logfile.read_text(errors="replace")
        )

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL if it hangs; remove the folder. Safe to repeat."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- databases ----------------------------------------------------------------------------

    def url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        r = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                dbname,
                "-c",
                sql,
            ],
            capture_output=True,
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {r.stderr.decode(errors='replace')}")
        return r.stdout.decode()

    def migrate_template(self, migrate: Callable[[str], None]) -> None:
        """Run ``migrate(url)`` once on the template database (Alembic upgrade to head)."""
        migrate(self.url(TEMPLATE_DB))

    def create_database(self) -> str:
        """A fresh database cloned from the migrated template; returns its name."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
        return name

    def drop_database(self, name: str) -> None:
        if not re.fullmatch(r"t_[0-9a-f]{16}", name):
            raise ValueError(f"refusing to drop {name!r}: not a test database")
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(RuntimeError):
            self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
