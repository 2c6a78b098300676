"""A test backend that fails on seq_kv == 64 with the message of a broken CUDA context.

Such an error leaves a real process unfit for any later CUDA work, so the runner must give the
next case a fresh worker. The backend itself runs on the CPU; only its error text is CUDA's.
"""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64


class CudaPoison(NumpyNaive):
    name = "test-cuda-poison"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        if inputs.case.seq_kv != BAD_SEQ:
            return run

        def broken():
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        return broken


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [CudaPoison()]
