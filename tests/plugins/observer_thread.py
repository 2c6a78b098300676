"""A test observer that starts a thread that never ends, and an exit handler that sleeps."""

from __future__ import annotations

import atexit
import threading
import time

from attnbench import hookimpl

STARTED: list[threading.Thread] = []


def _forever() -> None:
    while True:
        time.sleep(1)


@hookimpl
def attnbench_record_written(record: dict) -> None:
    if not STARTED:
        t = threading.Thread(target=_forever, name="never ends")  # not a daemon
        t.start()
        STARTED.append(t)
        atexit.register(time.sleep, 3600)
