"""The sweep: expands scenarios into cases, runs each case on its backends, writes records.

Order is case-major: each case runs on every backend in turn, each in that backend's own
worker process (kept for the whole sweep, and importing only the plugin that defines it), then
the parent verifies every output of the case against one oracle (run/tasks.py). The parent
imports no plugin (it knows the backends from the catalog, plugin/catalog.py), is the only
writer of records.jsonl, and holds the folder's lock (runlock) while it writes; a worker that
dies, overruns its time or breaks the protocol becomes a `crashed` / `timeout` record and is
restarted for the next case.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attnbench.case import Case
from attnbench.errors import UsageError
from attnbench.measure import busy, environment
from attnbench.measure.memory import check_fits
from attnbench.plugin.backend import name_of
from attnbench.plugin.catalog import BackendInfo, Catalog, from_registry
from attnbench.plugin.probes import device_failure
from attnbench.record import CHECK_FAILED, key, record_key
from attnbench.results import read_run
from attnbench.results_writer import RunWriter, clear_run, new_run_id
from attnbench.run.executors import Executor
from attnbench.run.executors.local import LocalExecutor
from attnbench.run.progress import Progress, auto_progress
from attnbench.run.runlock import RunLock
from attnbench.run.sweep import Interrupted, Sweep, stop_on_signals
from attnbench.run.watch import Watch
from attnbench.scenario import Scenario
from attnbench.worker.execute import Options

__all__ = ["Interrupted", "Plan", "RunConfig", "RunResult", "make_plan", "run_plan"]

BASE_TIMEOUT_S = 300.0
BUDGET_TIMEOUT_FACTOR = 10.0


def default_timeout(opts: Options) -> float:
    """Per-task limit: 300 s (inputs, oracle, first call with JIT) plus 10 timing budgets."""
    return BASE_TIMEOUT_S + (BUDGET_TIMEOUT_FACTOR * opts.timer.budget_s if opts.time_it else 0)


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


@dataclass
class RunConfig:
    """How a run goes: where it writes, what each case does, its limits, who hears of records."""

    out_dir: Path | None = None
    opts: Options = field(default_factory=Options)
    meta: dict[str, Any] = field(default_factory=dict)  # command, config, environment...
    resume: bool = False  # continue the run in out_dir (run_plan only)
    overwrite: bool = False  # delete the run already in out_dir, once its lock is held
    timeout_s: float | None = None  # per task (and per worker start); None: default_timeout
    roof_s: float = 0.3
    frontier_max: int | None = None  # run_frontier's largest key length; None: per device
    progress: Progress | None = None  # None: auto_progress()
    wait_idle_s: float | None = None  # --wait-idle: the most seconds to wait for an idle machine
    on_record: Callable[[dict[str, Any]], None] | None = None  # gets a copy of each record
    executor: Executor | None = None  # where the cases run (run_plan only); None: local

    @property
    def task_timeout_s(self) -> float:
        return self.timeout_s or default_timeout(self.opts)


def run_plan(plan: Plan, config: RunConfig) -> RunResult:
    """Run every (case, backend) of the plan in workers, writing each record as it finishes.

    config.resume continues the run in config.out_dir: finished records (by record_key) are kept
    and not repeated, new ones are appended. SIGINT/SIGTERM stop the run; run.json says why.
    """
    executor = config.executor or LocalExecutor()
    with open_sweep(plan, config, plan.total) as sweep:
        done = {record_key(r) for r in sweep.result.records}
        sweep.writer.write_meta(executor=executor.describe())
        executor.run(sweep, [(b, [(s, c) for s, c in plan.items
                                  if key(s, c.id, c.device, name_of(b)) not in done])
                             for b in plan.backends], config.roof_s)
    return sweep.result


@contextmanager
def open_sweep(plan: Plan, config: RunConfig, total: int) -> Iterator[Sweep]:
    """The run folder locked, its writer open and a Sweep to run in it; closed whatever happens.

    An interrupt (SIGINT/SIGTERM) inside ends the sweep, not the caller: result.stopped says so.
    """
    given = dict(config.meta) if config.resume else {"run_id": new_run_id(), **config.meta}
    out = _run_dir(config, given.get("run_id"))
    with RunLock(out, config.meta.get("command")):
        if config.overwrite:  # under the lock: a run still writing the folder keeps its records
            clear_run(out)
        meta, old = _open_run(out, given, config.resume)
        timeout_s = config.task_timeout_s
        writer = RunWriter(out, {**meta, "timeout_s": timeout_s, "plan": plan.describe()},
                           config.resume)
        result = RunResult(out, records=list(old))
        progress = config.progress or auto_progress()
        sweep = Sweep(plan, out, config.opts, timeout_s, progress, writer, result,
                      config.on_record)
        sweep.roofs = dict(meta.get("roofs") or {})
        sweep.watch = watch = Watch(meta, config.opts.threads,
                                    any(c.device == "cuda" for _, c in plan.items),
                                    config.wait_idle_s)
        sweep.tasks.guard = watch.kill_escaped
        started = time.time()
        try:
            with stop_on_signals(sweep.signals):
                watch.wait_until_idle()
                with progress.running(total, len(old)):
                    yield sweep
            result.finished = True
        except KeyboardInterrupt as exc:
            result.stopped = str(exc) or "interrupted by SIGINT"
        finally:
            sweep.close()
            judged = _judged(watch, sweep, config.executor)
            earlier = _earlier_sessions(meta)  # none unless resumed
            if earlier:
                judged["contention_earlier"] = earlier
                judged["busy"] = busy.with_earlier(judged["busy"], earlier)
            result.busy = judged["busy"]
            writer.close(result.finished, stopped=result.stopped, records=len(result.records),
                         wall_s=round(meta.get("wall_s", 0) + time.time() - started, 3),
                         environment_end=_env_end(), **sweep.summary(), **judged,
                         worker_process=sweep.process_info or meta.get("worker_process"))


def _judged(watch: Watch, sweep: Sweep, executor: Executor | None) -> dict[str, Any]:
    """run.json's contention readings and busy verdict; a failure to read them loses no run."""
    try:
        return watch.finish(sweep.roofs, sweep.roofs_end, sweep.end_roof_s, sweep.roofs_during,
                            getattr(executor, "name", "local") if executor else "local")
    except Exception as exc:  # a reading bug must not keep run.json from being closed
        return {"contention": {"error": f"{type(exc).__name__}: {exc}"[:300]}, "busy": None}


def _earlier_sessions(meta: dict[str, Any]) -> list[Any]:
    """The readings of a resumed run's earlier sessions, oldest first (each session's
    `contention` is kept when the next one writes its own)."""
    earlier = meta.get("contention_earlier")
    out = list(earlier) if isinstance(earlier, list) else []
    return out + ([meta["contention"]] if isinstance(meta.get("contention"), dict) else [])


def _run_dir(config: RunConfig, run_id: str | None) -> Path:
    if config.out_dir is not None:
        return Path(config.out_dir)
    if config.resume or run_id is None:
        raise UsageError("resume needs the run folder")
    return Path("results") / run_id


def _open_run(out: Path, meta: dict[str, Any], resume: bool
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's meta and the records already there (resume), torn last line cut."""
    now = datetime.now(timezone.utc).isoformat()
    if not resume:
        return {"started": now, **meta}, []
    old_meta, records = read_run(out)
    _cut_torn_tail(out / "records.jsonl")
    entry = {"at": now, "command": meta.get("command"), "notes": meta.get("resume_notes") or []}
    resumes = [*old_meta.get("resumes", []), entry]
    keep = {k: v for k, v in old_meta.items() if k not in ("finished", "stopped", "ended")}
    return {**keep, "resumes": resumes}, records


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline (a writer killed mid-line) before appending."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def _env_end() -> dict[str, Any] | None:
    gpu = environment.gpu_state()
    return {"gpu": gpu} if gpu else None
