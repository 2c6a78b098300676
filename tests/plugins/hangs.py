"""A test backend whose call never returns on the case with seq_kv == 64."""

from __future__ import annotations

import time

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64


class Hangs(NumpyNaive):
    name = "test-hangs"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        if inputs.case.seq_kv != BAD_SEQ:
            return run

        def forever():
            while True:
                time.sleep(3600)

        return forever


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Hangs()]
