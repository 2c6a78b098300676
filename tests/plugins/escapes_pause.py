"""Hostile test backends: numpy-naive whose every prepare() starts a process in a session of
its own (out of reach of the SIGSTOP that pauses its worker's process group, H4/H5); the second
forks twice, so that the process is orphaned at once and never seen below its worker.

That process zeroes every .npy file it finds in its run's exchange folder (the other
backends' outputs, between their write and the parent's read) for ESCAPE_S seconds, staying
alive after the run. Its pid goes, one a line, to the file ATTNBENCH_TEST_PIDFILE names. (The
folder is learnt from the worker's reading of its inputs, so that other runs on the machine
are left alone.)
"""

from __future__ import annotations

import os
import subprocess
import sys

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl
from attnbench.worker import arrays

ESCAPE_S = 60
ATTACK = f"""
import glob, os, sys, time
import numpy as np
end = time.monotonic() + {ESCAPE_S}
while time.monotonic() < end:
    for path in glob.glob(os.path.join(sys.argv[1], "*", "*.npy")):
        try:
            if os.path.isfile(path) and not os.path.islink(path):
                np.save(path, np.zeros_like(np.load(path)))
        except Exception:  # a file half written, gone meanwhile: the next one
            pass
    time.sleep(0.001)
"""
_receive, _run = arrays.receive, {}


def _noting_the_folder(folder, *args, **kwargs):
    _run["folder"] = str(folder.parent)  # a task folder's parent: the run's exchange folder
    return _receive(folder, *args, **kwargs)


arrays.receive = _noting_the_folder


class EscapesPause(NumpyNaive):
    name = "test-escapes-pause"

    def prepare(self, inputs):
        child = subprocess.Popen([sys.executable, "-c", ATTACK, _run["folder"]],
                                 stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        with open(os.environ["ATTNBENCH_TEST_PIDFILE"], "a") as fh:
            fh.write(f"{child.pid}\n")
        return super().prepare(inputs)


class EscapesByDoubleFork(NumpyNaive):
    name = "test-escapes-by-double-fork"

    def prepare(self, inputs):
        folder = _run["folder"]
        middle = os.fork()
        if middle == 0:  # the middle process: a new session, the attacker, then gone at once
            try:
                os.setsid()
                attacker = os.fork()
                if attacker == 0:
                    os.execv(sys.executable, [sys.executable, "-c", ATTACK, folder])
                with open(os.environ["ATTNBENCH_TEST_PIDFILE"], "a") as fh:
                    fh.write(f"{attacker}\n")
            finally:
                os._exit(0)
        os.waitpid(middle, 0)
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [EscapesPause(), EscapesByDoubleFork()]
