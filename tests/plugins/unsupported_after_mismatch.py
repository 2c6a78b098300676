"""A test backend wrong on its first call (output x 1.5) that then raises Unsupported."""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Unsupported, hookimpl


class UnsupportedAfterMismatch(NumpyNaive):
    name = "test-unsupported-after-mismatch"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        calls = [0]

        def call():
            calls[0] += 1
            if calls[0] > 1:
                raise Unsupported("this case is not supported after all")
            return run() * 1.5

        return call


class UnsupportedAfterOk(NumpyNaive):
    name = "test-unsupported-after-ok"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        calls = [0]

        def call():
            calls[0] += 1
            if calls[0] > 1:
                raise Unsupported("this case is not supported after all")
            return run()

        return call


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [UnsupportedAfterMismatch(), UnsupportedAfterOk()]
