"""A test backend right on its first call and wrong (zeros) on every later call: the calls timed."""

from __future__ import annotations

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl


class GarbageWhenTimed(NumpyNaive):
    name = "test-garbage-when-timed"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        calls = [0]

        def call():
            calls[0] += 1
            out = run()
            return out if calls[0] == 1 else np.zeros_like(out)

        return call


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [GarbageWhenTimed()]
