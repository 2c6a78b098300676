"""A test backend whose worker skips the --repeat check and so reports no determinism at all.

Its outputs move by one ulp per call (as test-lies-deterministic's); its plugin raises the
repeat count the worker needs before it repeats a call (attnbench.verify.determinism.MIN_REPEATS)
in its own worker, so that no `determinism` entry is reported: no claim, nothing to overrule.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, hookimpl
from attnbench.verify import determinism

determinism.MIN_REPEATS = 10**9


class SkipsRepeat(NumpyNaive):
    name = "test-skips-repeat"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32",))

    def prepare(self, inputs):
        wide = dataclasses.replace(inputs, **{n: getattr(inputs, n).astype(np.float64)
                                              for n in ("q", "k", "v")})
        run, dtype, calls = super().prepare(wide), inputs.q.dtype, itertools.count()

        def call():
            out = run().astype(dtype)
            flat = out.reshape(-1)
            i = next(calls) % flat.size
            flat[i] = np.nextafter(flat[i], np.inf, dtype=out.dtype)
            return out

        return call


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [SkipsRepeat()]
