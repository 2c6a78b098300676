"""A test backend whose worker puts a FIFO where its first output's file was (H6).

It is numpy-naive; its plugin patches attnbench's array writer in its own worker so that the
first call's output file, once written, is replaced by a FIFO of the same name, which the reply
still names. Opening a FIFO to read it blocks until a writer comes: none ever does.
"""

from __future__ import annotations

import os

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl
from attnbench.worker import arrays

_write = arrays.write


def _write_then_fifo(host, dtype, folder, name):
    entry = _write(host, dtype, folder, name)
    if name.endswith("first.out") and "file" in entry:
        path = folder / entry["file"]
        os.unlink(path)
        os.mkfifo(path)
    return entry


arrays.write = _write_then_fifo


class ShipsFifo(NumpyNaive):
    name = "test-ships-fifo"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ShipsFifo()]
