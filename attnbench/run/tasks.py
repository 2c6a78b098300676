"""One backend's tasks in a worker, as the parent sees them: the record of each (case, backend).

Used by the sweep on the machine that runs attnbench (executor `local`) and, unchanged, by the
Ray executor on each node; it makes records and writes nothing (the driver alone writes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attnbench.case import Case
from attnbench.plugin import guard
from attnbench.plugin.backend import Backend, name_of
from attnbench.record import Status, invalid_reason, key, new_record, record_key
from attnbench.worker.parent import WorkerDied, WorkerProcess, WorkerTimeout


class TaskRunner:
    """Workers for one run's tasks (logs under log_dir), with their start and overhead stats."""

    def __init__(self, hello: dict[str, Any], log_dir: Path, timeout_s: float,
                 starting: Callable[[str, str], None] | None = None):
        self.hello, self.log_dir, self.timeout_s = hello, log_dir, timeout_s
        self.starting = starting or (lambda case_id, backend: None)
        self.process_info: dict[str, Any] | None = None  # what prepare_process set in workers
        self.worker_stats: dict[str, Any] = {"starts": [], "overhead_ms": [], "restarts": 0}

    def new_worker(self, label: str) -> WorkerProcess:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
        return WorkerProcess(self.hello, self.log_dir / f"{safe}.log")

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

    def record(self, w: WorkerProcess, backend: Backend, scenario: str, case: Case) -> dict:
        """The record of one (case, backend): in the parent when unsupported, else in w."""
        self.starting(case.id, name_of(backend))
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
