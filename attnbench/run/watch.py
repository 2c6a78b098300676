"""Contention during one run: readings before, per record and after; --wait-idle; the verdict.

A Watch is made when a run's folder opens. It probes the machine for PROBE_S before anything
runs (what others do now), snapshots /proc at the start and after each record (the record's
window: others' CPU, steal, load), and at the end. Records carry a `contention` field only where
the readings changed. finish() puts it all, with the start and end roofs and the best known
roof of this machine (roofcache), into run.json's `contention` and judges it (measure/busy.py).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from attnbench.measure import busy, contention, ownership, roofcache

PROBE_S = 0.25  # the reading before the run: others' CPU over this long
WAIT_STEP_S = 1.0  # --wait-idle: others' CPU is read over windows this long
WAIT_SAY_S = 10.0  # a plain progress line this often (a terminal line is rewritten every step)
CHANGE_CORES, CHANGE_STEAL = 0.25, 5.0  # a record stores readings that changed this much
MAX_KILLED = 50  # escaped processes run.json names (each is said on stderr)


class Watch:
    """The readings of one run, taken by the sweep as it goes."""

    def __init__(self, meta: dict[str, Any], threads: int | None, gpu: bool,
                 wait_idle_s: float | None = None, stream: TextIO | None = None,
                 adopt: bool = False):
        self.meta, self.threads, self.use_gpu = meta, threads, gpu
        self.wait_idle_s, self.stream = wait_idle_s, stream
        self.cpus = contention.run_cpus()  # others count only on the CPUs this run can use
        self.cores = contention.read_cpu(Path("/"), self.cpus)[1]
        self.limit = busy.others_limit(self.cores)
        self.counts = {"windows": 0, "under_load": 0, "timed": 0, "noisy": 0}
        self.cost_s = 0.0
        self.stored: dict[str, Any] | None = None
        self.paused_s = 0.0
        self.waited: dict[str, Any] | None = None
        self.recent: dict[str, Any] | None = None  # the window of the last record
        self.tracker = contention.Tracker()  # the run's own processes, snapshot to snapshot
        self.stray: dict[int, tuple[str, float]] = {}  # pid: name, CPU ticks while stray
        self.killed: list[dict[str, Any]] = []  # escaped processes killed (kill_escaped)
        # adopt: orphans of the workers become this process's children, to be seen and killed
        self.adopting = adopt and ownership.adopt_orphans()
        if self.adopting:
            self.tracker.adopt(contention.read_procs(Path("/")), os.getpid())
        self.before = self._reading(contention.probe(PROBE_S, cpus=self.cpus))
        self.start = self.last = self._snap()

    def _snap(self) -> contention.Snapshot:
        t0 = time.perf_counter()
        snap = contention.snapshot(cpus=self.cpus, tracker=self.tracker)
        self.cost_s += time.perf_counter() - t0
        return snap

    def _move(self, now: contention.Snapshot) -> None:
        """The run's stray CPU since the last snapshot, added up per process; now is the last."""
        for pid, name, ticks in contention.stray_ticks(self.last, now):
            self.stray[pid] = (name, self.stray.get(pid, (name, 0.0))[1] + ticks)
        self.last = now

    def kill_escaped(self, case_id: str = "", backend: str = "") -> None:
        """SIGKILL every process a worker of this run started outside its process group (a
        new session or group, which the worker's pause does not stop; or orphaned at once, by
        a double fork, and adopted here), before a backend's task (case_id, backend) and at the
        end of the run; each one is kept for run.json. Adopted orphans are reaped."""
        t0 = time.perf_counter()
        procs = contention.read_procs(Path("/"))
        ours = self.tracker.classify(procs, os.getpid(), Path("/"))
        when = f"before {case_id} on {backend}" if case_id else "at the end of the run"
        for pid in sorted(ours.escaped):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            if len(self.killed) < MAX_KILLED:
                self.killed.append({"pid": pid, "name": procs[pid].name[:40], "when": when})
            print(f"attnbench: killed process {pid} ({procs[pid].name[:40]}), started by a "
                  f"worker outside its paused process group, {when}", file=sys.stderr)
        _reap(ours.adopted)
        self.cost_s += time.perf_counter() - t0

    def _reading(self, window: dict[str, Any]) -> dict[str, Any]:
        """A window with the CPU clocks and (CUDA runs) the GPU state added: the run's own
        processes (the parent with its CUDA context, the workers) are not GPU neighbours."""
        out = {**window, "cpu_freq": contention.cpu_freq()}
        if self.use_gpu:
            snap = self._snap()
            out["gpu"] = contention.gpu_reading(own=snap.legit, stray=snap.stray,
                                                visible=frozenset(snap.procs))
        else:
            out["gpu"] = "unmeasured: no CUDA case"
        return out

    def _stray_reading(self, seconds: float) -> dict[str, Any]:
        """The run's stray CPU over the whole run, in cores, and the busiest stray processes."""
        hz, seconds = contention.clock_ticks(), max(seconds, 1e-6)
        rows = sorted(((ticks / hz / seconds, pid, name) for pid, (name, ticks)
                       in self.stray.items()), reverse=True)
        out: dict[str, Any] = {"stray_cores": round(sum(r[0] for r in rows), 3)}
        top = [{"pid": pid, "name": name[:40], "cores": round(cores, 2)}
               for cores, pid, name in rows[:contention.TOP_OTHERS] if cores >= 0.05]
        return {**out, **({"top_stray": top} if top else {})}

    def wait_until_idle(self) -> None:
        """--wait-idle before the run: until the 1-minute load is under the core count and
        others use fewer than the busy limit of cores, or the wait's seconds are spent."""
        if self.wait_idle_s is None:
            return
        waited, idle, last = self._wait("waiting for an idle machine before the run", load=True)
        self.waited = {"before_s": round(waited, 1), "idle": idle}
        self.before = self._reading(last)  # the machine as the run starts, after the wait
        self.start = self.last = self._snap()

    def pause_if_loaded(self) -> float:
        """--wait-idle between cases: after a record others ran beside (its window), wait for
        them to stop; the seconds waited."""
        if self.wait_idle_s is None or self.recent is None:
            return 0.0
        if (self.recent["others_cores"] or 0.0) < self.limit:
            return 0.0
        waited, _, _ = self._wait("other processes ran beside the last case, pausing between "
                                  "cases", load=False)
        self.paused_s += waited
        self._move(self._snap())
        self.recent = None
        return waited

    def _wait(self, what: str, load: bool) -> tuple[float, bool, dict[str, Any]]:
        """Probe until idle or out of time; (seconds waited, whether it became idle, the last
        window read)."""
        t0, said = time.monotonic(), -WAIT_SAY_S
        limit = float(self.wait_idle_s or 0)
        tty = getattr(self.stream or sys.stderr, "isatty", lambda: False)()
        while True:
            w = contention.probe(WAIT_STEP_S, cpus=self.cpus)
            load1 = w["load"][0] if isinstance(w["load"], list) else 0.0
            others = w["others_cores"] or 0.0
            idle = others < self.limit and (not load or load1 < self.cores)
            spent = time.monotonic() - t0
            if idle:
                break
            if tty or spent - said >= WAIT_SAY_S:
                said = spent
                self._say(f"attnbench: {what}: load {load1:.2f} on {self.cores} cores, other "
                          f"processes use {others:.2g} cores ({spent:.0f} s of "
                          f"{limit:g} s)", tty)
            if spent >= limit:
                break
        if tty:
            self._say("", tty)
        if not idle:
            self._say(f"attnbench: still busy after {spent:.0f} s; going on (the run will be "
                      "judged on what it sees)", False)
        return spent, idle, w

    def _say(self, line: str, tty: bool) -> None:
        out = self.stream or sys.stderr
        print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n", file=out, flush=True)

    def observe(self, rec: dict[str, Any], paused_s: float = 0.0) -> None:
        """After a record: read its window, count it, and store readings on it where they moved."""
        now = self._snap()
        w = contention.window(self.last, now)
        self._move(now)
        self.recent = w
        self.counts["windows"] += 1
        loaded = (w["others_cores"] or 0.0) >= self.limit
        self.counts["under_load"] += loaded
        timing = rec.get("timing")
        if isinstance(timing, dict) and timing.get("median_ms") is not None:
            self.counts["timed"] += 1
            self.counts["noisy"] += bool(timing.get("noisy"))
        short = {"others_cores": w["others_cores"], "steal_pct": w["steal_pct"],
                 "load1": w["load"][0] if isinstance(w["load"], list) else None,
                 "under_load": loaded}
        if paused_s or self._changed(short):
            rec["contention"] = {**short, **({"paused_s": round(paused_s, 1)} if paused_s
                                             else {})}
            self.stored = short

    def _changed(self, short: dict[str, Any]) -> bool:
        s = self.stored
        return (s is None or s["under_load"] != short["under_load"]
                or abs((s["others_cores"] or 0) - (short["others_cores"] or 0)) >= CHANGE_CORES
                or abs((s["steal_pct"] or 0) - (short["steal_pct"] or 0)) >= CHANGE_STEAL)

    def finish(self, roofs: dict[str, Any], roofs_end: dict[str, Any],
               end_roof_s: float | None, during: list[dict[str, Any]] | None = None,
               executor: str = "local") -> dict[str, Any]:
        """run.json's `contention` and `busy`: the readings, the roofs and the verdict; the best
        known roof of this machine is read, then raised by this run's roofs."""
        self.kill_escaped()
        if self.adopting:
            ownership.adopt_orphans(False)
        end = self._snap()
        self._move(end)
        run = contention.window(self.start, end)
        if run.get("others_cores") is not None:  # stray: added up window by window
            run.update(self._stray_reading(run["seconds"]))
        key = roofcache.machine_key(self.meta.get("environment") or {}, self.threads)
        best = roofcache.best_known(key)
        c = {"cores": self.cores, "threads": self.threads, "before": self.before, "run": run,
             "after": self._reading({}), "records": dict(self.counts),
             "roof_start": _plain(roofs), "roof_end": _plain(roofs_end),
             "roof_during": [{**d, "roofs": _plain(d.get("roofs") or {})} for d in during or []],
             "roof_best_known": best, "machine_key": key, "executor": executor,
             "cost_s": {"readings": round(self.cost_s, 4), "end_roof": end_roof_s},
             **({"wait_idle": {**(self.waited or {}), "paused_s": round(self.paused_s, 1)}}
                if self.wait_idle_s is not None else {})}
        if self.killed:
            c["killed_escaped"] = self.killed
        verdict = busy.judge(c)
        refused = roofcache.remember(
            key, [roofs, roofs_end, *(d["roofs"] for d in c["roof_during"])],
            self.meta.get("run_id"), datetime.now(timezone.utc).isoformat())
        if refused:  # a roof no hardware here reaches: kept out of the cache, said here
            c["roof_refused"] = refused
        return {"contention": c, "busy": verdict}


def _plain(roofs: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{device: {dtype: FLOP/s}} without the reasons of unmeasured roofs."""
    return {d: {t: v for t, v in per.items() if isinstance(v, (int, float))}
            for d, per in (roofs or {}).items() if isinstance(per, dict)}


def _reap(pids: frozenset[int], within_s: float = 1.0) -> None:
    """Wait for the adopted orphans (killed, or ended by themselves) to end, at most within_s
    in all, so that none is left a zombie; one still alive then is reaped at the next call."""
    end = time.monotonic() + within_s
    for pid in sorted(pids):
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not (or no longer) this process's child
                break
            if done or time.monotonic() > end:
                break
            time.sleep(0.005)
