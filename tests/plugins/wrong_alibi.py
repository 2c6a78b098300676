"""A deliberately wrong backend for tests: the ALiBi sign flipped (farther keys favoured)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongAlibi(Backend):
    name = "wrong-alibi"
    framework = "numpy"
    description = "test plugin: numpy-naive, the ALiBi sign flipped (farther keys favoured)"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("alibi", "lengths"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        return NumpyNaive().prepare(FlippedAlibi(**{
            f.name: getattr(inputs, f.name) for f in dataclasses.fields(inputs) if f.init}))


class FlippedAlibi(Inputs):
    """Inputs whose additive mask carries +slope·distance instead of −slope·distance."""

    def additive_mask(self) -> Any:
        from attnbench.plugin.backend import alibi_matrix

        return super().additive_mask() - 2 * alibi_matrix(self.case).astype(self.q.dtype)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongAlibi()]
