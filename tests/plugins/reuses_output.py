"""Test backends that compute once and hand back the cached result on every later call."""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive
from attnbench.backends.torch_naive import TorchNaive

from attnbench import Backend, hookimpl


class Cached(NumpyNaive):
    name = "test-cached"
    description = "test plugin: computes on the first call, returns the same array afterwards"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        cache = []

        def call():
            if not cache:
                cache.append(run())
            return cache[0]

        return call


class CachedView(Cached):
    name = "test-cached-view"
    description = "test plugin: a fresh view of one cached array on every call"

    def prepare(self, inputs):
        call = super().prepare(inputs)
        return lambda: call()[...]


class TorchCachedView(TorchNaive):
    name = "test-torch-cached-view"
    description = "test plugin: torch-naive once, then a fresh view of that tensor per call"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        cache = []

        def call():
            if not cache:
                cache.append(run())
            return cache[0].view(cache[0].shape)

        return call


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Cached(), CachedView(), TorchCachedView()]
