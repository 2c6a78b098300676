"""A deliberately wrong backend for tests: padding ignored (every sequence taken at full length)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongPadding(Backend):
    name = "wrong-padding"
    framework = "numpy"
    description = "test plugin: numpy-naive, padding ignored (every sequence taken at full length)"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("lengths",))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        full = dataclasses.replace(inputs.case, q_lens=None, kv_lens=None)
        return NumpyNaive().prepare(dataclasses.replace(inputs, case=full))


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongPadding()]
