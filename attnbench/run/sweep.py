"""One run in progress: the writer, roofs, contention watch and observers; each record written."""

from __future__ import annotations

import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnbench.case import Case
from attnbench.measure.roof import METHOD, roof_fraction
from attnbench.plugin.backend import Backend
from attnbench.results import RunWriter
from attnbench.run.execute import Options
from attnbench.run.observers import Observers, Signals
from attnbench.run.progress import Progress
from attnbench.run.tasks import TaskRunner
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
    """The writer, the roofs, the observers and the records of one run; its tasks' runner."""

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
        self.tasks = TaskRunner(self.hello, out / "logs", timeout_s, progress.starting)

    @property
    def process_info(self) -> dict[str, Any] | None:
        """What prepare_process set in the workers (run.json's worker_process)."""
        return self.tasks.process_info

    @property
    def worker_stats(self) -> dict[str, Any]:
        return self.tasks.worker_stats

    def new_worker(self, label: str) -> WorkerProcess:
        return self.tasks.new_worker(label)

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
                self.tasks.process_info = w.start(
                    min(self.timeout_s, START_TIMEOUT_S)).get("process")
            msg = {"roof": device, "dtypes": dtypes, "seconds": roof_s}
            roofs = w.request(msg, ROOF_TIMEOUT_S).data.get("roofs")
            if isinstance(roofs, dict):
                out = roofs
        except (WorkerDied, WorkerTimeout) as exc:
            print(f"attnbench: roof of {device} not measured: {exc}", file=sys.stderr)
        return out

    def worker(self, backend: Backend) -> AbstractContextManager[WorkerProcess]:
        """A worker for one backend's cases; it and its children are gone afterwards."""
        return self.tasks.worker(backend)

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
        return self.tasks.record(w, backend, scenario, case)

    def finish(self, rec: dict[str, Any],
               roofs: dict[str, dict[str, float | None]] | None = None) -> None:
        """Write one record, keep it, then tell the progress and the observers.

        roofs: those of the machine that measured it (default the run's, measured here)."""
        roof_fraction(rec, self.roofs if roofs is None else roofs)
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
