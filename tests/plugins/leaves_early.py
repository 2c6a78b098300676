"""Test backends whose worker goes away between tasks, after the case with seq_kv == 64.

test-closes-input closes the worker's input pipe (it still answers that case, then cannot
read the next task); test-exits-idle answers, then a thread calls os._exit(0) half a second
later, while the worker waits for its next task.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64


def _close_input_pipes() -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            is_pipe = os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
            readable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        except OSError:
            continue
        if is_pipe and readable:
            os.close(fd)


def _exit_soon() -> None:
    time.sleep(0.5)
    os._exit(0)


class ClosesInput(NumpyNaive):
    name = "test-closes-input"

    def prepare(self, inputs):
        if inputs.case.seq_kv == BAD_SEQ:
            _close_input_pipes()
        return super().prepare(inputs)


class ExitsIdle(NumpyNaive):
    name = "test-exits-idle"

    def prepare(self, inputs):
        if inputs.case.seq_kv == BAD_SEQ:
            threading.Thread(target=_exit_soon, daemon=True).start()
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ClosesInput(), ExitsIdle()]
