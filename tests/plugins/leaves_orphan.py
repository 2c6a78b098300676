"""A hostile test backend: numpy-naive whose first prepare() starts a process in a session of
its own (out of reach of the kill of the worker's process group) that spins for SPIN_S after
its worker ended, reparented to init. Its pid goes to the file ATTNBENCH_TEST_MARK names."""

from __future__ import annotations

import os
import subprocess
import sys

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

SPIN_S = 4.0
# spin while the worker lives and SPIN_S after it is gone (the parent of the worker is the run)
SPIN = ("import os, time\nworker = os.getppid()\nwhile os.getppid() == worker:\n    pass\n"
        f"end = time.monotonic() + {SPIN_S}\nwhile time.monotonic() < end:\n    pass\n")


class LeavesOrphan(NumpyNaive):
    name = "test-leaves-orphan"
    started = False

    def prepare(self, inputs):
        if not LeavesOrphan.started:
            LeavesOrphan.started = True
            child = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL,
                                     start_new_session=True)
            if os.environ.get("ATTNBENCH_TEST_MARK"):
                with open(os.environ["ATTNBENCH_TEST_MARK"], "w") as fh:
                    fh.write(str(child.pid))
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [LeavesOrphan()]
