"""Fault injection for tests, through Python's start-up hook: on PYTHONPATH with
ATTNBENCH_TEST_FAULTS set, every attnbench process started (the run's own, its workers) has
its same-dtype baseline and its float32 CPU matmul roof raise, as they would where a device
runs out of memory or lacks a dtype. Only attnbench's fallbacks are under test."""

from __future__ import annotations

import os

if os.environ.get("ATTNBENCH_TEST_FAULTS"):
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
