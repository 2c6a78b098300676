"""Which processes are this run's own: the parent, its workers' sessions, and what they left.

A worker is a child of the run's process that leads its own session (it is started with
start_new_session) and runs attnbench's worker module. Everything in a live worker's session,
or below a live worker, is the worker's work ("legit"). The run's own processes ("all") are
the parent's process tree, every process of a session a worker of this run ever led (a
process reparented to init after its worker was killed keeps its session), and every process
once seen among them (one that later called setsid). Those that are the run's own but neither
the parent nor a live worker's are "stray": a process a plugin started in the parent, or one
left running after its worker ended. Stray work is the run's, so it is no "other process", but
it competes with the timed cases: it gets a reading of its own (measure/contention.py).

A process that leaves the tree at once (a plugin forks twice and the middle process exits, so
no snapshot ever sees it below its worker) would be init's child and no one's. With
adopt_orphans the run's process is the child subreaper of its tree: such an orphan becomes its
child instead, one it did not launch (`launched`), and the tracker counts it as escaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

WORKER_MARK = b"attnbench.worker"  # in a worker's command line (python -m attnbench.worker...)
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
_LAUNCHED: set[int] = set()  # pids of the workers this process started (worker/parent.py)


def launched(pid: int) -> None:
    """Note a worker this process started: under adopt_orphans, any other child it gains is
    an orphan of a worker's (a double fork), not a process of its own."""
    _LAUNCHED.add(pid)


def adopt_orphans(on: bool = True) -> bool:
    """Make this process the child subreaper of its tree (prctl, Linux): a process orphaned
    below it becomes its child, not init's. Whether the kernel agreed (False elsewhere)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        return bool(prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Proc(Protocol):
    """What ownership needs of a process (contention.ProcInfo has it)."""

    ppid: int
    session: int
    group: int
    state: str
    start: int
    ticks: int
    child_ticks: int


@dataclass(frozen=True)
class Ours:
    """The run's own processes at one instant."""

    all: frozenset[int]  # every process of this run (left out of others' CPU)
    legit: frozenset[int]  # the parent, and the live workers with their sessions and children
    stray: frozenset[int]  # the run's, but neither: a plugin's process, a leftover
    # once below a worker (its tree or session), now outside every live worker's process
    # group: a worker's pause (SIGSTOP to its group) does not reach it (setsid, setpgid); and,
    # adopting, a child of the run's process it did not launch (zombies left out)
    escaped: frozenset[int] = frozenset()
    adopted: frozenset[int] = frozenset()  # adopting: those children, zombies included


def is_worker(root: Path, pid: int) -> bool:
    """Whether a process runs attnbench's worker module (its /proc/<pid>/cmdline says so)."""
    try:
        return WORKER_MARK in (root / "proc" / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False


def descendants(procs: dict[int, Proc], tops: set[int] | frozenset[int]) -> frozenset[int]:
    """tops and every process below them in the parent tree."""
    children: dict[int, list[int]] = {}
    for pid, info in procs.items():
        children.setdefault(info.ppid, []).append(pid)
    out, todo = set(tops), list(tops)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return frozenset(out)


@dataclass
class Tracker:
    """What a run knows of its own processes from one snapshot to the next."""

    sessions: set[int] = field(default_factory=set)  # sessions its workers led
    known: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # pid: start, cpu, ppid
    lost: float = 0.0  # CPU ticks of its processes that ended with no parent of the run's
    below: dict[int, int] = field(default_factory=dict)  # pid: start, once below a worker
    # adopt_orphans is on: the run's children it did not launch are orphans of its workers',
    # except those already there when it began (pid: start), a library caller's own
    adopting: bool = False
    before: dict[int, int] = field(default_factory=dict)

    def adopt(self, procs: dict[int, Proc], me: int) -> None:
        """Count orphans the run's process adopts from now on (its children now are not)."""
        self.adopting = True
        self.before = {p: info.start for p, info in procs.items() if info.ppid == me}

    def classify(self, procs: dict[int, Proc], me: int, root: Path) -> Ours:
        """The run's own processes now; remembers them (and their CPU) for the next call."""
        tree = descendants(procs, {me})
        listed = [p for p in tree if p in procs]
        workers = {p for p in listed if p != me and procs[p].ppid == me
                   and procs[p].session == p and is_worker(root, p)
                   and (p in _LAUNCHED or not self.adopting)}
        adopted = frozenset(p for p in listed if self.adopting and p != me
                            and procs[p].ppid == me and p not in _LAUNCHED
                            and self.before.get(p) != procs[p].start)
        self.sessions |= workers
        seen = {p for p, (start, _, _) in self.known.items()
                if p in procs and procs[p].start == start}
        every = tree | seen | {p for p, info in procs.items() if info.session in self.sessions}
        legit = descendants(procs, workers) | {
            p for p in every if p in procs and procs[p].session in workers} | {me}
        self._account_lost(procs, every, me)
        escaped = self._escaped(procs, every, workers, me) | {
            p for p in adopted if procs[p].state != "Z"}
        self.known = {p: (procs[p].start, procs[p].ticks + procs[p].child_ticks, procs[p].ppid)
                      for p in every if p != me and p in procs}
        self.sessions = {s for s in self.sessions if s in workers
                         or any(procs[p].session == s for p in every if p in procs)}
        return Ours(frozenset(every), frozenset(legit), frozenset(every - legit), escaped,
                    adopted)

    def _escaped(self, procs: dict[int, Proc], every: set[int] | frozenset[int],
                 workers: set[int], me: int) -> frozenset[int]:
        """The processes once below a worker (remembered) now outside every live worker's
        process group, zombies left out."""
        under = descendants(procs, workers) | {p for p in every if p in procs
                                               and procs[p].session in self.sessions}
        self.below = {p: s for p, s in self.below.items() if p in procs and procs[p].start == s}
        self.below.update({p: procs[p].start for p in under if p in procs})
        return frozenset(p for p in self.below if p != me and procs[p].state != "Z"
                         and procs[p].group not in workers)

    def _account_lost(self, procs: dict[int, Proc], every: set[int] | frozenset[int],
                      me: int) -> None:
        """A process of the run's that ended, whose parent was neither this process nor one
        of the run's still alive, was reaped by init: its CPU would vanish from the run's
        total (and show up as others'), so it is kept in `lost`."""
        for pid, (start, cpu, ppid) in self.known.items():
            alive = pid in procs and procs[pid].start == start
            if not alive and ppid != me and ppid not in every:
                self.lost += cpu
