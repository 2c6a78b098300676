"""A test backend: numpy-naive that sleeps 0.6 s before each case (3 s on seq_kv == 48, 60 s on
seq_kv == 128), so a run lasts long enough to be interrupted, or to lose a node, mid-case."""

from __future__ import annotations

import time

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

SLEEP_S = 0.6
SLEEPS_S = {48: 3.0, 128: 60.0}


class Sleeps(NumpyNaive):
    name = "test-sleeps"

    def prepare(self, inputs):
        time.sleep(SLEEPS_S.get(inputs.case.seq_kv, SLEEP_S))
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Sleeps()]
