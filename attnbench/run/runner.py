"""A run: opens its folder, lock, watch and sweep, hands the plan (run/plan.py) to an executor.

Order is case-major: each case runs on every backend in turn, each in that backend's own
worker process (kept for the whole sweep, and importing only the plugin that defines it), then
the parent verifies every output of the case against one oracle (run/tasks.py). The parent
imports no plugin (it knows the backends from the catalog, run/catalog.py), is the only
writer of records.jsonl, and holds the folder's lock (runlock) while it writes; a worker that
dies, overruns its time or breaks the protocol becomes a `crashed` / `timeout` record and is
restarted for the next case.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.measure import busy, environment
from attnbench.plugin.backend import name_of
from attnbench.record import key, record_key
from attnbench.results import read_run, whole_tail
from attnbench.results_writer import RunWriter, clear_run, new_run_id
from attnbench.run.executors import Executor
from attnbench.run.executors.local import LocalExecutor
from attnbench.run.plan import Plan, RunResult
from attnbench.run.progress import Progress, auto_progress
from attnbench.run.runlock import RunLock
from attnbench.run.sweep import Interrupted, Sweep, stop_on_signals
from attnbench.run.watch import Watch
from attnbench.worker.execute import Options

__all__ = ["Interrupted", "RunConfig", "run_plan"]

BASE_TIMEOUT_S = 300.0
BUDGET_TIMEOUT_FACTOR = 10.0


def default_timeout(opts: Options) -> float:
    """Per-task limit: 300 s (inputs, oracle, first call with JIT) plus 10 timing budgets."""
    return BASE_TIMEOUT_S + (BUDGET_TIMEOUT_FACTOR * opts.timer.budget_s if opts.time_it else 0)


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
    # a local run's process adopts its workers' orphans (measure/ownership.py) to kill them;
    # the CLI's own process does, a library caller's (other children of its own) need not
    adopt_orphans: bool = False

    @property
    def task_timeout_s(self) -> float:
        return self.timeout_s or default_timeout(self.opts)


def run_plan(plan: Plan, config: RunConfig) -> RunResult:
    """Run every (case, backend) of the plan in workers, writing each record as it finishes.

    config.resume continues the run in config.out_dir: finished records (by record_key) are kept
    and not repeated, new ones are appended. SIGINT/SIGTERM stop the run; run.json says why.
    """
    finished = _finished_already(plan, config.out_dir) if config.resume else None
    if finished is not None:
        return finished
    executor = config.executor or LocalExecutor()
    with open_sweep(plan, config, plan.total) as sweep:
        done = {record_key(r) for r in sweep.result.records}
        sweep.writer.write_meta(executor=executor.describe())
        executor.run(sweep, [(b, [(s, c) for s, c in plan.items
                                  if key(s, c.id, c.device, name_of(b)) not in done])
                             for b in plan.backends], config.roof_s)
    return sweep.result


def _finished_already(plan: Plan, out: Path | None) -> RunResult | None:
    """A finished run holding a record of every (case, backend) of its plan: nothing to resume
    (its run.json, readings and verdict are left as they are); else None."""
    if out is None:
        return None
    meta, old = read_run(out)
    done = {record_key(r) for r in old}
    if meta.get("finished") is not True or any(
            key(s, c.id, c.device, name_of(b)) not in done
            for b in plan.backends for s, c in plan.items):
        return None
    print(f"resuming: {len(old)} records, the run finished: nothing to do (run.json left as "
          "it was)", file=sys.stderr)
    verdict = meta.get("busy")
    return RunResult(out, records=old, finished=True,
                     busy=verdict if isinstance(verdict, dict) else None)


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
                                    config.wait_idle_s, adopt=config.adopt_orphans
                                    and config.executor is None)
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
    """Drop a last line without its newline (a writer killed mid-line) before appending; one
    that is a whole record (read_records kept it) gets its newline instead."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            if whole_tail(data[data.rfind(b"\n") + 1:]) is not None:
                fh.seek(0, 2)
                fh.write(b"\n")
            else:
                fh.truncate(data.rfind(b"\n") + 1)


def _env_end() -> dict[str, Any] | None:
    gpu = environment.gpu_state()
    return {"gpu": gpu} if gpu else None
