"""What a run will do (the plan: (scenario, case) pairs and the backends to try on each, with
the devices resolved) and what it produced (RunResult)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from attnbench.case import Case
from attnbench.errors import UsageError
from attnbench.measure.memory import check_fits
from attnbench.plugin.backend import name_of
from attnbench.plugin.catalog import BackendInfo, Catalog, from_registry
from attnbench.plugin.probes import device_failure
from attnbench.record import CHECK_FAILED
from attnbench.scenario import Scenario


@dataclass
class Plan:
    """What a run will do: (scenario name, case) pairs and the backends to try on each."""

    items: list[tuple[str, Case]]
    backends: list[BackendInfo]
    catalog: Catalog | None = None

    @property
    def total(self) -> int:
        return len(self.items) * len(self.backends)

    def describe(self) -> dict[str, Any]:
        """What resume compares: backends, devices and every record key the plan makes."""
        return {"backends": [name_of(b) for b in self.backends],
                "devices": sorted({c.device for _, c in self.items}),
                "cases": [f"{s}/{c.id}/{c.device}" for s, c in self.items], "total": self.total}


@dataclass
class RunResult:
    """What a finished (or interrupted) run produced."""

    out_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    stopped: str | None = None
    busy: dict[str, Any] | None = None  # the busy-machine verdict (measure/busy.py)
    plugin_failures: list[tuple[str, str]] = field(default_factory=list)  # --plugin not loaded

    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] in CHECK_FAILED]


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
    catalog: Catalog | Any, scenarios: list[Scenario], backend_names: list[str],
    devices: list[str], dtypes: list[str],
) -> Plan:
    """Expand scenarios for each device (dtype overridden when asked) and pick backends.

    catalog: the Catalog (or a Registry built in this process: tests and the Python API).
    Repeated names run once; two different cases on one record key are refused (exit 2), and so
    is a case whose inputs the harness cannot hold.
    """
    if not isinstance(catalog, Catalog):
        catalog = from_registry(catalog)
    backends = [catalog.get(n) for n in dict.fromkeys(backend_names)] if backend_names else [
        b for b in catalog.backends.values() if catalog.plannable(b, devices)
    ]
    items: dict[tuple[str, str, str], tuple[str, Case]] = {}  # record key -> item, in order
    for scenario in scenarios:
        for device in dict.fromkeys(devices):
            for case in scenario.cases(device):
                for dt in dict.fromkeys(dtypes or [case.dtype]):
                    _add_item(items, scenario.name, replace(case, dtype=dt))
    check_fits([c for _, c in items.values()])  # inputs the harness cannot hold: exit 2
    return Plan(list(items.values()), backends, catalog)


def _add_item(items: dict[tuple[str, str, str], tuple[str, Case]], scenario: str,
              case: Case) -> None:
    """Add (scenario, case) once; another case already holding its id is a usage error."""
    at = (scenario, case.id, case.device)
    held = items.setdefault(at, (scenario, case))[1]
    if held != case:
        raise UsageError(f"scenario {scenario!r}: case id {case.id} names two different cases "
                         f"({held} and {case}); results would overwrite each other")
