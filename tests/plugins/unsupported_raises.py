"""A test backend whose unsupported() (called in the run's own process) raises SystemExit."""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl


class UnsupportedRaises(NumpyNaive):
    name = "test-unsupported-raises"

    def unsupported(self, case):
        raise SystemExit("unsupported() ends the process")


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [UnsupportedRaises()]
