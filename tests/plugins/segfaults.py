"""A test backend that segfaults (reads address 0) on the case with seq_kv == 64."""

from __future__ import annotations

import ctypes

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64


class Segfaults(NumpyNaive):
    name = "test-segfaults"

    def prepare(self, inputs):
        if inputs.case.seq_kv == BAD_SEQ:
            ctypes.string_at(0)  # SIGSEGV: kills the process that runs it
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Segfaults()]
