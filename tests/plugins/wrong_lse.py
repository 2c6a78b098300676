"""A deliberately wrong backend for tests: numpy-naive returning its log-sum-exp in base 2
(lse / ln 2, what a kernel computing with exp2 returns when it forgets to convert back)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongLse(Backend):
    name = "wrong-lse"
    framework = "numpy"
    description = "test plugin: numpy-naive, the lse in base 2"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("window", "lengths", "paged", "sinks", "lse"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        run = NumpyNaive().prepare(inputs)
        if not inputs.case.lse:
            return run

        def base_two() -> Any:
            out, lse = run()
            return out, lse / lse.dtype.type(math.log(2))

        return base_two


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongLse()]
