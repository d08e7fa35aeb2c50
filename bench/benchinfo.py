"""What every benchmark report says about the machine it ran on (CPUs, platform, Python, load
average at the time of the call), so results in docs/BENCHMARKS.md can be compared."""

from __future__ import annotations

import os
import platform
from typing import Any


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
