"""A test backend whose worker ships a 1 TiB sparse .npy as its first output (H7).

It is numpy-naive; its plugin patches attnbench's array writer in its own worker: the first
call's output file becomes a valid .npy header claiming 2**38 float values (1 TiB) and a file
truncated (sparse) to that size, and the reply claims that shape too. Reading it into memory
would need 1 TiB.
"""

from __future__ import annotations

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl
from attnbench.worker import arrays

_write = arrays.write
HUGE = (2**18, 2**20)


def _write_sparse(host, dtype, folder, name):
    entry = _write(host, dtype, folder, name)
    if name.endswith("first.out") and "file" in entry:
        stored = np.dtype(arrays.STORED[dtype])
        with open(folder / entry["file"], "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {
                "descr": np.lib.format.dtype_to_descr(stored), "fortran_order": False,
                "shape": HUGE})
            fh.truncate(fh.tell() + HUGE[0] * HUGE[1] * stored.itemsize)
        entry["shape"] = list(HUGE)
    return entry


arrays.write = _write_sparse


class ShipsSparse(NumpyNaive):
    name = "test-ships-sparse"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ShipsSparse()]
