"""A deliberately wrong backend for tests: packed key offsets off by one (read a row early)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongOffsets(Backend):
    name = "wrong-offsets"
    framework = "numpy"
    description = "test plugin: numpy-naive, packed key offsets off by one (read a row early)"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("packed", "lengths"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        if inputs.cu_seqlens_k is None:  # not packed: nothing to get wrong
            return NumpyNaive().prepare(inputs)
        # every sequence's keys and values read from cu_seqlens_k[b] - 1: one row early
        k, v = np.roll(inputs.k, 1, axis=0), np.roll(inputs.v, 1, axis=0)
        return NumpyNaive().prepare(dataclasses.replace(inputs, k=k, v=v))


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongOffsets()]
