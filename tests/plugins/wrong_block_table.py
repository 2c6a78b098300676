"""A deliberately wrong backend for tests: the block table ignored (pages read in pool order)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongBlockTable(Backend):
    name = "wrong-block-table"
    framework = "numpy"
    description = "test plugin: numpy-naive, the block table ignored (pages read in pool order)"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("paged", "lengths"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        if inputs.block_table is None:  # not paged: nothing to get wrong
            return NumpyNaive().prepare(inputs)
        in_order = np.arange(inputs.block_table.size, dtype=np.int32)
        table = in_order.reshape(inputs.block_table.shape)
        return NumpyNaive().prepare(dataclasses.replace(inputs, block_table=table))


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongBlockTable()]
