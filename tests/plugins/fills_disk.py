"""A test plugin that fills the disk under records.jsonl: after the first record is written
(its attnbench_record_written hook, in the run's own process), the file's descriptor is
pointed at /dev/full, so every later write fails with "No space left on device" (ENOSPC)."""

from __future__ import annotations

import os

from attnbench import hookimpl


def _records_fds() -> list[int]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").endswith("/records.jsonl"):
                fds.append(int(name))
        except OSError:
            continue
    return fds


@hookimpl
def attnbench_record_written(record: dict) -> None:
    full = os.open("/dev/full", os.O_WRONLY)
    for fd in _records_fds():
        os.dup2(full, fd)
    os.close(full)
