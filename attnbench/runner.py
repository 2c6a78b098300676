"""The sweep: expands scenarios into cases, runs every backend on each, writes records."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from attnbench.backend import Backend, device_failure
from attnbench.case import Case, Scenario
from attnbench.errors import UsageError
from attnbench.execute import CaseData, Options, execute
from attnbench.plugins import Registry
from attnbench.results import RunWriter, new_run_id

FAILED = ("mismatch", "error", "crashed", "timeout")


@dataclass
class Plan:
    """What a run will do: (scenario name, case) pairs and the backends to try on each."""

    items: list[tuple[str, Case]]
    backends: list[Backend]

    @property
    def total(self) -> int:
        return len(self.items) * len(self.backends)


@dataclass
class RunResult:
    """What a finished (or interrupted) run produced."""

    out_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False

    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] in FAILED]


def resolve_devices(devices: list[str]) -> list[str]:
    """Expand 'auto' (CUDA when present, else CPU) and reject unknown devices."""
    out: list[str] = []
    for d in devices or ["auto"]:
        if d == "auto":
            d = "cuda" if device_failure("cuda") is None else "cpu"
        if d not in ("cpu", "cuda"):
            raise UsageError(f"unknown device {d!r} (use cpu, cuda or auto)")
        if d not in out:
            out.append(d)
    return out


def make_plan(
    registry: Registry, scenarios: list[Scenario], backend_names: list[str],
    devices: list[str], dtypes: list[str],
) -> Plan:
    """Expand scenarios for each device (dtype overridden when asked) and pick backends."""
    backends = [registry.get(n) for n in backend_names] if backend_names else [
        b for b in registry.backends.values()
        if not b.availability() and any(not b.device_reasons(d) for d in devices)
    ]
    items: list[tuple[str, Case]] = []
    for scenario in scenarios:
        for device in devices:
            for case in scenario.cases(device):
                for dt in dtypes or [case.dtype]:
                    item = (scenario.name, replace(case, dtype=dt))
                    if item not in items:
                        items.append(item)
    return Plan(items, backends)


Progress = Callable[[int, int, str, str, dict[str, Any]], None]


def plain_progress(done: int, total: int, case_id: str, backend: str, rec: dict[str, Any]) -> None:
    """One line a record, for logs and CI."""
    med = rec.get("timing", {}).get("median_ms")
    tail = f" {med:.3f} ms" if med is not None else ""
    print(f"[{done}/{total}] {case_id} {backend}: {rec['status']}{tail}", file=sys.stderr, flush=True)


def run_plan(
    plan: Plan, out_dir: Path | None, opts: Options, meta: dict[str, Any],
    progress: Progress | None = plain_progress, on_record: Callable[[dict], None] | None = None,
) -> RunResult:
    """Run every (case, backend) of the plan, writing each record as it finishes."""
    run_id = new_run_id()
    out = Path(out_dir) if out_dir else Path("results") / run_id
    writer = RunWriter(out, {"run_id": run_id, **meta})
    result = RunResult(out)
    started, done = time.time(), 0
    try:
        for scenario, case in plan.items:
            get_data = _once(lambda c=case: CaseData(c, opts.seed))
            for backend in plan.backends:
                rec = execute(backend, scenario, case, get_data, opts)
                rec["device"] = case.device
                writer.append(rec)
                result.records.append(rec)
                done += 1
                if on_record:
                    on_record(rec)
                if progress:
                    progress(done, plan.total, case.id, backend.name, rec)
        result.finished = True
    finally:
        writer.close(result.finished, wall_s=round(time.time() - started, 3), records=done)
    return result


def _once(make: Callable[[], Any]) -> Callable[[], Any]:
    """Call make at most once and keep its result."""
    box: list[Any] = []

    def get() -> Any:
        if not box:
            box.append(make())
        return box[0]

    return get
