"""Progress of a sweep: a rich bar on a terminal, one plain line a record otherwise (CI, logs)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from attnbench.record import Status
from attnbench.sanitize import plain, rich_text

QUIET = (Status.OK, Status.UNSUPPORTED)  # statuses a plain line shows without their error


def record_line(done: int, total: int, rec: dict[str, Any]) -> str:
    """`[3/12] b1-h8:8-q256-... numpy-naive: ok 1.234 ms` for one record."""
    med = (rec.get("timing") or {}).get("median_ms")
    tail = f" {med:.3f} ms" if isinstance(med, (int, float)) else ""
    if rec.get("status") not in QUIET and rec.get("error"):
        tail += f" ({plain(str(rec['error']).strip().splitlines()[0])[:120]})"
    head = plain(f"{rec.get('case_id')} {rec.get('backend')}: {rec.get('status')}")
    return f"[{done}/{total}] {head}{tail}"


def cluster_line(running: dict[str, int], queued: str = "queued") -> str:
    """`cluster: 3 tasks running (host:1a2b3c 2, host:4d5e6f 1), 4 queued`."""
    waiting = running.get(queued, 0)
    nodes = {n: k for n, k in sorted(running.items()) if n != queued}
    total = sum(nodes.values())
    line = f"cluster: {total} task{'s' * (total != 1)} running"
    line += f" ({', '.join(f'{plain(n)} {k}' for n, k in nodes.items())})" if nodes else ""
    return line + (f", {waiting} queued" if waiting else "")


class Progress:
    """Plain progress: one line per finished record on a stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream
        self.total = self.done = 0

    @contextmanager
    def running(self, total: int, done: int = 0) -> Iterator[Progress]:
        """Around the sweep: total records of the plan, done of them already (resume)."""
        self.total, self.done = total, done
        if done:
            self._print(f"resuming: {done}/{total} records already done")
        yield self

    def starting(self, case_id: str, backend: str) -> None:
        """A (case, backend) is about to run."""

    def advance(self, rec: dict[str, Any]) -> None:
        """A record was written."""
        self.done += 1
        self._print(record_line(self.done, self.total, rec))

    def cluster(self, running: dict[str, int]) -> None:
        """Tasks now running on each node of a cluster (executor ray); said when it changes."""
        line = cluster_line(running)
        if line != getattr(self, "_cluster", None):
            self._cluster = line
            self._print(line)

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)


class RichProgress(Progress):
    """A rich bar: current case and backend, done/total, elapsed and ETA; failures printed above."""

    @contextmanager
    def running(self, total: int, done: int = 0) -> Iterator[Progress]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self.total, self.done = total, done
        self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                       console=Console(file=self.stream or sys.stderr), transient=False)
        self.task = self.bar.add_task("starting", total=total, completed=done)
        with self.bar:
            yield self

    def starting(self, case_id: str, backend: str) -> None:
        self.bar.update(self.task,
                        description=f"{rich_text(case_id)} [bold]{rich_text(backend)}[/]")

    def _print(self, line: str) -> None:
        self.bar.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def advance(self, rec: dict[str, Any]) -> None:
        self.done += 1
        self.bar.update(self.task, advance=1)
        if rec.get("status") not in QUIET:
            line = record_line(self.done, self.total, rec)
            self.bar.console.print(line, markup=False, highlight=False, soft_wrap=True)


def auto_progress(stream: TextIO | None = None) -> Progress:
    """The rich bar when the stream (stderr) is a terminal, plain lines otherwise."""
    s = stream or sys.stderr
    return RichProgress(stream) if getattr(s, "isatty", lambda: False)() else Progress(stream)
