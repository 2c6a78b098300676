"""A test plugin of two backends whose workers each wait, at import, for the other's worker.

In a backend's worker, the import writes a marker named by its pid into the folder that
ATTNBENCH_TEST_RENDEZVOUS names and waits (at most 20 s) until two markers are there: the two
workers start only when they are started side by side, not one after the other.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

if os.environ.get("ATTNBENCH_PROCESS_ROLE") == "backend":  # the backends' workers only
    meeting = Path(os.environ["ATTNBENCH_TEST_RENDEZVOUS"])
    (meeting / str(os.getpid())).touch()
    deadline = time.monotonic() + 20
    while len(list(meeting.iterdir())) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("the twin worker never started beside this one")
        time.sleep(0.05)


class First(NumpyNaive):
    name = "test-twin-first"


class Second(NumpyNaive):
    name = "test-twin-second"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [First(), Second()]
