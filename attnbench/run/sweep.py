"""One run in progress: the writer, roofs, contention watch and observers; each record written."""

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
from attnbench.results_writer import RunWriter
from attnbench.run.observers import Observers, Signals
from attnbench.run.outcome import judge_throughput
from attnbench.run.progress import Progress
from attnbench.run.tasks import Pool, TaskRunner
from attnbench.run.watch import Watch
from attnbench.worker.execute import Options
from attnbench.worker.parent import START_TIMEOUT_S, WorkerDied, WorkerProcess, WorkerTimeout

if TYPE_CHECKING:
    from attnbench.run.plan import Plan, RunResult

ROOF_TIMEOUT_S = 300.0
ROOF_EVERY_S = 600.0  # a long sweep measures the roofs again between cases this often
# measured on each device whatever the cases' dtypes: the impossible-throughput check needs the
# device's fastest common matmul (a float16 case computed in float32 is no faster than this)
ROOF_DTYPES = {"cpu": "float32", "cuda": "bfloat16"}


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
    """The writer, the roofs, the observers and the records of one run; its rounds' runner."""

    def __init__(self, plan: Plan, out: Path, opts: Options, timeout_s: float,
                 progress: Progress, writer: RunWriter, result: RunResult,
                 on_record: Callable[[dict], None] | None = None):
        self.plan, self.out, self.opts, self.timeout_s = plan, out, opts, timeout_s
        self.progress, self.writer, self.result = progress, writer, result
        self.hello = {"options": opts.to_dict(), "run_limit": timeout_s}
        self.signals = Signals()
        self.observers = Observers(plan.catalog, on_record, self.signals, out / "logs",
                                   timeout_s)
        self.roofs: dict[str, dict[str, float | None]] = {}
        self.roofs_end: dict[str, dict[str, float | None]] = {}
        self.end_roof_s: float | None = None
        self.roofs_during: list[dict[str, Any]] = []  # long sweeps: between cases
        self._roof_at = self._began = time.monotonic()
        self.watch: Watch | None = None  # contention readings (open_sweep sets it)
        self._paused_s = 0.0
        self.tasks = TaskRunner(self.hello, out / "logs", timeout_s, progress.starting,
                                seed=opts.seed)
        self._roof_worker: WorkerProcess | None = None

    def close(self) -> None:
        """Stop the roof worker and the observers; remove the exchange folder."""
        if self._roof_worker is not None:
            self._roof_worker.stop()
        self.observers.close()
        self.tasks.close()

    @property
    def process_info(self) -> dict[str, Any] | None:
        """What prepare_process set in the workers (run.json's worker_process)."""
        return self.tasks.process_info

    @property
    def worker_stats(self) -> dict[str, Any]:
        return self.tasks.worker_stats

    def devices(self) -> list[str]:
        return sorted({c.device for _, c in self.plan.items})

    def measure_roofs(self, roof_s: float) -> None:
        """Once per device of the plan: the matmul roof in each dtype its cases use."""
        for device in self.devices():
            if device not in self.roofs:
                self.roofs[device] = self._roof(device, roof_s)
        self._roof_at = time.monotonic()
        self.writer.write_meta(roofs=self.roofs, roof_method=METHOD,
                               worker_process=self.process_info)

    def roofs_if_due(self, roof_s: float) -> None:
        """In a long sweep, the roofs again once ROOF_EVERY_S passed since the last."""
        if time.monotonic() - self._roof_at < ROOF_EVERY_S:
            return
        roofs = {device: self._roof(device, roof_s, matmul_only=True)
                 for device in self.devices()}
        self.roofs_during.append({"at_s": round(time.monotonic() - self._began, 1),
                                  "roofs": roofs})
        self._roof_at = time.monotonic()

    def measure_end_roofs(self, roof_s: float) -> None:
        """The roofs again after the last case, to see whether the machine slowed down."""
        t0 = time.perf_counter()
        for device in self.devices():
            self.roofs_end[device] = self._roof(device, roof_s, matmul_only=True)
        self.end_roof_s = round(time.perf_counter() - t0, 3)

    def _roof(self, device: str, roof_s: float, matmul_only: bool = False) -> dict[str, Any]:
        """One device's roofs, measured in the roof worker (it imports no plugin); matmul_only:
        the matmul roofs alone (those compared at the end and between cases), no bandwidth."""
        dtypes = sorted({c.dtype for _, c in self.plan.items if c.device == device}
                        | {ROOF_DTYPES.get(device, "float32")})
        out: dict[str, Any] = {d: None for d in dtypes}
        w = self._roof_worker
        try:
            if w is None or not (w.started and w.alive):
                if w is not None:
                    w.stop()
                w = self._roof_worker = self.tasks.new_worker("roof", role="roof")
                info = w.start(min(self.timeout_s, START_TIMEOUT_S))
                self.tasks.process_info = self.tasks.process_info or info.get("process")
            msg = {"roof": device, "dtypes": dtypes, "seconds": roof_s, "matmul_only": matmul_only}
            roofs = w.request(msg, ROOF_TIMEOUT_S).data.get("roofs")
            if isinstance(roofs, dict):
                out = roofs
        except (WorkerDied, WorkerTimeout) as exc:
            print(f"attnbench: roof of {device} not measured: {exc}", file=sys.stderr)
        return out

    def records(self, pool: Pool, scenario: str, case: Case, backends: list[Any]
                ) -> list[dict]:
        """One case on its backends (attnbench/run/tasks.py): its records, not yet written."""
        if self.watch is not None:  # --wait-idle: others started working meanwhile
            self._paused_s = self.watch.pause_if_loaded()
        return self.tasks.round(pool, scenario, case, backends)

    def round(self, pool: Pool, scenario: str, case: Case, backends: list[Any]) -> list[dict]:
        """One case on its backends; each record written."""
        records = self.records(pool, scenario, case, backends)
        for rec in records:
            self.finish(rec)
        return records

    def finish(self, rec: dict[str, Any],
               roofs: dict[str, dict[str, float | None]] | None = None) -> None:
        """Write one record, keep it, then tell the progress and the observers.

        roofs: those of the machine that measured it (default the run's, measured here)."""
        roofs = self.roofs if roofs is None else roofs
        roof_fraction(rec, roofs)
        judge_throughput(rec, roofs)
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
