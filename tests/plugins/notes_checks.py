"""Two test backends (numpy-naive) whose availability() notes its call in a file
(ATTNBENCH_TEST_CHECKS_LOG): which backends a run's catalog checks."""

from __future__ import annotations

import os

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl


class NotesChecks(NumpyNaive):
    description = "numpy-naive whose availability() writes its name to a file"

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def availability(self) -> list[str]:
        log = os.environ.get("ATTNBENCH_TEST_CHECKS_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"{self.name} {os.environ.get('ATTNBENCH_PROCESS_ROLE')}\n")
        return []


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [NotesChecks("test-checked-named"), NotesChecks("test-checked-other")]
