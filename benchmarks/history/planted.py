"""A backend for the history study (benchmarks/history/study.sh): numpy-naive under another
name, slowed by ATTNBENCH_PLANTED_SLOWDOWN (e.g. 0.15 for 15 %) when that is set.

The slowdown spins for that fraction of the call's own measured time after the call, so the
output stays right and only the time changes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Inputs, hookimpl


class Planted(NumpyNaive):
    name = "planted"
    description = "history study: numpy-naive, slowed by $ATTNBENCH_PLANTED_SLOWDOWN"

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        call = super().prepare(inputs)
        extra = float(os.environ.get("ATTNBENCH_PLANTED_SLOWDOWN") or 0.0)
        if extra <= 0:
            return call

        def slowed() -> Any:
            t0 = time.perf_counter()
            out = call()
            until = time.perf_counter() + extra * (time.perf_counter() - t0)
            while time.perf_counter() < until:
                pass
            return out

        return slowed


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Planted()]
