"""A deliberately wrong backend for tests: numpy-naive reading q, k and v as if contiguous.

It reinterprets each array's memory with C-order strides (as a kernel handed a raw pointer
does), so a transposed or sliced view gives it other numbers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Inputs, hookimpl


def _as_if_contiguous(x: np.ndarray) -> np.ndarray:
    strides, step = [], x.itemsize
    for n in reversed(x.shape):
        strides.insert(0, step)
        step *= n
    return np.lib.stride_tricks.as_strided(x, x.shape, tuple(strides)).copy()


class AssumesContiguous(NumpyNaive):
    name = "assumes-contiguous"
    description = "test plugin: numpy-naive reading q, k, v memory as if contiguous"

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        raw = {n: _as_if_contiguous(getattr(inputs, n)) for n in ("q", "k", "v")}
        return super().prepare(dataclasses.replace(inputs, **raw))


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [AssumesContiguous()]
