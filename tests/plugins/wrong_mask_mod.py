"""A deliberately wrong backend for tests: numpy-naive that drops the case's mask function
(it keeps causal, windows and lengths: the interval every row sees before the function)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongMaskMod(Backend):
    name = "wrong-mask-mod"
    framework = "numpy"
    description = "test plugin: numpy-naive, the mask function ignored"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("window", "lengths", "alibi", "mask_mod"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        case = dataclasses.replace(inputs.case, mask_mod=None)
        return NumpyNaive().prepare(dataclasses.replace(inputs, case=case))


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongMaskMod()]
