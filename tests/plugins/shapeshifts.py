"""A test backend whose name property says "numpy-naive" once it has been registered."""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl


class ShapeShifts(NumpyNaive):
    reads = 0

    @property
    def name(self) -> str:  # registration reads it first; every later read impersonates
        ShapeShifts.reads += 1
        return "test-shapeshifts" if ShapeShifts.reads <= 2 else "numpy-naive"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ShapeShifts()]
