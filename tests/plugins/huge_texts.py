"""A test backend that, on seq_kv == 64, prints 3 MB to stderr and raises a 50 MB message."""

from __future__ import annotations

import sys

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64


class HugeTexts(NumpyNaive):
    name = "test-huge-texts"

    def prepare(self, inputs):
        if inputs.case.seq_kv == BAD_SEQ:
            for _ in range(3):
                sys.stderr.write("log line " * (1 << 17) + "\n")
            raise RuntimeError("huge " + "x" * (50 << 20))
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [HugeTexts()]
