"""A deliberately wrong backend for tests: its window one key wider (off by one)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongWindow(Backend):
    name = "wrong-window"
    framework = "numpy"
    description = "test plugin: numpy-naive, its window one key wider (off by one)"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("window",))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        c = inputs.case
        if c.window_left is not None:
            wider = dataclasses.replace(c, window_left=c.window_left + 1)
        else:
            wider = dataclasses.replace(c, window_right=c.window_right + 1)
        return NumpyNaive().prepare(dataclasses.replace(inputs, case=wider))


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongWindow()]
