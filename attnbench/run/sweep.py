"""One run in progress: a worker per backend, the record of each task, written and observed."""

from __future__ import annotations

import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnbench.case import Case
from attnbench.measure.roof import METHOD, roof_fraction
from attnbench.plugin import guard
from attnbench.plugin.backend import Backend, name_of
from attnbench.record import Status, invalid_reason, key, new_record, record_key
from attnbench.results import RunWriter
from attnbench.run.execute import Options
from attnbench.run.observers import Observers, Signals
from attnbench.run.progress import Progress
from attnbench.run.watch import Watch
from attnbench.worker.parent import START_TIMEOUT_S, WorkerDied, WorkerProcess, WorkerTimeout

if TYPE_CHECKING:
    from attnbench.run.runner import Plan, RunResult

ROOF_TIMEOUT_S = 300.0
ROOF_EVERY_S = 600.0  # a long sweep measures the roofs again between backends this often


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop (SIGINT or SIGTERM); what was measured is kept."""


@contextmanager
def stop_on_signals(signals: Signals) -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into Interrupted for the duration of the sweep."""
    def handler(signum: int, frame: Any) -> None:
        signals.received = signal.Signals(signum).name
        raise Interrupted(f"interrupted by {signals.received}")

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
    """The workers, the writer, the roofs and the records of one run."""

    def __init__(self, plan: Plan, out: Path, opts: Options, timeout_s: float,
                 progress: Progress, writer: RunWriter, result: RunResult,
                 on_record: Callable[[dict], None] | None = None):
        self.plan, self.out, self.opts, self.timeout_s = plan, out, opts, timeout_s
        self.progress, self.writer, self.result = progress, writer, result
        reg = plan.registry
        self.hello = {"plugins": list(reg.plugin_specs) if reg else [],
                      "autoload": reg.autoload if reg else False, "options": opts.to_dict()}
        self.signals = Signals()
        self.observers = Observers(reg, on_record, self.signals)
        self.roofs: dict[str, dict[str, float | None]] = {}
        self.roofs_end: dict[str, dict[str, float | None]] = {}
        self.end_roof_s: float | None = None
        self.roofs_during: list[dict[str, Any]] = []  # long sweeps: between backends
        self._roof_at = self._began = time.monotonic()
        self.watch: Watch | None = None  # contention readings (open_sweep sets it)
        self._paused_s = 0.0
        self.process_info: dict[str, Any] | None = None  # what prepare_process set in workers
        self.worker_stats: dict[str, Any] = {"starts": [], "overhead_ms": [], "restarts": 0}

    def new_worker(self, label: str) -> WorkerProcess:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
        return WorkerProcess(self.hello, self.out / "logs" / f"{safe}.log")

    def measure_roofs(self, roof_s: float) -> None:
        """Once per device of the plan: the matmul roof in each dtype its cases use."""
        for device in sorted({c.device for _, c in self.plan.items}):
            if device in self.roofs:
                continue
            w = self.new_worker(f"roof-{device}")
            try:
                self.roofs[device] = self._roof(w, device, roof_s)
            finally:
                w.stop()
        self._roof_at = time.monotonic()
        self.writer.write_meta(roofs=self.roofs, roof_method=METHOD,
                               worker_process=self.process_info)

    def roofs_if_due(self, w: WorkerProcess, roof_s: float) -> None:
        """In a long sweep, the roofs again (in w) once ROOF_EVERY_S passed since the last."""
        if time.monotonic() - self._roof_at < ROOF_EVERY_S:
            return
        roofs = {device: self._roof(w, device, roof_s)
                 for device in sorted({c.device for _, c in self.plan.items})}
        self.roofs_during.append({"at_s": round(time.monotonic() - self._began, 1),
                                  "roofs": roofs})
        self._roof_at = time.monotonic()

    def measure_end_roofs(self, roof_s: float, w: WorkerProcess | None = None) -> None:
        """The roofs again after the last case (in w, the last backend's worker, when given:
        no new process to start), to see whether the machine slowed down during the run."""
        t0 = time.perf_counter()
        own = w is None
        w = w or self.new_worker("roof-end")
        try:
            for device in sorted({c.device for _, c in self.plan.items}):
                self.roofs_end[device] = self._roof(w, device, roof_s)
        finally:
            if own:
                w.stop()
        self.end_roof_s = round(time.perf_counter() - t0, 3)

    def _roof(self, w: WorkerProcess, device: str, roof_s: float) -> dict[str, Any]:
        """One device's roofs measured in w (started when it is not running)."""
        dtypes = sorted({c.dtype for _, c in self.plan.items if c.device == device})
        out: dict[str, Any] = {d: None for d in dtypes}
        try:
            if not (w.started and w.alive):
                w.stop()
                self.process_info = w.start(min(self.timeout_s, START_TIMEOUT_S)).get("process")
            msg = {"roof": device, "dtypes": dtypes, "seconds": roof_s}
            roofs = w.request(msg, ROOF_TIMEOUT_S).data.get("roofs")
            if isinstance(roofs, dict):
                out = roofs
        except (WorkerDied, WorkerTimeout) as exc:
            print(f"attnbench: roof of {device} not measured: {exc}", file=sys.stderr)
        return out

    @contextmanager
    def worker(self, backend: Backend) -> Iterator[WorkerProcess]:
        """A worker for one backend's cases; it and its children are gone afterwards."""
        w = self.new_worker(name_of(backend))
        try:
            yield w
        except BaseException:
            w.kill()  # interrupted mid-case: don't wait for the case to end
            raise
        finally:
            w.stop()

    def run_backend(self, backend: Backend, todo: list[tuple[str, Case]],
                    roof_s: float | None = None, last: bool = False) -> None:
        """Every (scenario, case) of todo on one backend, in one worker (restarted as needed).
        With roof_s (timed runs), the roofs are measured again in that worker first when due,
        and after its last case when it is the last backend (the end roofs)."""
        with self.worker(backend) as w:
            if roof_s is not None and todo:
                self.roofs_if_due(w, roof_s)
            for scenario, case in todo:
                self.finish(self.record(w, backend, scenario, case))
            if roof_s is not None and last:
                self.measure_end_roofs(roof_s, w)

    def record(self, w: WorkerProcess, backend: Backend, scenario: str, case: Case) -> dict:
        """The record of one (case, backend): in the parent when unsupported, else in w."""
        if self.watch is not None:  # --wait-idle: others started working meanwhile
            self._paused_s = self.watch.pause_if_loaded()
        self.progress.starting(case.id, name_of(backend))
        # unsupported, or unsupported() raised or overran (under the guard): no worker needed
        rec = guard.parent_record(backend, scenario, case, self.timeout_s)
        return self.in_worker(w, backend, scenario, case) if rec is None else rec

    def in_worker(self, w: WorkerProcess, backend: Backend, scenario: str, case: Case) -> dict:
        if w.started and not w.alive:  # it exited after its last reply
            died = w.reap()
            w.stop()
            return new_record(scenario, case, backend, Status.CRASHED, log_tail=died.log_tail,
                              error=f"worker {died.reason} between tasks, before answering "
                                    "this case; a fresh worker runs the next one")
        task = {"scenario": scenario, "backend": name_of(backend), "case": case.to_dict()}
        try:
            if not w.started:
                self._start(w)
            reply = w.request(task, self.timeout_s)
        except WorkerTimeout as exc:
            w.stop()
            return new_record(scenario, case, backend, Status.TIMEOUT, error=f"timeout: {exc}",
                              timeout_s=self.timeout_s, log_tail=exc.log_tail)
        except WorkerDied as exc:
            w.stop()
            return new_record(scenario, case, backend, Status.CRASHED,
                              error=f"worker {exc.reason}", log_tail=exc.log_tail)
        return self._from_reply(w, reply.data, reply.roundtrip_s, backend, scenario, case)

    def _start(self, w: WorkerProcess) -> None:
        if w.starts:
            self.worker_stats["restarts"] += 1
        self.process_info = w.start(self.timeout_s).get("process")
        self.worker_stats["starts"].append(round(w.start_s, 3))

    def _from_reply(self, w: WorkerProcess, data: dict[str, Any], roundtrip_s: float,
                    backend: Backend, scenario: str, case: Case) -> dict:
        """The worker's record, checked: a valid record of this very task, else `crashed`."""
        rec = data.get("record")
        if rec is None:
            return new_record(scenario, case, backend, Status.ERROR,
                              error=str(data.get("missing", "no record in the worker's reply")))
        why = invalid_reason(rec)
        if why is None and record_key(rec) != key(scenario, case.id, case.device, name_of(backend)):
            why = f"it is the record of {record_key(rec)}"
        if why is not None or not isinstance(data.get("worker_s"), (int, float)):
            w.kill()
            w.stop()
            return new_record(scenario, case, backend, Status.CRASHED,
                              error=f"worker broke the protocol: its reply is not a record of "
                                    f"this task ({why or 'no worker_s'}); worker killed")
        overhead_ms = round((roundtrip_s - data["worker_s"]) * 1e3, 3)
        self.worker_stats["overhead_ms"].append(overhead_ms)
        rec["worker"] = {"pid": w.info.get("pid"), "overhead_ms": overhead_ms}
        # a CUDA error that broke the context, or an oom that may have left memory held
        if data.get("restart") or rec["status"] == Status.OOM:
            w.stop()
            rec["worker"]["restarted_after"] = True
        return rec

    def finish(self, rec: dict[str, Any]) -> None:
        """Write one record, keep it, then tell the progress and the observers."""
        roof_fraction(rec, self.roofs)
        if self.watch is not None:
            self.watch.observe(rec, self._paused_s)
            self._paused_s = 0.0
        self.writer.append(rec)
        self.result.records.append(rec)
        self.progress.advance(rec)
        self.observers.notify(rec)

    def summary(self) -> dict[str, Any]:
        """What run.json says of the workers (and of observers that raised)."""
        stats = self.worker_stats

        def median(xs: list[float]) -> float | None:
            return statistics.median(xs) if xs else None

        out = {"starts": len(stats["starts"]), "restarts": stats["restarts"],
               "start_s_median": median(stats["starts"]),
               "overhead_ms_median": median(stats["overhead_ms"])}
        return {"workers": out, "observer_failures": dict(self.observers.failures)}
