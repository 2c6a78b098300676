"""Test backends wrong where a fixed sampler would not look, or in the wrong dtype."""

from __future__ import annotations

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, hookimpl

OLD_LIMIT, OLD_ROWS = 2**24, 64  # the row sampler attnbench used to have, with --seed 0


def predictable_rows(case) -> np.ndarray:
    """The rows the old sampler compared: first, last and 62 drawn from seed + seq_q."""
    n = case.seq_q
    if case.batch * case.heads_q * n * case.seq_kv <= OLD_LIMIT or n <= OLD_ROWS:
        return np.arange(n)
    picks = np.random.default_rng(n).choice(np.arange(1, n - 1), OLD_ROWS - 2, replace=False)
    return np.unique(np.concatenate([[0, n - 1], picks]))


class RightOnOldRows(NumpyNaive):
    name = "test-right-on-old-rows"
    description = "test plugin: right on the rows the old sampler compares, zeros elsewhere"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        keep = predictable_rows(inputs.case)

        def call():
            full = run()
            out = np.zeros_like(full)
            out[:, :, keep] = full[:, :, keep]
            return out

        return call


class NaNInOneRow(NumpyNaive):
    name = "test-nan-in-row-1"
    description = "test plugin: right everywhere except one NaN in query row 1"

    def prepare(self, inputs):
        run = super().prepare(inputs)

        def call():
            out = run()
            out[0, 0, 1, 0] = np.nan
            return out

        return call


class Float64Out(NumpyNaive):
    name = "test-float64-out"
    description = "test plugin: computes a float32 case in float64 and returns float64"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32",))

    def prepare(self, inputs):
        wide = type(inputs)(inputs.case, *(x.astype(np.float64) for x in
                                           (inputs.q, inputs.k, inputs.v)), inputs.scale)
        return super().prepare(wide)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [RightOnOldRows(), NaNInOneRow(), Float64Out()]
