"""A deliberately wrong backend for tests: numpy-naive with each sink logit multiplied by the
softmax scale, as if it were a q·k score (the sink is a logit already)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongSinks(Backend):
    name = "wrong-sinks"
    framework = "numpy"
    description = "test plugin: numpy-naive, the sink logits scaled like scores"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("window", "lengths", "sinks"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        sinks = inputs.sinks
        if sinks is not None:
            sinks = sinks * sinks.dtype.type(inputs.scale)
        return NumpyNaive().prepare(dataclasses.replace(inputs, sinks=sinks))


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongSinks()]
