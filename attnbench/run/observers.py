"""Who is told of each record: the on_record callback and attnbench_record_written hooks.

Plugins' hooks run in an observer process of their own (a worker with the role "observer",
started only when some plugin implements the hook), never in the run's process, so a hook can
neither rewrite what is written nor leave a thread that keeps the run from ending: the process
is killed, with everything it started, when the run closes. Each record reaches it as a copy;
a hook that raises is reported in one line naming it, and the run goes on; one that does not
return within the run's time limit gets its process killed and no more records. The on_record
callback (the Python API's caller's own code) runs in this process, on its own deep copy.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

OBSERVER_START_S = 120.0


class Signals:
    """Which stop signal the run really received (set by the run's signal handler)."""

    def __init__(self) -> None:
        self.received: str | None = None


class Observers:
    """The run's observers, told in turn of each written record."""

    def __init__(self, catalog: Any, on_record: Callable[[dict], None] | None,
                 signals: Signals, log_dir: Path | None = None, timeout_s: float = 60.0):
        self.on_record, self.signals = on_record, signals
        self.failures: dict[str, int] = {}
        self.timeout_s = timeout_s
        self.process: Any = None
        if catalog is not None and catalog.observers and log_dir is not None:
            from attnbench.worker.parent import WorkerProcess

            hello = {"role": "observer", "plugins": list(catalog.plugin_specs),
                     "autoload": catalog.autoload, "run_limit": timeout_s}
            self.process = WorkerProcess(hello, log_dir / "observers.log")

    def notify(self, rec: dict[str, Any]) -> None:
        """Give each observer a private copy of rec; report (never raise) what they raise."""
        if self.on_record is not None:
            try:
                self.on_record(copy.deepcopy(rec))
            except BaseException as exc:  # noqa: BLE001 (the caller's code may raise anything)
                if self.signals.received and isinstance(exc, KeyboardInterrupt):
                    raise  # the user's Ctrl-C or a SIGTERM, raised while the callback ran
                self._report("the on_record callback", type(exc).__name__, str(exc))
        if self.process is not None:
            self._tell_process(rec)

    def _tell_process(self, rec: dict[str, Any]) -> None:
        from attnbench.worker.parent import WorkerDied, WorkerTimeout

        try:
            if not self.process.started:
                self.process.start(min(OBSERVER_START_S, self.timeout_s))
            self.process.resume()
            reply = self.process.request({"observe": rec}, self.timeout_s).data
            self.process.pause()  # a thread a hook left running takes no CPU from the cases
        except (WorkerDied, WorkerTimeout) as exc:
            self._report("the plugins' observer process", type(exc).__name__, str(exc))
            self.close()
            self.process = None  # no more records to it: it failed or hung once
            return
        for name, kind, text in reply.get("failures") or []:
            self._report(f"plugin {name}", str(kind), str(text))

    def close(self) -> None:
        """Stop the observer process and whatever it started."""
        if self.process is not None:
            self.process.stop()

    def _report(self, name: str, kind: str, text: str) -> None:
        self.failures[name] = self.failures.get(name, 0) + 1
        if self.failures[name] == 1:
            first = (text.splitlines() or [""])[0][:200]
            print(f"attnbench: {name} raised {kind}: {first} while observing a record; "
                  "ignored (later failures are counted in run.json)", file=sys.stderr)
