"""The node's garbage-collector set-up once started (``vmesh.node.gc_tuning``): what start-up
built is frozen — later collections no longer walk it — and the young generation's threshold is
the node's. Run in a child process: freezing is for the life of a process, not for pytest's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vmesh.node.gc_tuning import GC_THRESHOLDS

pytestmark = pytest.mark.unit

_CHILD = """
import gc, json
import vmesh.config  # a module graph, as start-up builds
from vmesh.node.gc_tuning import settle_gc
before = len(gc.get_objects())
frozen = settle_gc()
keep = [[i] for i in range(1000)]  # made after start-up: the collector still sees these
print(json.dumps({"before": before, "frozen": frozen, "walked": len(gc.get_objects()),
                  "thresholds": gc.get_threshold()}))
"""


def test_start_up_objects_are_frozen_and_later_ones_still_collected() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], check=True, capture_output=True, text=True
    ).stdout
    got = json.loads(out)
    assert got["frozen"] > 0.9 * got["before"]  # what start-up made is no longer walked…
    assert 1000 <= got["walked"] < 0.1 * got["before"]  # …what came after still is
    assert tuple(got["thresholds"]) == GC_THRESHOLDS
