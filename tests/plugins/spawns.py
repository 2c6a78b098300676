"""Test backends that start sleeping processes on seq_kv == 64 and write their pids.

test-spawns starts a `sleep` (Popen), a forked child and, from a daemon thread, another
`sleep`; test-spawns-dies starts a `sleep` and then kills its own worker (os._exit(7)).
The pids go, one a line, to the file named by $ATTNBENCH_TEST_PIDFILE.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64


def _note(pid: int) -> None:
    with open(os.environ["ATTNBENCH_TEST_PIDFILE"], "a") as fh:
        fh.write(f"{pid}\n")


def _sleeper() -> None:
    _note(subprocess.Popen(["sleep", "300"]).pid)


def _fork() -> None:
    pid = os.fork()
    if pid == 0:
        time.sleep(300)
        os._exit(0)
    _note(pid)


class Spawns(NumpyNaive):
    name = "test-spawns"

    def prepare(self, inputs):
        if inputs.case.seq_kv == BAD_SEQ:
            _sleeper()
            _fork()
            thread = threading.Thread(target=_sleeper, daemon=True)
            thread.start()
            thread.join()
        return super().prepare(inputs)


class SpawnsDies(NumpyNaive):
    name = "test-spawns-dies"

    def prepare(self, inputs):
        if inputs.case.seq_kv == BAD_SEQ:
            _sleeper()
            os._exit(7)
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Spawns(), SpawnsDies()]
