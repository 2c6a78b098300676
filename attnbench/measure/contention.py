"""Contention readings: load, steal, iowait, other processes' CPU, CPU clocks, GPU neighbours.

Every reading is a cheap read of /proc and /sys (about 1 ms for a few hundred processes), so
one can be taken around each record without disturbing its timing. `Snapshot` is the state at
one instant; `window(a, b)` turns two snapshots into rates over the time between them.

"Other processes' CPU" is what the kernel counted as busy CPU time (/proc/stat: user, nice,
system, irq, softirq) minus what this run's own processes used (measure/ownership.py: this
process, its workers' sessions and what they left, live from /proc/<pid>/stat, and its reaped
children from os.times()). It sees processes of other containers on the same kernel too, which
a walk over /proc/<pid> cannot. The run's own CPU outside its workers gets readings of its own:
`parent_cores` (this process, less its own work between timed calls: own_work) and
`stray_cores` (a process a plugin started here, or one left running after its worker ended).
The GPU side (nvidia-smi, measure/gpu_neighbours.py) is read only when a run uses CUDA; where
something cannot be read, the reading says "unmeasured: why" instead of a number.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.measure.gpu_neighbours import gpu_reading, smi  # noqa: F401 (the readings' API)
from attnbench.measure.ownership import Tracker

BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq")  # guest time is inside user
STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
TOP_OTHERS = 3  # the busiest other processes a window names


@dataclass
class ProcInfo:
    """One process as /proc/<pid>/stat shows it: name, parent, own and reaped children's ticks."""

    name: str
    ppid: int
    ticks: int  # utime + stime
    child_ticks: int  # cutime + cstime (children it has reaped)
    start: int  # starttime: tells a reused pid apart
    session: int = 0  # the session id (a worker leads its own)
    group: int = 0  # the process group id (a worker's pause stops its group)
    state: str = ""  # R, S, T, Z (a zombie: ended, not yet reaped)


@dataclass
class Snapshot:
    """The machine at one instant: /proc/stat totals, load, every process's CPU ticks."""

    t: float
    cpu: dict[str, int]
    ncpu: int
    load: tuple[float, float, float] | None
    procs: dict[int, ProcInfo] = field(default_factory=dict)
    own_ticks: float = 0.0  # CPU ticks this run's processes have used since it began
    own: frozenset[int] = frozenset()  # every process of this run
    self_ticks: float = 0.0  # CPU ticks of this process alone (its threads: plugin code too)
    legit: frozenset[int] = frozenset()  # this process and its live workers' sessions
    stray: frozenset[int] = frozenset()  # the run's, outside both (ownership.py)


def clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100


def run_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on (taskset, cpuset), None where the OS does not say."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def read_cpu(root: Path, cpus: frozenset[int] | None = None) -> tuple[dict[str, int], int]:
    """The `cpu` line of /proc/stat as named tick counts (with cpus: the sum of those CPUs'
    lines only, the ones this run can use), and the number of CPUs counted."""
    cpu: dict[str, int] = {}
    mine: dict[str, int] = {}
    ncpu = nmine = 0
    try:
        text = (root / "proc/stat").read_text()
    except OSError:  # not Linux: no CPU times (window() then says unmeasured)
        return cpu, os.cpu_count() or 1
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            ticks = {name: int(v) for name, v in zip(STAT_FIELDS, parts[1:], strict=False)}
        except ValueError:  # a line this parser does not know: skip it, never crash a run
            continue
        if parts[0] == "cpu":
            cpu = ticks
        elif parts[0].startswith("cpu") and parts[0][3:].isdigit():
            ncpu += 1
            if cpus is not None and int(parts[0][3:]) in cpus:
                nmine += 1
                for k, v in ticks.items():
                    mine[k] = mine.get(k, 0) + v
    if cpus is not None and nmine:
        return mine, nmine
    return cpu, ncpu or (os.cpu_count() or 1)


def read_load(root: Path) -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages, or None where /proc/loadavg cannot be read."""
    try:
        parts = (root / "proc/loadavg").read_text().split()
        return float(parts[0]), float(parts[1]), float(parts[2])
    except (OSError, ValueError, IndexError):
        return None


def parse_stat(text: str) -> ProcInfo | None:
    """One /proc/<pid>/stat line; the name sits in parentheses and may hold spaces."""
    close = text.rfind(")")
    if close < 0:
        return None
    name = text[text.find("(") + 1:close]
    f = text[close + 2:].split()  # f[0] is field 3 (state)
    try:
        return ProcInfo(name, int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]),
                        int(f[19]), int(f[3]), int(f[2]), f[0])
    except (IndexError, ValueError):
        return None


def read_procs(root: Path) -> dict[int, ProcInfo]:
    """Every process /proc lists (those that vanish while read are skipped)."""
    out: dict[int, ProcInfo] = {}
    try:
        names = os.listdir(root / "proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            info = parse_stat((root / "proc" / name / "stat").read_text())
        except OSError:
            continue
        if info is not None:
            out[int(name)] = info
    return out


def own_reaped_ticks() -> float:
    """CPU ticks of this process and of the children it has reaped (os.times)."""
    t = os.times()
    return (t.user + t.system + t.children_user + t.children_system) * clock_ticks()


_OWN_WORK = [0.0]  # CPU ticks this process spent in own_work() sections so far


@contextmanager
def own_work() -> Iterator[None]:
    """Mark this process's own work between timed calls (a case's inputs and oracle, the
    verdicts): its CPU, on however many threads, is not counted in parent_cores, which reads
    what competed with the workers while they timed."""
    t0 = _self_ticks()
    try:
        yield
    finally:
        _OWN_WORK[0] += _self_ticks() - t0


def own_self_ticks() -> float:
    """CPU ticks of this process alone, every thread of it (os.times), less its own work
    between timed calls (own_work)."""
    return _self_ticks() - _OWN_WORK[0]


def _self_ticks() -> float:
    t = os.times()
    return (t.user + t.system) * clock_ticks()


def snapshot(root: Path | str = "/", me: int | None = None, reaped: float | None = None,
             cpus: frozenset[int] | None = None, tracker: Tracker | None = None) -> Snapshot:
    """Read the machine now. root is "/" except in tests (a fake /proc tree); me is the top of
    this run's process tree (default this process); reaped its own and reaped children's ticks
    (default os.times()); cpus the CPUs whose time counts (default all); tracker what the run
    knows of its processes from earlier snapshots (default: nothing yet)."""
    root = Path(root)
    me = os.getpid() if me is None else me
    cpu, ncpu = read_cpu(root, cpus)
    t = time.monotonic()  # when the CPU times were read (the walk of /proc below takes a while)
    procs = read_procs(root)
    tracker = tracker if tracker is not None else Tracker()
    ours = tracker.classify(procs, me, root)
    live = sum(procs[p].ticks + procs[p].child_ticks for p in ours.all if p != me)
    base = own_reaped_ticks() if reaped is None else reaped
    mine = own_self_ticks() if reaped is None else 0.0
    return Snapshot(t, cpu, ncpu, read_load(root), procs,
                    base + live + tracker.lost, ours.all, mine, ours.legit, ours.stray)


def window(a: Snapshot, b: Snapshot, hz: int | None = None) -> dict[str, Any]:
    """Rates between two snapshots: others' CPU in cores, steal and iowait in % of CPU time."""
    hz = hz or clock_ticks()
    seconds = max(b.t - a.t, 1e-6)
    if not (a.cpu and b.cpu):
        why = "unmeasured: /proc/stat cannot be read"
        return {"seconds": round(seconds, 3), "cores": b.ncpu, "load": why,
                "others_cores": None, "steal_pct": None, "iowait_pct": None}
    total = sum(b.cpu.get(k, 0) - a.cpu.get(k, 0) for k in STAT_FIELDS) or 1
    busy = sum(b.cpu.get(k, 0) - a.cpu.get(k, 0) for k in BUSY_FIELDS)
    others = max(0.0, busy - (b.own_ticks - a.own_ticks)) / hz / seconds
    stray = stray_ticks(a, b)
    out: dict[str, Any] = {
        "seconds": round(seconds, 3), "cores": b.ncpu,
        "load": list(b.load) if b.load else "unmeasured: /proc/loadavg cannot be read",
        "others_cores": round(others, 3),
        "parent_cores": round((b.self_ticks - a.self_ticks) / hz / seconds, 3),
        "stray_cores": round(sum(used for _, _, used in stray) / hz / seconds, 3),
        "steal_pct": round(100 * (b.cpu.get("steal", 0) - a.cpu.get("steal", 0)) / total, 2),
        "iowait_pct": round(100 * (b.cpu.get("iowait", 0) - a.cpu.get("iowait", 0)) / total, 2),
    }
    top = busiest_others(a, b, hz, seconds)
    if top:
        out["top_others"] = top
    named = [{"pid": pid, "name": name[:40], "cores": round(used / hz / seconds, 2)}
             for pid, name, used in sorted(stray, key=lambda x: -x[2])
             if used / hz / seconds >= 0.05]
    if named:
        out["top_stray"] = named[:TOP_OTHERS]
    return out


def stray_ticks(a: Snapshot, b: Snapshot) -> list[tuple[int, str, float]]:
    """(pid, name, CPU ticks in the window) of each process stray at the window's end."""
    out = []
    for pid in b.stray:
        p, before = b.procs[pid], a.procs.get(pid)
        used = p.ticks + p.child_ticks
        if before is not None and before.start == p.start:
            used -= before.ticks + before.child_ticks
        out.append((pid, p.name, float(max(used, 0))))
    return out


def busiest_others(a: Snapshot, b: Snapshot, hz: int, seconds: float) -> list[dict[str, Any]]:
    """The other processes visible here, read at both ends of the window, that used the most
    CPU in it (at least 0.05 core)."""
    rows = []
    for pid, p in b.procs.items():
        before = a.procs.get(pid)
        if pid in b.own or before is None or before.start != p.start:
            continue
        cores = (p.ticks - before.ticks) / hz / seconds
        if cores >= 0.05:
            rows.append({"pid": pid, "name": p.name[:40], "cores": round(cores, 2)})
    return sorted(rows, key=lambda r: -r["cores"])[:TOP_OTHERS]


def probe(seconds: float = 0.25, root: Path | str = "/",
          cpus: frozenset[int] | None = None) -> dict[str, Any]:
    """A window of `seconds` from now (the run sleeps meanwhile): what others do right now."""
    tracker = Tracker()
    a = snapshot(root, cpus=cpus, tracker=tracker)
    time.sleep(seconds)
    return window(a, snapshot(root, cpus=cpus, tracker=tracker))


def cpu_freq(root: Path | str = "/") -> dict[str, Any] | str:
    """Current CPU clocks in MHz (min, mean, max over CPUs) from cpufreq, where it is readable."""
    base = Path(root) / "sys/devices/system/cpu"
    mhz = []
    for f in sorted(base.glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        try:
            mhz.append(int(f.read_text().strip()) / 1000)
        except (OSError, ValueError):
            continue
    if not mhz:
        return "unmeasured: no readable cpufreq in /sys (virtual machines usually hide it)"
    maxes = []
    for f in sorted(base.glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq")):
        try:
            maxes.append(int(f.read_text().strip()) / 1000)
        except (OSError, ValueError):
            continue
    out: dict[str, Any] = {"min_mhz": min(mhz), "mean_mhz": round(sum(mhz) / len(mhz), 1),
                           "max_mhz": max(mhz)}
    if maxes:
        out["rated_max_mhz"] = max(maxes)
    return out
