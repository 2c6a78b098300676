"""Fault injection for tests, through Python's start-up hook (tests/faults on PYTHONPATH).

With ATTNBENCH_TEST_FAULTS set, every attnbench process started (the run's own, its workers)
has its same-dtype baseline and its float32 CPU matmul roof raise, as they would where a device
runs out of memory or lacks a dtype. With ATTNBENCH_TEST_DISK_FULL_AFTER=N, records.jsonl's
descriptor points at /dev/full after N records, as a disk filling up mid-run. Only attnbench's
own handling of these is under test."""

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

if os.environ.get("ATTNBENCH_TEST_DISK_FULL_AFTER"):  # the disk fills after N records
    from attnbench import results_writer

    _after = int(os.environ["ATTNBENCH_TEST_DISK_FULL_AFTER"])
    _append = results_writer.RunWriter.append

    def _append_then_fill(self, record, _seen=[0]):  # noqa: B006 (a counter for the process)
        _append(self, record)
        _seen[0] += 1
        if _seen[0] == _after:
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, self._fh.fileno())
            os.close(full)

    results_writer.RunWriter.append = _append_then_fill
