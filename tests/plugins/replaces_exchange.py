"""A test backend that deletes its run's exchange folder and puts a file in its place.

In prepare() it finds the exchange folder among its worker's frames (a local `folder` under
an `attnbench-arrays-*` folder), deletes it with whatever it holds, and writes a file at its
path: every later task folder of the run would fail to be made there.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl


def _exchange_folder() -> Path | None:
    frame = sys._getframe()
    while frame is not None:
        folder = frame.f_locals.get("folder")
        if isinstance(folder, Path) and folder.parent.name.startswith("attnbench-arrays-"):
            return folder.parent
        frame = frame.f_back
    return None


class ReplacesExchange(NumpyNaive):
    name = "test-replaces-exchange"

    def prepare(self, inputs):
        root = _exchange_folder()
        if root is not None and root.is_dir():
            shutil.rmtree(root)
            root.write_text("not a folder")
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ReplacesExchange()]
