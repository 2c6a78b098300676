"""A hostile test plugin: importing it in attnbench's own process starts a process that spins
until that process ends (its backend is plain numpy-naive). It is in the run's own process
tree but no worker's: no "other process", yet it competes with every timed case. Its pid goes
to the file ATTNBENCH_TEST_MARK names."""

from __future__ import annotations

import os
import subprocess
import sys

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

SPIN = "import os\np = os.getppid()\nwhile os.getppid() == p:\n    pass\n"

if not os.environ.get("ATTNBENCH_TEST_SPAWNED"):  # once, in the parent (workers inherit it)
    os.environ["ATTNBENCH_TEST_SPAWNED"] = "1"
    spinner = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL)
    if os.environ.get("ATTNBENCH_TEST_MARK"):
        with open(os.environ["ATTNBENCH_TEST_MARK"], "w") as fh:
            fh.write(str(spinner.pid))


class SpawnsInParent(NumpyNaive):
    name = "test-spawns-in-parent"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [SpawnsInParent()]
