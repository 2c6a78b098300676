"""The sweep: expands scenarios into cases, runs each backend's cases in a worker, writes records.

Order is backend-major: one worker process per backend runs all of that backend's cases, then
quits, so only one worker holds case data (and device memory) at a time. Cases a backend does
not support are recorded by the parent without a worker. The parent is the only writer of
records.jsonl; a worker that dies or overruns its time becomes a `crashed` / `timeout` record
and is restarted for the next case.
"""

from __future__ import annotations

import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attnbench import environment, guard
from attnbench.backend import Backend, device_failure
from attnbench.case import Case, Scenario
from attnbench.errors import UsageError
from attnbench.execute import Options
from attnbench.memory import check_fits
from attnbench.plugins import Registry
from attnbench.progress import Progress, auto_progress
from attnbench.record import CHECK_FAILED, Status, key, new_record, record_key
from attnbench.results import RunWriter, new_run_id, read_run
from attnbench.roof import METHOD, roof_fraction
from attnbench.worker.parent import WorkerDied, WorkerProcess, WorkerTimeout

BASE_TIMEOUT_S = 300.0
BUDGET_TIMEOUT_FACTOR = 10.0


def default_timeout(opts: Options) -> float:
    """Per-task limit: 300 s (inputs, oracle, first call with JIT) plus 10 timing budgets."""
    return BASE_TIMEOUT_S + (BUDGET_TIMEOUT_FACTOR * opts.timer.budget_s if opts.time_it else 0)


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop (SIGINT or SIGTERM); what was measured is kept."""


@dataclass
class Plan:
    """What a run will do: (scenario name, case) pairs and the backends to try on each."""

    items: list[tuple[str, Case]]
    backends: list[Backend]
    registry: Registry | None = None

    @property
    def total(self) -> int:
        return len(self.items) * len(self.backends)

    def describe(self) -> dict[str, Any]:
        """What resume compares: backends, devices and every record key the plan makes."""
        return {"backends": [b.name for b in self.backends],
                "devices": sorted({c.device for _, c in self.items}),
                "cases": [f"{s}/{c.id}/{c.device}" for s, c in self.items], "total": self.total}


@dataclass
class RunResult:
    """What a finished (or interrupted) run produced."""

    out_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    stopped: str | None = None

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
    registry: Registry, scenarios: list[Scenario], backend_names: list[str],
    devices: list[str], dtypes: list[str],
) -> Plan:
    """Expand scenarios for each device (dtype overridden when asked) and pick backends."""
    backends = [registry.get(n) for n in backend_names] if backend_names else [
        b for b in registry.backends.values() if guard.plannable(b, devices)
    ]
    items: list[tuple[str, Case]] = []
    for scenario in scenarios:
        for device in devices:
            for case in scenario.cases(device):
                for dt in dtypes or [case.dtype]:
                    item = (scenario.name, replace(case, dtype=dt))
                    if item not in items:
                        items.append(item)
    check_fits([c for _, c in items])  # inputs the harness cannot hold: exit 2, nothing runs
    return Plan(items, backends, registry)


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into Interrupted for the duration of the sweep."""
    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals stay as they are
        old = {}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Sweep:
    """One run in progress: the writer, the workers, the roofs and the records so far."""

    def __init__(self, plan: Plan, out: Path, opts: Options, timeout_s: float,
                 progress: Progress, on_record: Callable[[dict], None] | None):
        self.plan, self.out, self.opts, self.timeout_s = plan, out, opts, timeout_s
        self.progress, self.on_record = progress, on_record
        reg = plan.registry
        self.hello = {"plugins": list(reg.plugin_specs) if reg else [],
                      "autoload": reg.autoload if reg else False, "options": opts.to_dict()}
        self.roofs: dict[str, dict[str, float | None]] = {}
        self.process_info: dict[str, Any] | None = None  # what prepare_process set in workers
        self.worker_stats: dict[str, Any] = {"starts": [], "overhead_ms": [], "restarts": 0}

    def new_worker(self, label: str) -> WorkerProcess:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
        return WorkerProcess(self.hello, self.out / "logs" / f"{safe}.log")

    def measure_roofs(self, writer: RunWriter, roof_s: float) -> None:
        """Once per device of the plan: the matmul roof in each dtype its cases use."""
        for device in sorted({c.device for _, c in self.plan.items}):
            if device in self.roofs:
                continue
            dtypes = sorted({c.dtype for _, c in self.plan.items if c.device == device})
            w = self.new_worker(f"roof-{device}")
            try:
                self.process_info = w.start().get("process")
                msg = {"roof": device, "dtypes": dtypes, "seconds": roof_s}
                self.roofs[device] = w.request(msg, BASE_TIMEOUT_S).data["roofs"]
            except (WorkerDied, WorkerTimeout) as exc:
                self.roofs[device] = {d: None for d in dtypes}
                print(f"attnbench: roof of {device} not measured: {exc}", file=sys.stderr)
            finally:
                w.stop()
        writer.write_meta(roofs=self.roofs, roof_method=METHOD, worker_process=self.process_info)

    def run_backend(self, backend: Backend, todo: list[tuple[str, Case]],
                    finish: Callable[[dict[str, Any]], None]) -> None:
        worker = self.new_worker(backend.name)
        try:
            for scenario, case in todo:
                self.progress.starting(case.id, backend.name)
                # unsupported, or unsupported() raised or overran: no worker needed to say so
                rec = guard.parent_record(backend, scenario, case, self.timeout_s)
                if rec is None:
                    rec = self.in_worker(worker, backend, scenario, case)
                finish(rec)
        except BaseException:
            worker.kill()  # interrupted mid-case: don't wait for the case to end
            raise
        finally:
            worker.stop()

    def in_worker(self, w: WorkerProcess, backend: Backend, scenario: str, case: Case) -> dict:
        task = {"task": 1, "scenario": scenario, "backend": backend.name, "case": case.to_dict()}
        try:
            if not w.alive:
                if w.proc is not None:
                    self.worker_stats["restarts"] += 1
                self.process_info = w.start().get("process")
                self.worker_stats["starts"].append(round(w.start_s, 3))
            reply = w.request(task, self.timeout_s)
        except WorkerTimeout as exc:
            return new_record(scenario, case, backend, Status.TIMEOUT, error=f"timeout: {exc}",
                              timeout_s=self.timeout_s)
        except WorkerDied as exc:
            return new_record(scenario, case, backend, Status.CRASHED,
                              error=f"worker {exc.reason}", log_tail=exc.log_tail)
        if "record" not in reply.data:
            return new_record(scenario, case, backend, Status.ERROR,
                              error=reply.data.get("missing", "no record in the worker's reply"))
        overhead_ms = (reply.roundtrip_s - reply.data["worker_s"]) * 1e3
        self.worker_stats["overhead_ms"].append(round(overhead_ms, 3))
        rec = reply.data["record"]
        rec["worker"] = {"pid": w.info.get("pid"), "overhead_ms": round(overhead_ms, 3)}
        if reply.data.get("restart"):  # e.g. a CUDA error that broke the context: fresh worker
            w.stop()
            rec["worker"]["restarted_after"] = True
        return rec


def run_plan(
    plan: Plan, out_dir: Path | None, opts: Options, meta: dict[str, Any],
    progress: Progress | None = None, on_record: Callable[[dict], None] | None = None,
    resume: bool = False, timeout_s: float | None = None, roof_s: float = 0.3,
) -> RunResult:
    """Run every (case, backend) of the plan in workers, writing each record as it finishes.

    resume=True continues the run in out_dir: finished records (by record_key) are kept and
    not repeated, new ones are appended. SIGINT/SIGTERM stop the run; run.json says why.
    """
    out, meta, old = _open_run(out_dir, meta, resume)
    timeout_s = timeout_s or default_timeout(opts)
    writer = RunWriter(out, {**meta, "timeout_s": timeout_s, "plan": plan.describe()}, resume)
    result = RunResult(out, records=list(old))
    done_keys = {record_key(r) for r in old}
    progress = progress or auto_progress()
    sweep = Sweep(plan, out, opts, timeout_s, progress, on_record)
    sweep.roofs = dict(meta.get("roofs") or {})
    started = time.time()

    def finish(rec: dict[str, Any]) -> None:
        roof_fraction(rec, sweep.roofs)
        writer.append(rec)
        result.records.append(rec)
        _notify(plan, rec, on_record)
        progress.advance(rec)

    try:
        with _stop_on_signals(), progress.running(plan.total, len(done_keys)):
            if opts.time_it:
                sweep.measure_roofs(writer, roof_s)
            for backend in plan.backends:
                todo = [(s, c) for s, c in plan.items
                        if key(s, c.id, c.device, backend.name) not in done_keys]
                sweep.run_backend(backend, todo, finish)
        result.finished = True
    except KeyboardInterrupt as exc:
        result.stopped = str(exc) or "interrupted by SIGINT"
    finally:
        writer.close(result.finished, stopped=result.stopped, records=len(result.records),
                     wall_s=round(meta.get("wall_s", 0) + time.time() - started, 3),
                     workers=_worker_summary(sweep.worker_stats), environment_end=_env_end(),
                     worker_process=sweep.process_info or meta.get("worker_process"))
    return result


def _notify(plan: Plan, rec: dict[str, Any], on_record: Callable[[dict], None] | None) -> None:
    if on_record:
        on_record(rec)
    if plan.registry is not None:
        try:
            plan.registry.pm.hook.attnbench_record_written(record=rec)
        except Exception as exc:  # a plugin's observer must not stop the run
            print(f"attnbench: attnbench_record_written raised {exc!r}", file=sys.stderr)


def _open_run(out_dir: Path | None, meta: dict[str, Any], resume: bool
              ) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """The run folder, its meta and the records already there (resume), torn last line cut."""
    now = datetime.now(timezone.utc).isoformat()
    if not resume:
        run_id = new_run_id()
        out = Path(out_dir) if out_dir else Path("results") / run_id
        return out, {"run_id": run_id, "started": now, **meta}, []
    if out_dir is None:
        raise UsageError("resume needs the run folder")
    out = Path(out_dir)
    old_meta, records = read_run(out)
    _cut_torn_tail(out / "records.jsonl")
    entry = {"at": now, "command": meta.get("command"), "notes": meta.get("resume_notes") or []}
    resumes = [*old_meta.get("resumes", []), entry]
    keep = {k: v for k, v in old_meta.items() if k not in ("finished", "stopped", "ended")}
    return out, {**keep, "resumes": resumes}, records


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline (a writer killed mid-line) before appending."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def _worker_summary(stats: dict[str, Any]) -> dict[str, Any]:
    def median(xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    return {"starts": len(stats["starts"]), "restarts": stats["restarts"],
            "start_s_median": median(stats["starts"]),
            "overhead_ms_median": median(stats["overhead_ms"])}


def _env_end() -> dict[str, Any] | None:
    gpu = environment.gpu_state()
    return {"gpu": gpu} if gpu else None
