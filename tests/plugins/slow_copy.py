"""A test backend: numpy-naive made slower (ATTNBENCH_TEST_SLEEP_MS) or wrong (…_WRONG)."""

from __future__ import annotations

import os
import time

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl


class SlowCopy(NumpyNaive):
    name = "slow-copy"
    description = "numpy-naive plus a sleep per call, or a 5 % error, set through the environment"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        sleep_s = float(os.environ.get("ATTNBENCH_TEST_SLEEP_MS", "0")) / 1000
        wrong = os.environ.get("ATTNBENCH_TEST_WRONG") == "1"

        def call():
            out = run()
            if sleep_s:
                time.sleep(sleep_s)
            return out * 1.05 if wrong else out

        return call


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [SlowCopy()]
