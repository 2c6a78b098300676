"""A deliberately wrong backend for tests: soft-capping omitted."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongSoftcap(Backend):
    name = "wrong-softcap"
    framework = "numpy"
    description = "test plugin: numpy-naive, soft-capping omitted"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("softcap", "window"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        uncapped = dataclasses.replace(inputs.case, softcap=None)
        return NumpyNaive().prepare(dataclasses.replace(inputs, case=uncapped))


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongSoftcap()]
