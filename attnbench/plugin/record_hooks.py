"""Calling the plugins' attnbench_record_written hooks, in the observer process (run/observers.py
starts it and tells it of each record)."""

from __future__ import annotations

import copy
from typing import Any


def call_hooks(registry: Any, rec: dict[str, Any]) -> list[list[str]]:
    """In the observer process: every attnbench_record_written hook, each on its own copy;
    [plugin, exception type, message] for each that raised."""
    failed = []
    for impl in registry.pm.hook.attnbench_record_written.get_hookimpls()[::-1]:
        takes = "record" in impl.argnames
        try:
            impl.function(**({"record": copy.deepcopy(rec)} if takes else {}))
        except BaseException as exc:  # noqa: BLE001 (a plugin may raise anything)
            failed.append([impl.plugin_name, type(exc).__name__, str(exc)[:300]])
    return failed
