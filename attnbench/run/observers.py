"""Who is told of each record: the on_record callback and attnbench_record_written hooks.

Each observer gets its own deep copy, so nothing it does changes what was written or what the
run keeps; whatever it raises (SystemExit and KeyboardInterrupt included) is reported in one
line naming it, and the run goes on. Only a real SIGINT/SIGTERM delivered to the run stops it.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import Any

from attnbench.plugin.registry import Registry


class Signals:
    """Which stop signal the run really received (set by the run's signal handler)."""

    def __init__(self) -> None:
        self.received: str | None = None


class Observers:
    """The run's observers, called in turn for each written record."""

    def __init__(self, registry: Registry | None, on_record: Callable[[dict], None] | None,
                 signals: Signals):
        self.calls: list[tuple[str, Callable[[dict[str, Any]], Any]]] = []
        if on_record is not None:
            self.calls.append(("the on_record callback", on_record))
        if registry is not None:
            for impl in registry.pm.hook.attnbench_record_written.get_hookimpls()[::-1]:
                self.calls.append((f"plugin {impl.plugin_name}", _hook_call(impl)))
        self.signals = signals
        self.failures: dict[str, int] = {}

    def notify(self, rec: dict[str, Any]) -> None:
        """Give each observer a private copy of rec; report (never raise) what they raise."""
        for name, call in self.calls:
            try:
                call(copy.deepcopy(rec))
            except BaseException as exc:  # noqa: BLE001 (a plugin may raise anything)
                if self.signals.received and isinstance(exc, KeyboardInterrupt):
                    raise  # the user's Ctrl-C or a SIGTERM, raised while the observer ran
                self._report(name, exc)

    def _report(self, name: str, exc: BaseException) -> None:
        self.failures[name] = self.failures.get(name, 0) + 1
        if self.failures[name] == 1:
            text = (str(exc).splitlines() or [""])[0][:200]
            print(f"attnbench: {name} raised {type(exc).__name__}: {text} while observing a "
                  "record; ignored (later failures are counted in run.json)", file=sys.stderr)


def _hook_call(impl: Any) -> Callable[[dict[str, Any]], Any]:
    """One hook implementation as a call of the record (an impl may take no argument)."""
    takes = "record" in impl.argnames
    return lambda rec: impl.function(**({"record": rec} if takes else {}))
