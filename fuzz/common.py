"""Shared driver of the GB/T 28181 fuzz harnesses (atheris / libFuzzer, or a seeded fallback).

Each harness module defines ``target(data: bytes) -> None`` (raising only its parser's declared
error types on bad input) and calls :func:`main` with its seed directory. ``main`` runs atheris
when it is installed (``pip install -e '.[fuzz]'``; arguments are libFuzzer's, e.g.
``-runs=1000000 -timeout=5``) and otherwise a seeded mutation loop over the same seeds
(``--runs N --seed S``), so the harnesses also run where atheris cannot be installed.

A crash is any exception other than the allowed ones, or one input taking longer than the
timeout (a hang); the input is written to ``crash-<sha1>`` for a regression test.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
SEEDS = HERE / "seeds"


def instrumented():  # type: ignore[no-untyped-def]
    """Import the code under test inside this (atheris coverage instrumentation if present;
    none for ``--fallback``, which does not use coverage)."""
    import contextlib

    if "--fallback" in sys.argv:
        return contextlib.nullcontext()
    try:
        import atheris
    except ImportError:
        return contextlib.nullcontext()
    return atheris.instrument_imports()


def seeds(name: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((SEEDS / name).iterdir()) if p.is_file()]


def guarded(target: Callable[[bytes], None], allowed: tuple[type[BaseException], ...]):  # type: ignore[no-untyped-def]
    def run(data: bytes) -> None:
        with contextlib.suppress(allowed):
            target(data)

    return run


def _mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(8)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:  # flip a bit
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # random byte
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:  # insert bytes
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3 and b:  # delete a run
            del b[pos : pos + rng.randint(1, 32)]
        elif op == 4 and b:  # duplicate a run
            i = rng.randrange(len(b))
            b[pos:pos] = b[i : i + rng.randint(1, 64)]
        elif op == 5:  # splice with another seed
            other = rng.choice(pool)
            i = rng.randrange(len(other) + 1)
            b[pos:] = other[i:]
        elif op == 6 and b:  # interesting values
            i = rng.randrange(len(b))
            b[i : i + 2] = rng.choice([b"\x00\x00", b"\xff\xff", b"\x7f\xff", b"\x80\x00", b"\r\n"])
        elif op == 7:  # truncate
            del b[pos:]
    return bytes(b)


def fallback(run: Callable[[bytes], None], pool: list[bytes], runs: int, seed: int) -> int:
    """Seeded mutation fuzzing; returns the number of crashes (0 means none)."""
    rng = random.Random(seed)
    corpus = list(pool)
    start = time.monotonic()
    for n in range(runs):
        data = _mutate(rng, rng.choice(corpus), pool)
        t0 = time.monotonic()
        try:
            run(data)
        except Exception:
            name = f"crash-{hashlib.sha1(data).hexdigest()}"
            Path(name).write_bytes(data)
            print(f"CRASH after {n} inputs, input saved to {name}", file=sys.stderr)
            raise
        if time.monotonic() - t0 > 5:
            Path(f"timeout-{hashlib.sha1(data).hexdigest()}").write_bytes(data)
            print(f"HANG (>5 s) after {n} inputs", file=sys.stderr)
            return 1
        if rng.random() < 0.001 and len(corpus) < 5000:
            corpus.append(data)  # keep some mutants as new starting points
    print(f"done: {runs} inputs in {time.monotonic() - start:.1f} s, no crash", file=sys.stderr)
    return 0


def main(name: str, run: Callable[[bytes], None]) -> None:
    args = sys.argv[1:]
    pool = seeds(name)
    for s in pool:  # the seeds themselves must pass
        run(s)
    if "--fallback" in args or not _have_atheris():
        runs = int(_opt(args, "--runs", "100000"))
        seed = int(_opt(args, "--seed", "1"))
        sys.exit(fallback(run, pool, runs, seed))
    import atheris

    atheris.Setup([sys.argv[0], *args], run)
    atheris.Fuzz()


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _opt(args: list[str], name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args else default
