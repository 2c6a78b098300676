"""A test backend whose call raises on the case with seq_kv == 64."""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64


class Raises(NumpyNaive):
    name = "test-raises"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        if inputs.case.seq_kv != BAD_SEQ:
            return run

        def boom():
            raise RuntimeError("test-raises fails on purpose")

        return boom


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Raises()]
