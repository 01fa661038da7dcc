"""How many rounds the leak loops of the integration suite run.

In full on the machine's containerd; a quarter (at least 10) where
``CONTAINERD_SHORT_LOOPS=1``, which ``scripts/test`` sets for the other
versions: they run side by side with it, and their leak loops add coverage
of the version, not of the count (the 1,000-lifecycle soak has its own
``CONTAINERD_SOAK_CYCLES``).
"""

from __future__ import annotations

import os


def cycles(full: int) -> int:
    """``full``, or a quarter of it (at least 10) in a short run."""
    if os.environ.get("CONTAINERD_SHORT_LOOPS") == "1":
        return max(10, full // 4)
    return full
