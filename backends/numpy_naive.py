"""numpy-naive: materialises the full score matrix in NumPy (float64, float32, float16)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from attnbench import Backend, Capabilities, Inputs, hookimpl


class NumpyNaive(Backend):
    name = "numpy-naive"
    framework = "numpy"
    description = "NumPy: q kᵀ, mask, softmax and p v, with the whole score matrix in memory"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float64", "float32", "float16"))

    def prepare(self, inputs: Inputs) -> Callable[[], np.ndarray]:
        case, q = inputs.case, inputs.q
        group = case.heads_q // case.heads_kv
        k = np.repeat(inputs.k, group, axis=1) if group > 1 else inputs.k
        v = np.repeat(inputs.v, group, axis=1) if group > 1 else inputs.v
        kt = np.ascontiguousarray(np.swapaxes(k, -1, -2))
        scale = q.dtype.type(inputs.scale)
        hidden = ~inputs.visible() if case.mask != "none" else None
        empty = inputs.empty_rows()

        def run() -> np.ndarray:
            s = np.matmul(q, kt)
            s *= scale
            if hidden is not None:
                np.copyto(s, -np.inf, where=hidden)
            m = s.max(axis=-1, keepdims=True)
            if empty is not None:
                m[..., empty[:, 0], :] = 0
            np.subtract(s, m, out=s)
            np.exp(s, out=s)
            s /= np.maximum(s.sum(axis=-1, keepdims=True), np.finfo(s.dtype).tiny)
            return np.matmul(s, v)

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [NumpyNaive()]
