"""Test backends for --repeat: outputs or gradients that differ by one ulp from call to call.

test-jittery computes in float64, rounds to the case dtype (at most half an ulp from the exact
value) and then moves one output element by one ulp, a different element on each call: correct
well within the pass bound, but no two calls bitwise identical. test-steady is the same
computation without the move: bitwise identical on every call. test-jittery-grad is
torch-naive whose forward is untouched but whose backward gets dO with one element moved by
one ulp, a different one each call: identical outputs, differing gradients.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive
from attnbench.backends.torch_naive import TorchNaive

from attnbench import Backend, Capabilities, hookimpl


class Steady(NumpyNaive):
    name = "test-steady"
    description = "test plugin: numpy-naive in float64, rounded to the case dtype"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32",))

    def prepare(self, inputs):
        wide = dataclasses.replace(inputs, **{n: getattr(inputs, n).astype(np.float64)
                                              for n in ("q", "k", "v")})
        run, dtype, calls = super().prepare(wide), inputs.q.dtype, itertools.count()
        return lambda: self.finish(run().astype(dtype), next(calls))

    def finish(self, out: np.ndarray, call: int) -> np.ndarray:
        return out


class Jittery(Steady):
    name = "test-jittery"
    description = "test plugin: right to half an ulp, then one element moved by one ulp per call"

    def finish(self, out: np.ndarray, call: int) -> np.ndarray:
        flat = out.reshape(-1)
        i = call % flat.size  # call n moves element n: never the same output twice in a row
        flat[i] = np.nextafter(flat[i], np.inf, dtype=out.dtype)
        return out


class JitteryGrad(TorchNaive):
    name = "test-jittery-grad"
    description = "test plugin: torch-naive with dO moved by one ulp at one element per backward"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32",),
                                modes=("fwd", "bwd", "fwd_bwd"))

    def prepare(self, inputs):
        import torch

        run, calls = super().prepare(inputs), itertools.count()

        def nudge(g):
            g = g.clone()
            flat, i = g.view(-1), next(calls) % g.numel()
            flat[i] = torch.nextafter(flat[i], torch.tensor(float("inf"), dtype=g.dtype))
            return g

        def call():
            out = run()
            if out.requires_grad:
                out.register_hook(nudge)
            return out

        return call


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Steady(), Jittery(), JitteryGrad()]
