"""The one timing rule every bench here follows.

Contenders take turns within each round, so a burst of load on a shared machine slows every
side alike instead of skewing the ratio; each one's fastest run is the one least disturbed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping


def fastest_runs(contenders: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Seconds of each contender's fastest run over ``rounds`` rounds of taking turns."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, run in contenders.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best
