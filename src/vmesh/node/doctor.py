"""``vmesh doctor``: are the programs a node runs installed, and new enough?

For each ``Requirement`` the doctor finds the program (on PATH, or in the places Debian installs
it), runs it with its version flag, parses the version and compares it with the minimum. Each
``Finding`` says ok / missing / too old / version unknown and, when something is wrong, which
Debian package to install. Required programs (Janus ≥ 1.1.2, nats-server ≥ 2.9, ffmpeg ≥ 5) decide
the exit status; Chromium (browser tests, the demo's viewers) and PostgreSQL (the second test
database, production storage) are reported but optional.

``evaluate`` and ``parse_version`` are pure (unit-tested with real version texts); ``check`` and
``check_all`` run the programs.

Public: ``Requirement``, ``Finding``, ``REQUIREMENTS``, ``parse_version``, ``evaluate``, ``check``,
``check_all``, ``render_text``, ``exit_status``.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger(__name__)

Version = tuple[int, ...]


class Verdict(StrEnum):
    OK = "ok"
    MISSING = "missing"
    TOO_OLD = "too old"
    UNKNOWN = "version unknown"
    BROKEN = "does not run"


@dataclass(frozen=True)
class Requirement:
    name: str
    programs: tuple[str, ...]
    version_args: tuple[str, ...]
    pattern: str
    minimum: Version | None
    required: bool
    package: str
    purpose: str
    extra_globs: tuple[str, ...] = field(default=())


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        name="janus",
        programs=("janus",),
        version_args=("--version",),
        pattern=r"Janus version:\s*\d+\s*\((\d+(?:\.\d+)+)\)",
        minimum=(1, 1, 2),
        required=True,
        package="janus",
        purpose="WebRTC edge (browsers' video)",
    ),
    Requirement(
        name="nats-server",
        programs=("nats-server",),
        version_args=("--version",),
        pattern=r"nats-server:?\s*v?(\d+(?:\.\d+)+)",
        minimum=(2, 9),
        required=True,
        package="nats-server",
        purpose="federation bus between nodes",
        extra_globs=("/usr/sbin/nats-server",),
    ),
    Requirement(
        name="ffmpeg",
        programs=("ffmpeg",),
        version_args=("-version",),
        pattern=r"ffmpeg version n?(\d+(?:\.\d+)*)",
        minimum=(5,),
        required=True,
        package="ffmpeg",
        purpose="camera ingest (RTSP, synthetic cameras)",
    ),
    Requirement(
        name="chromium",
        programs=("chromium", "chromium-browser"),
        version_args=("--version",),
        pattern=r"Chromium\s+(\d+(?:\.\d+)+)",
        minimum=None,
        required=False,
        package="chromium",
        purpose="browser tests and the demo's viewers",
    ),
    Requirement(
        name="postgresql",
        programs=("postgres",),
        version_args=("--version",),
        pattern=r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)",
        minimum=(13,),
        required=False,
        package="postgresql",
        purpose="PostgreSQL storage and the second test database",
        extra_globs=("/usr/lib/postgresql/*/bin/postgres",),
    ),
)


@dataclass(frozen=True)
class Finding:
    name: str
    verdict: Verdict
    required: bool
    path: str | None = None
    version: Version | None = None
    minimum: Version | None = None
    package: str = ""
    purpose: str = ""
    detail: str = ""

    @property
    def problem(self) -> bool:
        return self.verdict in (Verdict.MISSING, Verdict.TOO_OLD, Verdict.BROKEN)

    @property
    def version_text(self) -> str | None:
        return None if self.version is None else _dotted(self.version)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "required": self.required,
            "path": self.path,
            "version": self.version_text,
            "minimum": None if self.minimum is None else _dotted(self.minimum),
            "package": self.package,
            "purpose": self.purpose,
            "detail": self.detail,
        }


def _dotted(v: Version) -> str:
    return ".".join(str(p) for p in v)


def parse_version(text: str, pattern: str) -> Version | None:
    """The first version ``pattern`` (one group of dotted numbers) finds in ``text``."""
    m = re.search(pattern, text)
    if not m:
        return None
    return tuple(int(p) for p in m.group(1).split("."))


def evaluate(req: Requirement, path: str | None, output: str | None) -> Finding:
    """The verdict for ``req`` given where it was found and what its version flag printed.

    ``output`` is ``None`` when the program could not be run.
    """
    base = {
        "name": req.name,
        "required": req.required,
        "path": path,
        "minimum": req.minimum,
        "package": req.package,
        "purpose": req.purpose,
    }
    install = f"install: apt-get install {req.package}"
    if path is None:
        return Finding(verdict=Verdict.MISSING, detail=f"not found; {install}", **base)  # type: ignore[arg-type]
    if output is None:
        return Finding(verdict=Verdict.BROKEN, detail=f"{path} does not run; {install}", **base)  # type: ignore[arg-type]
    version = parse_version(output, req.pattern)
    if version is None:
        first = output.strip().splitlines()[0][:120] if output.strip() else "no output"
        return Finding(
            verdict=Verdict.UNKNOWN,
            detail=f"cannot read the version from {first!r}",
            **base,  # type: ignore[arg-type]
        )
    if req.minimum is not None and version < req.minimum:
        return Finding(
            verdict=Verdict.TOO_OLD,
            version=version,
            detail=f"{_dotted(version)} is older than {_dotted(req.minimum)}; "
            f"upgrade: apt-get install {req.package} (Debian 13 or backports ship newer ones)",
            **base,  # type: ignore[arg-type]
        )
    return Finding(verdict=Verdict.OK, version=version, **base)  # type: ignore[arg-type]


def _locate(req: Requirement, path_env: str | None) -> str | None:
    for prog in req.programs:
        found = shutil.which(prog, path=path_env)
        if found:
            return found
    for pattern in req.extra_globs:
        hits = sorted(glob.glob(pattern), key=_version_key, reverse=True)
        for hit in hits:
            if os.access(hit, os.X_OK):
                return hit
    return None


def _version_key(path: str) -> Version:
    return tuple(int(x) for x in re.findall(r"\d+", path)) or (0,)


def check(req: Requirement, *, path_env: str | None = None, timeout: float = 20.0) -> Finding:
    """Find and run ``req``'s program; ``path_env`` replaces $PATH for the search."""
    path = _locate(req, path_env)
    if path is None:
        return evaluate(req, None, None)
    try:
        proc = subprocess.run(
            [path, *req.version_args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("doctor: %s %s failed: %s", path, " ".join(req.version_args), e)
        return evaluate(req, path, None)
    return evaluate(req, path, proc.stdout + "\n" + proc.stderr)


def check_all(
    requirements: Sequence[Requirement] = REQUIREMENTS, *, path_env: str | None = None
) -> list[Finding]:
    return [check(r, path_env=path_env) for r in requirements]


def exit_status(findings: Sequence[Finding]) -> int:
    """1 if a required program is missing, too old or broken; else 0."""
    return 1 if any(f.required and f.problem for f in findings) else 0


def render_text(findings: Sequence[Finding]) -> str:
    """A table (program, verdict, version, minimum, required/optional, path) and a conclusion."""
    rows = [("program", "status", "version", "needs", "", "path")]
    for f in findings:
        rows.append(
            (
                f.name,
                f.verdict.value,
                f.version_text or "-",
                f"≥ {_dotted(f.minimum)}" if f.minimum else "-",
                "required" if f.required else "optional",
                f.path or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i and findings[i - 1].detail:
            lines.append(" " * (widths[0] + 2) + "→ " + findings[i - 1].detail)
    missing = [f for f in findings if f.required and f.problem]
    lines.append("")
    if missing:
        pkgs = " ".join(sorted({f.package for f in missing}))
        names = ", ".join(f.name for f in missing)
        lines.append(f"not ready: {names}. Install: apt-get install {pkgs}")
    else:
        lines.append("ready: every required program is installed and new enough")
    return "\n".join(lines)
