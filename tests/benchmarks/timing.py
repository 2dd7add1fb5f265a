"""What the in-process benchmarks share: the best time of a few rounds."""

from __future__ import annotations

import time


def best(fn, repeat: int = 7, number: int = 1) -> float:
    """Best mean seconds per call over ``repeat`` rounds of ``number`` calls (the fastest round is
    the one least disturbed by the rest of the machine)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return min(times)
