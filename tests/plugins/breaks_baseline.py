"""Fault injection for tests: in every process that loads it, the same-dtype baseline and the
float32 matmul roof raise, as they would where a device runs out of memory or lacks a dtype.
Its backend is plain numpy-naive, so only the harness's fallbacks are under test."""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl
from attnbench.measure import roof
from attnbench.verify import baseline


def _broken_baseline(*args, **kwargs):
    raise MemoryError("injected: the baseline cannot allocate")


def _broken_roof(dtype, seconds, _real=roof._cpu_roof):
    if dtype == "float32":
        raise RuntimeError("injected: no float32 matmul")
    return _real(dtype, seconds)


baseline._block_rows = _broken_baseline
roof._cpu_roof = _broken_roof


class NoBaseline(NumpyNaive):
    name = "test-no-baseline"
    description = "test plugin: numpy-naive, in a process whose baseline and roof raise"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [NoBaseline()]
