"""A deliberately wrong backend for tests: it forgets the softmax scale (uses 1)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongScale(Backend):
    name = "wrong-scale"
    framework = "numpy"
    description = "test plugin: softmax(q kᵀ + mask) v, the scale left out"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float64", "float32"))

    def prepare(self, inputs: Inputs) -> Callable[[], np.ndarray]:
        group = inputs.case.heads_q // inputs.case.heads_kv
        k = np.repeat(inputs.k, group, axis=1)
        v = np.repeat(inputs.v, group, axis=1)
        visible = inputs.visible()

        def run() -> np.ndarray:
            s = np.where(visible, inputs.q @ np.swapaxes(k, -1, -2), -np.inf)  # no * scale
            m = s.max(axis=-1, keepdims=True)
            p = np.exp(s - np.where(np.isfinite(m), m, 0))
            den = p.sum(axis=-1, keepdims=True)
            return (p / np.where(den == 0, 1, den)) @ v

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongScale()]
