"""Test backends whose methods called in the parent raise or never return.

test-unsupported-raises: unsupported() raises on seq_kv == 64.
test-availability-raises: availability() always raises.
test-unsupported-sleeps: unsupported() never returns on seq_kv == 64.
test-availability-sleeps: availability() never returns.
"""

from __future__ import annotations

import time

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64


class UnsupportedRaises(NumpyNaive):
    name = "test-unsupported-raises"

    def unsupported(self, case):
        if case.seq_kv == BAD_SEQ:
            raise ValueError("unsupported() fails on purpose")
        return super().unsupported(case)


class AvailabilityRaises(NumpyNaive):
    name = "test-availability-raises"

    def availability(self):
        raise KeyError("availability() fails on purpose")


class UnsupportedSleeps(NumpyNaive):
    name = "test-unsupported-sleeps"

    def unsupported(self, case):
        if case.seq_kv == BAD_SEQ:
            time.sleep(3600)
        return super().unsupported(case)


class AvailabilitySleeps(NumpyNaive):
    name = "test-availability-sleeps"

    def availability(self):
        time.sleep(3600)
        return []


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [UnsupportedRaises(), AvailabilityRaises(), UnsupportedSleeps(), AvailabilitySleeps()]
