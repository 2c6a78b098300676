"""The local executor: one worker process per backend on this machine, backend after backend."""

from __future__ import annotations

from typing import Any

from attnbench.run.executors import Work
from attnbench.run.sweep import Sweep


class LocalExecutor:
    """Today's sweep: roofs once per device, then each backend's cases in its own worker."""

    name = "local"

    def run(self, sweep: Sweep, work: Work, roof_s: float) -> None:
        if sweep.opts.time_it:
            sweep.measure_roofs(roof_s)
        for backend, todo in work:
            sweep.run_backend(backend, todo)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
