"""A test plugin that notes the pid of every process that imports it.

ATTNBENCH_TEST_IMPORTERS: a file each importing process appends its pid to (one a line).
"""

from __future__ import annotations

import os

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

_path = os.environ.get("ATTNBENCH_TEST_IMPORTERS")
if _path:
    with open(_path, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")


class Noted(NumpyNaive):
    name = "test-noted"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Noted()]


@hookimpl
def attnbench_record_written(record: dict) -> None:
    pass
