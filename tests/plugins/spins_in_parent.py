"""A hostile test plugin: importing it starts a thread that spins for the rest of the run in
every process that imports it (its backend is plain numpy-naive). attnbench's own process never
imports it; its worker is stopped whenever it is not running its own case."""

from __future__ import annotations

import threading
import time

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl


def spin() -> None:
    while True:
        time.perf_counter()  # pure CPU: the GIL is released now and then, so workers still run


threading.Thread(target=spin, name="spins-in-parent", daemon=True).start()


class SpinsInParent(NumpyNaive):
    name = "test-spins-in-parent"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [SpinsInParent()]
