"""A test backend that asks for 1 PB of scratch memory on the case with seq_kv == 64."""

from __future__ import annotations

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64


class Hog(NumpyNaive):
    name = "test-hog"

    def prepare(self, inputs):
        if inputs.case.seq_kv == BAD_SEQ:
            scratch = np.empty(10**15, dtype=np.uint8)  # NumPy raises MemoryError
            scratch[:: 1 << 20] = 0
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Hog()]
