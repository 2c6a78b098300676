"""What one case ships to the parent: its report's data, call outputs, and timed outputs kept."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from attnbench.case import Case
from attnbench.plugin.outputs import split_result
from attnbench.verify import determinism
from attnbench.worker import arrays


class Report:
    """What one case gave in the worker: measurements, shipped arrays and the failure, if any."""

    def __init__(self, folder: Path, prefix: str):
        self.folder, self.prefix = folder, prefix
        self.data: dict[str, Any] = {"phase": "unsupported()", "arrays": {}}

    def ship(self, name: str, x: Any) -> None:
        """Write an output or gradient for the parent to verify."""
        self.data["arrays"][name] = arrays.ship(x, self.folder, f"{self.prefix}-{name}")

    def phase(self, name: str) -> None:
        self.data["phase"] = name


def ship_call(rep: Report, tag: str, out: Any, grads: dict[str, Any] | None, case: Case
              ) -> None:
    """Ship one call's output (not in bwd, where it is the held forward), its lse when the
    case asks for it (or, where the result breaks the contract, why) and gradients."""
    out, lse, problem = split_result(out, case)
    if case.mode != "bwd" or tag == "first":
        rep.ship(f"{tag}.out", out)
    if problem is not None:
        rep.data["arrays"][f"{tag}.lse"] = {"error": problem, "contract": True}
    elif lse is not None:
        rep.ship(f"{tag}.lse", lse)
    for name, g in (grads or {}).items():
        if g is not None:  # a missing gradient is said by the verdict ("no gradient")
            rep.ship(f"{tag}.{name}", g)


class Keeper:
    """Outputs of timed calls kept for verification: one drawn at random (reservoir sampling
    over every call offered) and the last. The timers offer the output of the last call of
    each sample, outside the timed region; nothing is copied while timing."""

    def __init__(self, rep: Report, case: Case, inputs: Any):
        self.rep, self.case, self.inputs = rep, case, inputs
        self.seen, self.drawn, self.last = 0, None, None
        self._rng = random.Random()

    def _capture(self, out: Any) -> tuple[Any, dict[str, Any] | None]:
        grads = determinism.current_grads(self.inputs) if self.inputs is not None else None
        return out, grads

    def offer(self, out: Any) -> None:
        self.seen += 1
        taken = self._capture(out)
        if self._rng.random() * self.seen < 1.0:
            self.drawn = taken
        self.last = taken

    def ship(self) -> None:
        """Write the drawn and the last call's arrays (once when they are the same call)."""
        if self.last is None:
            return
        tags = [("last", self.last)]
        if self.drawn is not None and self.drawn is not self.last:
            tags.append(("drawn", self.drawn))
        for tag, (out, grads) in tags:
            ship_call(self.rep, tag, out, grads, self.case)
        self.rep.data["timed_calls_offered"] = self.seen
        self.drawn = self.last = None
