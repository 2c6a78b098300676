"""A test backend that computes only when a checking function of attnbench is on the stack.

It looks for the worker's first-call, repeat and reuse checks (and anything named like a
verdict) among its callers; elsewhere (the timed calls) it returns the mean of v, ignoring q·k.
"""

from __future__ import annotations

import inspect

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

CHECKING = ("first_call", "repeat_check", "flag_reused", "judge", "compare", "verdict",
            "agree", "check")


class ComputesWhenChecked(NumpyNaive):
    name = "test-computes-when-checked"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        v = np.asarray(inputs.v)

        def call():
            names = [f.function for f in inspect.stack(0)]
            if any(c in n for n in names for c in CHECKING):
                return run()
            mean = v.mean(axis=2, keepdims=True).astype(v.dtype)
            group = inputs.case.heads_q // inputs.case.heads_kv
            return np.repeat(np.broadcast_to(mean, v.shape[:2] + (inputs.case.seq_q,
                                                                  v.shape[3])), group, axis=1)

        return call


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ComputesWhenChecked()]
