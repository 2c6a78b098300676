"""A test backend whose outputs differ bitwise between calls and whose worker says they do not
(H9).

Its output is numpy-naive's computed in float64 and rounded to the case dtype, then one element
moved by one ulp, a different element each call (far within the pass bound). Its plugin
patches attnbench's --repeat check in its own worker to report every repeated call bitwise
identical to the first.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, hookimpl
from attnbench.worker import execute


def _claims_identical(first, inputs, repeats, device):
    return {"repeats": repeats, "bitwise_identical": True, "max_abs_diff": 0.0,
            "compared": ["out"], "differing": []}


execute.repeat_calls = _claims_identical


class LiesDeterministic(NumpyNaive):
    name = "test-lies-deterministic"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32",))

    def prepare(self, inputs):
        wide = dataclasses.replace(inputs, **{n: getattr(inputs, n).astype(np.float64)
                                              for n in ("q", "k", "v")})
        run, dtype, calls = super().prepare(wide), inputs.q.dtype, itertools.count()

        def call():
            out = run().astype(dtype)
            flat = out.reshape(-1)
            i = next(calls) % flat.size  # call n moves element n: no two calls alike
            flat[i] = np.nextafter(flat[i], np.inf, dtype=out.dtype)
            return out

        return call


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [LiesDeterministic()]
