"""A deliberately wrong backend for tests: numpy-flash reading one key past each kv length.

With ordinary inputs the extra key holds a random value; with poisoned inputs it holds NaN."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from attnbench.backends.numpy_flash import NumpyFlash

from attnbench import Backend, Inputs, hookimpl


class ReadsPastLengths(NumpyFlash):
    name = "reads-past-lengths"
    description = "test plugin: numpy-flash reading one key past each kv length"

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        case = inputs.case
        if case.kv_lens is None:
            return super().prepare(inputs)
        longer = tuple(min(n + 1, case.seq_kv) for n in case.kv_lens)
        return super().prepare(dataclasses.replace(
            inputs, case=dataclasses.replace(case, kv_lens=longer)))


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ReadsPastLengths()]
