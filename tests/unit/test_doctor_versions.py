"""``vmesh doctor``'s version reading and verdicts, from the real version texts of the tools."""

from __future__ import annotations

import pytest

from vmesh.node.doctor import REQUIREMENTS, Finding, Verdict, evaluate, exit_status, render_text

pytestmark = pytest.mark.unit

REQ = {r.name: r for r in REQUIREMENTS}

JANUS_112 = (
    "Janus version: 1102 (1.1.2)\nJanus commit: not-a-git-repo\n"
    "Compiled on:  Thu Jan 19 08:09:02 UTC 2023\n\nUnknown option --version\n"
)
JANUS_132 = "Janus version: 1302 (1.3.2)\nJanus commit: 8e7f5a1\n"
JANUS_102 = "Janus version: 1002 (1.0.2)\n"
FFMPEG_DEB12 = "ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 the FFmpeg developers\n"
FFMPEG_DEB13 = "ffmpeg version 7.1.1-1+b1 Copyright (c) 2000-2025 the FFmpeg developers\n"
FFMPEG_OLD = "ffmpeg version 4.3.6-0+deb11u1 Copyright (c) 2000-2023 the FFmpeg developers\n"
FFMPEG_GIT = "ffmpeg version N-113348-g1234abcd Copyright (c) 2000-2024 the FFmpeg developers\n"
NATS_2910 = "nats-server: v2.9.10\n"
NATS_28 = "nats-server: v2.8.4\n"
CHROMIUM = (
    "/usr/bin/chromium: 9: [: 25276510208: unexpected operator\n"
    "Chromium 156.0.8078.108 built on Debian GNU/Linux 12 (bookworm)\n"
)
POSTGRES = "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"


@pytest.mark.parametrize(
    ("name", "text", "verdict", "version"),
    [
        ("janus", JANUS_112, Verdict.OK, (1, 1, 2)),
        ("janus", JANUS_132, Verdict.OK, (1, 3, 2)),
        ("janus", JANUS_102, Verdict.TOO_OLD, (1, 0, 2)),
        ("ffmpeg", FFMPEG_DEB12, Verdict.OK, (5, 1, 9)),
        ("ffmpeg", FFMPEG_DEB13, Verdict.OK, (7, 1, 1)),
        ("ffmpeg", FFMPEG_OLD, Verdict.TOO_OLD, (4, 3, 6)),
        ("ffmpeg", FFMPEG_GIT, Verdict.UNKNOWN, None),
        ("nats-server", NATS_2910, Verdict.OK, (2, 9, 10)),
        ("nats-server", NATS_28, Verdict.TOO_OLD, (2, 8, 4)),
        ("chromium", CHROMIUM, Verdict.OK, (156, 0, 8078, 108)),
        ("postgresql", POSTGRES, Verdict.OK, (15, 18)),
    ],
)
def test_version_texts(
    name: str, text: str, verdict: Verdict, version: tuple[int, ...] | None
) -> None:
    f = evaluate(REQ[name], f"/usr/bin/{name}", text)
    assert f.verdict is verdict
    assert f.version == version


def test_too_old_names_the_minimum_and_the_package() -> None:
    f = evaluate(REQ["janus"], "/usr/bin/janus", JANUS_102)
    assert "1.0.2 is older than 1.1.2" in f.detail
    assert "apt-get install janus" in f.detail


def test_missing_required_fails_missing_optional_does_not() -> None:
    ok = [
        evaluate(REQ[n], f"/usr/bin/{n}", t)
        for n, t in (("janus", JANUS_112), ("ffmpeg", FFMPEG_DEB12), ("nats-server", NATS_2910))
    ]
    no_chromium = evaluate(REQ["chromium"], None, None)
    assert no_chromium.verdict is Verdict.MISSING
    assert exit_status([*ok, no_chromium]) == 0
    no_nats = evaluate(REQ["nats-server"], None, None)
    assert no_nats.detail == "not found; install: apt-get install nats-server"
    findings: list[Finding] = [ok[0], ok[1], no_nats, no_chromium]
    assert exit_status(findings) == 1
    text = render_text(findings)
    assert "not ready: nats-server. Install: apt-get install nats-server" in text


def test_program_that_does_not_run_is_a_problem() -> None:
    f = evaluate(REQ["ffmpeg"], "/usr/bin/ffmpeg", None)
    assert f.verdict is Verdict.BROKEN and f.problem
    assert exit_status([f]) == 1


def test_unknown_version_is_reported_but_not_fatal() -> None:
    f = evaluate(REQ["ffmpeg"], "/usr/local/bin/ffmpeg", FFMPEG_GIT)
    assert "cannot read the version" in f.detail and "N-113348" in f.detail
    assert exit_status([f]) == 0
