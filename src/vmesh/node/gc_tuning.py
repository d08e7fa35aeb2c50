"""How the node process tunes Python's cyclic garbage collector once it has started.

A started node holds a few hundred thousand objects that live as long as the process: imported
modules, the configuration, caches loaded at start-up. With the collector's defaults every full
(generation 2) collection walks all of them again — ≈ 0.2 s per collection with ≈ 190,000
tracked objects, 12–15 % of the CPU of a GB/T 28181 REGISTER storm (docs/BENCHMARKS.md, runs D
and E). :func:`settle_gc` is called once start-up is done: it collects what start-up left over,
then ``gc.freeze()`` moves every surviving object to the permanent generation, which no later
collection walks (they are still freed by reference counting when dropped; only cycles among them
would be kept, and start-up objects are not expected to become garbage). It also raises the
young-generation threshold: a daemon allocating thousands of short-lived messages a second
collected every 700 allocations promotes many still-referenced ones into the older generations,
whose collections are what costs.

Public: ``settle_gc``, ``GC_THRESHOLDS``.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

# (generation 0, 1, 2). Python's defaults are (700, 10, 10).
GC_THRESHOLDS = (10_000, 10, 10)


def settle_gc(thresholds: tuple[int, int, int] | None = GC_THRESHOLDS) -> int:
    """Collect, freeze what survives start-up, set ``thresholds`` (None: keep the current ones).

    Returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    if thresholds is not None:
        gc.set_threshold(*thresholds)
    frozen = gc.get_freeze_count()
    log.info("gc frozen=%s thresholds=%s", frozen, gc.get_threshold())
    return frozen
