"""One case's round, as the parent sees it: each backend's worker runs it, then the verdicts.

A round runs one case on its backends, each in that backend's own worker (which imports only
the plugin that defines it), collects what each shipped, then verifies every output against one
oracle (attnbench/verify/judge.py): the compared rows are drawn only then, after every backend
has answered. Used by the sweep on this machine (executor `local`) and, unchanged, by the Ray
executor on each node; it makes records and writes nothing (the driver alone writes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnbench.case import Case
from attnbench.measure.contention import own_work
from attnbench.plugin.backend import name_of
from attnbench.plugin.capabilities import capability_reasons
from attnbench.record import Record, Status, new_record
from attnbench.run.outcome import from_result
from attnbench.verify.casedata import CaseData, expected_shapes
from attnbench.verify.judge import judge
from attnbench.worker import arrays, exchange
from attnbench.worker.parent import WorkerDied, WorkerProcess, WorkerTimeout


@dataclass
class Result:
    """A worker's answer to one case (the reply's `result`) and what the parent saw of it."""

    result: dict[str, Any]
    worker: dict[str, Any]
    arrays: dict[str, Any]  # what arrays.receive_all read from its task folder


def _declined(scenario: str, case: Case, backend: Any) -> Record | None:
    """The record made without a worker: `unsupported` by the backend's declared capabilities
    and availability (the catalog's data), or `error` when its availability check raised or
    hung; None when the case goes to its worker (whose unsupported() may still decline it)."""
    reasons = list(backend.reasons_on(case.device))
    if getattr(backend, "broken", False):
        return new_record(scenario, case, backend, Status.ERROR,
                          error=f"{name_of(backend)}: {'; '.join(reasons)}")
    reasons += capability_reasons(name_of(backend), backend.capabilities, case)
    if reasons:
        return new_record(scenario, case, backend, Status.UNSUPPORTED, reasons=reasons)
    return None


def needs_worker(scenario: str, case: Case, backend: Any) -> bool:
    """Whether this case goes to the backend's worker (it is not declined in the parent)."""
    return _declined(scenario, case, backend) is None


class Pool:
    """One worker per backend, started on first use; all stopped with their children at the end."""

    def __init__(self, runner: TaskRunner):
        self.runner = runner
        self.workers: dict[str, WorkerProcess] = {}
        self.failed: dict[str, WorkerDied | WorkerTimeout] = {}  # prestart failures, not yet told

    def get(self, backend: Any) -> WorkerProcess:
        name = name_of(backend)
        if name not in self.workers:
            self.workers[name] = self.runner.new_worker(name, backend)
        return self.workers[name]

    def stop(self, kill: bool = False) -> None:
        for w in self.workers.values():
            if kill:
                w.kill()
            w.stop()
        self.workers.clear()


class TaskRunner:
    """Workers for one run's rounds (logs under log_dir), with their start and overhead stats."""

    def __init__(self, hello: dict[str, Any], log_dir: Path, timeout_s: float,
                 starting: Callable[[str, str], None] | None = None, seed: int = 0):
        self.folder = exchange.exchange_dir()
        self.hello = {**hello, "arrays_dir": str(self.folder)}
        self.log_dir, self.timeout_s, self.seed = log_dir, timeout_s, seed
        self.starting = starting or (lambda case_id, backend: None)
        # called before each task is sent: the sweep kills processes escaped from the pause
        self.guard: Callable[[str, str], None] = lambda case_id, backend: None
        self.process_info: dict[str, Any] | None = None  # what prepare_process set in workers
        self.worker_stats: dict[str, Any] = {"starts": [], "overhead_ms": [], "restarts": 0}
        self._tasks = 0
        self._staged_for: CaseData | None = None  # the case whose inputs _staged_inputs holds
        self._staged_inputs: dict[str, Any] = {}

    def close(self) -> None:
        """Remove the exchange folder (every array in it was verified or abandoned)."""
        exchange.remove_dir(self.folder)

    def new_worker(self, label: str, backend: Any = None, role: str = "backend"
                   ) -> WorkerProcess:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
        hello = {**self.hello, "role": role}
        if backend is not None:
            hello["plugin"] = dict(backend.origin)
        return WorkerProcess(hello, self.log_dir / f"{safe}.log")

    @contextmanager
    def pool(self) -> Iterator[Pool]:
        """Workers for a sweep's rounds; they and their children are gone afterwards."""
        pool = Pool(self)
        try:
            yield pool
        except BaseException:
            pool.stop(kill=True)  # interrupted mid-case: don't wait for the case to end
            raise
        finally:
            pool.stop()

    def round(self, pool: Pool, scenario: str, case: Case, backends: list[Any]) -> list[Record]:
        """The records of one case on each backend: every worker answers, then the verdicts."""
        answers: list[tuple[Any, Result | Record]] = []
        data: CaseData | None = None
        for backend in backends:
            self.starting(case.id, name_of(backend))
            declined = _declined(scenario, case, backend)
            if declined is not None:
                answers.append((backend, declined))
                continue
            if data is None:
                with own_work():
                    data = CaseData(case, self.seed)
            self.guard(case.id, name_of(backend))
            answers.append((backend, self._ask(pool, backend, scenario, case, data)))
        if data is not None:
            data.draw_rows()  # every output exists now: the secret rows are drawn after them
        with own_work():  # no worker times meanwhile
            return [self._verdict(backend, answer, scenario, case, data)
                    if isinstance(answer, Result) else answer for backend, answer in answers]

    def _verdict(self, backend: Any, answer: Result, scenario: str, case: Case,
                 data: CaseData | None) -> Record:
        """The record of a worker's answer, judged; an exception judging what one backend
        shipped fails that backend's record alone (the round's other records are kept)."""
        try:
            agree = judge(data, backend.framework, answer.arrays) \
                if data is not None and answer.arrays else None
            rec = from_result(scenario, case, backend, answer.result, agree)
        except Exception as exc:  # what a plugin shipped broke the verdict: said, not raised
            return new_record(scenario, case, backend, Status.ERROR, worker=answer.worker,
                              error=f"its answer could not be judged: "
                                    f"{type(exc).__name__}: {exc}"[:500])
        rec["worker"] = answer.worker
        return rec

    def _ask(self, pool: Pool, backend: Any, scenario: str, case: Case, data: CaseData
             ) -> Result | Record:
        """The worker's result for one case, or the record of how the worker failed."""
        w = pool.get(backend)
        if w.started and not w.alive:  # it exited after its last reply
            died = w.reap()
            w.stop()
            return new_record(scenario, case, backend, Status.CRASHED, log_tail=died.log_tail,
                              error=f"worker {died.reason} between tasks, before answering "
                                    "this case; a fresh worker runs the next one")
        self._tasks += 1
        folder = None
        try:
            folder = exchange.task_dir(self.folder)
            task = {"scenario": scenario, "backend": name_of(backend), "case": case.to_dict(),
                    "prefix": f"t{self._tasks}", "dir": folder.name,
                    "inputs": {n: arrays.write(a, case.dtype, folder, f"in-{n}")
                               for n, a in self._staged(data).items()}}
        except OSError as exc:  # memory or disk full, or no folder can be made
            exchange.remove_dir(folder)
            return new_record(scenario, case, backend, Status.ERROR,
                              error=f"the case's inputs could not be written: {exc}")
        try:
            if not w.started:
                self._start(w, pool.failed.pop(name_of(backend), None))
            w.resume()
            reply = w.request(task, self.timeout_s)
            w.pause()  # until its next case: nothing it left running competes with the others
            return self._result(w, reply.data, reply.roundtrip_s, backend, scenario, case,
                                folder)
        except WorkerTimeout as exc:
            w.stop()
            return new_record(scenario, case, backend, Status.TIMEOUT, error=f"timeout: {exc}",
                              timeout_s=self.timeout_s, log_tail=exc.log_tail)
        except WorkerDied as exc:
            w.stop()
            return new_record(scenario, case, backend, Status.CRASHED,
                              error=f"worker {exc.reason}", log_tail=exc.log_tail)
        finally:
            exchange.remove_dir(folder)

    def _staged(self, data: CaseData) -> dict[str, Any]:
        """The case's inputs as workers load them, converted once per case."""
        if self._staged_for is not data:
            self._staged_for, self._staged_inputs = data, arrays.staged_all(data.arrays,
                                                                            data.case.dtype)
        return self._staged_inputs

    def prestart(self, pool: Pool, backends: list[Any]) -> None:
        """Start these backends' workers side by side (their imports overlap: one worker's
        start instead of one per backend), each paused once ready. Call it before any case
        runs: nothing is timed meanwhile. A worker that fails to start fails its first case,
        as a start there would have."""
        launched = []
        for backend in backends:
            w = pool.get(backend)
            if w.started:
                continue
            try:
                w.launch()
                launched.append((name_of(backend), w))
            except WorkerDied as exc:
                pool.failed[name_of(backend)] = exc
        for name, w in launched:
            try:
                self.process_info = w.ready(self.timeout_s).get("process")
                self.worker_stats["starts"].append(round(w.start_s, 3))
                w.pause()
            except (WorkerDied, WorkerTimeout) as exc:
                w.stop()
                pool.failed[name] = exc

    def _start(self, w: WorkerProcess, failed: WorkerDied | WorkerTimeout | None = None
               ) -> None:
        if failed is not None:  # its prestart failed: this case is where that is told
            raise failed
        if w.starts:
            self.worker_stats["restarts"] += 1
        self.process_info = w.start(self.timeout_s).get("process")
        self.worker_stats["starts"].append(round(w.start_s, 3))

    def _result(self, w: WorkerProcess, data: dict[str, Any], roundtrip_s: float,
                backend: Any, scenario: str, case: Case, folder: Path) -> Result | Record:
        """The worker's result, checked for form, with its arrays read into memory at once
        (before any other worker runs again); else the record of what went wrong."""
        result = data.get("result")
        if result is None:
            why = data.get("usage_error") or data.get("missing") or "no result in the reply"
            return new_record(scenario, case, backend, Status.ERROR, error=str(why))
        if not isinstance(result, dict) or not isinstance(data.get("worker_s"), (int, float)):
            w.kill()
            w.stop()
            return new_record(scenario, case, backend, Status.CRASHED,
                              error="worker broke the protocol: its reply holds no result of "
                                    "this task; worker killed")
        overhead_ms = round((roundtrip_s - data["worker_s"]) * 1e3, 3)
        self.worker_stats["overhead_ms"].append(overhead_ms)
        restart = bool(data.get("restart")) or (result.get("failure") or {}).get("status") == "oom"
        if restart:  # a CUDA error that broke the context, or an oom that may hold memory
            w.stop()
        worker = {"pid": w.info.get("pid"), "overhead_ms": overhead_ms,
                  **({"restarted_after": True} if restart else {})}
        try:
            shipped = arrays.receive_all(folder, result.get("arrays"), expected_shapes(case))
        except Exception as exc:  # any file a plugin made: a failure of its own
            return new_record(scenario, case, backend, Status.ERROR, worker=worker,
                              error=f"its arrays could not be read: "
                                    f"{type(exc).__name__}: {exc}"[:500])
        return Result(result, worker, shipped)
