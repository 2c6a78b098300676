"""Test backends that change their inputs: in prepare() (scale or zero in place, reassign) or
in every call. Each gives an answer computed from the changed arrays."""

from __future__ import annotations

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive
from attnbench.backends.torch_naive import TorchNaive

from attnbench import Backend, hookimpl


class ScalesQ(NumpyNaive):
    name = "test-scales-q"
    description = "test plugin: doubles q in place in prepare(), then attends with it"

    def prepare(self, inputs):
        inputs.q *= 2
        return super().prepare(inputs)


class ZeroesV(NumpyNaive):
    name = "test-zeroes-v"
    description = "test plugin: zeroes v in place in prepare() (the output is all zeros)"

    def prepare(self, inputs):
        inputs.v[...] = 0
        return super().prepare(inputs)


class ReassignsV(NumpyNaive):
    name = "test-reassigns-v"
    description = "test plugin: replaces inputs.v by zeros in prepare()"

    def prepare(self, inputs):
        inputs.v = np.zeros_like(inputs.v)
        return super().prepare(inputs)


class HalvesQPerCall(NumpyNaive):
    name = "test-halves-q-per-call"
    description = "test plugin: a right answer, after which each call halves q in place"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        q = inputs.q

        def call():
            out = run()
            np.multiply(q, 0.5, out=q)
            return out

        return call


class TorchScalesK(TorchNaive):
    name = "test-torch-scales-k"
    description = "test plugin: torch-naive after doubling k through .data (autograd misses it)"

    def prepare(self, inputs):
        inputs.k.data.mul_(2)
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ScalesQ(), ZeroesV(), ReassignsV(), HalvesQPerCall(), TorchScalesK()]
