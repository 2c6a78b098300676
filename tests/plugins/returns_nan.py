"""A test backend that returns NaN everywhere on the case with seq_kv == 64."""

from __future__ import annotations

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64


class ReturnsNaN(NumpyNaive):
    name = "test-returns-nan"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        if inputs.case.seq_kv != BAD_SEQ:
            return run
        return lambda: np.full_like(run(), np.nan)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ReturnsNaN()]
