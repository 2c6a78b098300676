"""A test backend that leaks 64 MB and runs out of memory on seq_kv == 64, and after it.

Once the leak is held, every later prepare() in the same process raises MemoryError, as a real
leaking backend would: only a fresh worker gets it working again.
"""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64
LEAK: list[bytearray] = []


class Leaks(NumpyNaive):
    name = "test-leaks"

    def prepare(self, inputs):
        if LEAK:
            raise MemoryError("memory leaked by an earlier case is still held")
        if inputs.case.seq_kv == BAD_SEQ:
            LEAK.append(bytearray(64 << 20))
            raise MemoryError("cannot allocate the scratch buffer")
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Leaks()]
