"""The local executor: one worker process per backend on this machine, backend after backend."""

from __future__ import annotations

from typing import Any

from attnbench.run.executors import Work
from attnbench.run.sweep import Sweep


class LocalExecutor:
    """Today's sweep: roofs once per device, then each backend's cases in its own worker."""

    name = "local"

    def run(self, sweep: Sweep, work: Work, roof_s: float) -> None:
        timed = sweep.opts.time_it
        if timed:
            sweep.measure_roofs(roof_s)
        for i, (backend, todo) in enumerate(work):  # the last worker measures the end roofs
            sweep.run_backend(backend, todo, roof_s if timed else None, last=i == len(work) - 1)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
