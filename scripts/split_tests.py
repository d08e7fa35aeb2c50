"""Split the test files for ``make test``'s two pytest processes (scripts/test.sh).

``root``: the integration and end-to-end modules that run in the root network namespace — they
bind loopback ports, Janus and switch UDP blocks, so they run one after another in one process.
``side``: the modules whose nodes live in network namespaces of their own (``netns.lab`` /
``netns.vnet``) and the unit tests, which share nothing with the first group and run beside it.
Prints one path per line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
USES_NAMESPACES = re.compile(r"\bnetns\.(vnet|lab)\b")


def split() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"root": [], "side": [str(TESTS / "unit")]}
    for kind in ("e2e", "integration"):
        for path in sorted((TESTS / kind).glob("test_*.py")):
            text = path.read_text(encoding="utf-8")
            out["side" if USES_NAMESPACES.search(text) else "root"].append(str(path))
    return out


if __name__ == "__main__":
    print("\n".join(split()[sys.argv[1]]))
