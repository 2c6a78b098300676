"""The fastest of repeated calls of a function: how a roof (a rate the hardware reaches) is read."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def fastest_call_s(call: Callable[[], Any], seconds: float) -> float:
    """One untimed call (page faults, lazy set-up), then the fastest of at least 3 timed calls
    made for about `seconds`, in seconds."""
    call()
    best, calls, start = float("inf"), 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return best
