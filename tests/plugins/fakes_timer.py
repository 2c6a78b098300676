"""A test backend with correct outputs whose plugin fakes the timer in its worker.

On import it wraps the CPU timer the worker uses so that every sample reads a millionth of what
it took: the record would claim a throughput no CPU can reach.
"""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl
from attnbench.measure.timing import Timing, summarize
from attnbench.worker import steps

_real = steps.time_cpu


def _fast(*args, **kwargs) -> Timing:
    t = _real(*args, **kwargs)
    t.samples_ms = [s * 1e-6 for s in t.samples_ms]
    t.stats = {**t.stats, **summarize(t.samples_ms)}
    return t


steps.time_cpu = _fast


class FakesTimer(NumpyNaive):
    name = "test-fakes-timer"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [FakesTimer()]
