"""Executors: where a sweep's tasks run. `local` (this machine, the default) or `ray` (a cluster).

An executor gets the open sweep (its writer, progress and observers) and each backend's cases
still to run; it runs them somewhere and hands every record to `sweep.finish`, on this process,
so the driver stays the only writer of records.jsonl whatever runs the cases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from attnbench.case import Case
    from attnbench.plugin.backend import Backend
    from attnbench.run.sweep import Sweep

Work = list[tuple["Backend", list[tuple[str, "Case"]]]]  # each backend and its (scenario, case)s

__all__ = ["Executor", "Work"]


class Executor(Protocol):
    """Runs the work of one sweep and passes each record to sweep.finish as it comes."""

    name: str

    def run(self, sweep: Sweep, work: Work, roof_s: float) -> None:
        """Run every (case, backend) of work; roofs (when timed) measured for roof_s each."""

    def describe(self) -> dict[str, Any]:
        """What run.json says of the executor."""
