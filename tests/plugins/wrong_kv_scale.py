"""A deliberately wrong backend for tests: numpy-naive that dequantizes k with its scales but
reads v's codes as values (v's scales forgotten)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Capabilities, Inputs, hookimpl


class WrongKvScale(NumpyNaive):
    name = "wrong-kv-scale"
    description = "test plugin: numpy-naive, v's dequantization scales forgotten"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("window", "lengths", "kv_quant"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        if inputs.v_scale is not None:
            inputs = dataclasses.replace(inputs, v_scale=np.ones_like(inputs.v_scale))
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[NumpyNaive]:
    return [WrongKvScale()]
