"""A deliberately wrong backend for tests: the softcap applied after ALiBi and the bias,
cap·tanh((s + terms)/cap) instead of cap·tanh(s/cap) + terms (right without terms)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongSoftcapOrder(Backend):
    name = "wrong-softcap-order"
    framework = "numpy"
    description = "test plugin: numpy-naive, the softcap taken over the ALiBi and bias terms too"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("softcap", "alibi", "bias", "window", "lengths"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        case = inputs.case
        if case.softcap is None or not (case.alibi or case.bias != "none"):
            return NumpyNaive().prepare(inputs)
        group = case.heads_q // case.heads_kv
        k, v = (np.repeat(x, group, axis=1) for x in (inputs.k, inputs.v))
        mask = inputs.additive_mask()
        seen = np.isfinite(mask)
        terms = np.where(seen, mask, 0).astype(inputs.q.dtype)
        cap = inputs.q.dtype.type(case.softcap)

        def run() -> np.ndarray:
            s = np.matmul(inputs.q, np.swapaxes(k, -1, -2)) * inputs.q.dtype.type(inputs.scale)
            s = np.where(seen, cap * np.tanh((s + terms) / cap), -np.inf)
            top = s.max(axis=-1, keepdims=True)
            p = np.exp(s - np.where(np.isfinite(top), top, 0))
            p /= np.maximum(p.sum(axis=-1, keepdims=True), np.finfo(p.dtype).tiny)
            return inputs.zero_empty_rows(np.matmul(p, v).astype(inputs.q.dtype))

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongSoftcapOrder()]
