"""The local executor: every case on each of its backends in turn, one worker per backend."""

from __future__ import annotations

from typing import Any

from attnbench.plugin.backend import name_of
from attnbench.run.executors import Work
from attnbench.run.sweep import Sweep


def case_major(work: Work) -> list[tuple[str, Any, list[Any]]]:
    """(scenario, case, backends still to run it) in plan order, from per-backend work."""
    order: dict[tuple[str, Any], list[Any]] = {}
    for backend, todo in work:
        for scenario, case in todo:
            order.setdefault((scenario, case), []).append(backend)
    ranks = {name_of(b): i for i, (b, _) in enumerate(work)}
    return [(s, c, sorted(bs, key=lambda b: ranks[name_of(b)])) for (s, c), bs in order.items()]


class LocalExecutor:
    """Roofs once per device, then case by case: each case on its backends back to back (their
    ratios hold while the machine's load drifts), verified against one oracle."""

    name = "local"

    def run(self, sweep: Sweep, work: Work, roof_s: float) -> None:
        timed = sweep.opts.time_it
        if timed:
            sweep.measure_roofs(roof_s)
        with sweep.tasks.pool() as pool:
            for scenario, case, backends in case_major(work):
                if timed:
                    sweep.roofs_if_due(roof_s)
                sweep.round(pool, scenario, case, backends)
        if timed:
            sweep.measure_end_roofs(roof_s)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "order": "case-major"}
