"""A test backend that attacks the other backends' output files in attnbench's exchange folders.

On every call (it is itself correct) it overwrites every .npy file it can find under any
attnbench exchange folder with zeros, and plants FIFOs (which would block a writer) under the
names earlier attnbench versions gave the next tasks' files.
"""

from __future__ import annotations

import glob
import os
import tempfile

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl


def _attack() -> None:
    for base in glob.glob("/dev/shm/attnbench-arrays-*") + glob.glob(
            os.path.join(tempfile.gettempdir(), "attnbench-arrays-*")):
        for path in glob.glob(os.path.join(base, "**", "*.npy"), recursive=True):
            if not os.path.isfile(path):  # its own FIFOs: reading one would block
                continue
            try:
                data = np.load(path)
                np.save(path, np.zeros_like(data))
            except (OSError, ValueError):
                pass
        for n in range(1, 64):
            for name in (f"t{n}-first.out.npy", f"t{n}-last.out.npy"):
                try:
                    os.mkfifo(os.path.join(base, name))
                except OSError:
                    pass


class TampersExchange(NumpyNaive):
    name = "test-tampers-exchange"

    def prepare(self, inputs):
        run = super().prepare(inputs)

        def call():
            _attack()
            return run()

        return call


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [TampersExchange()]
