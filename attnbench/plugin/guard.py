"""Calls into plugin code under a time limit, exceptions as data (catalog and observer processes).

A plugin's method runs in a daemon thread; the caller waits at most the limit. An exception
(SystemExit included) or an overrun comes back as a one-line failure naming the method, and a
backend that overran once is not called again (its thread may still be stuck): later calls fail
at once with the first failure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attnbench.plugin.probes import first_line

DEFAULT_LIMIT_S = 60.0  # imports of torch or flash-attn in availability() can take a while
LIMIT_ENV = "ATTNBENCH_PLUGIN_CALL_TIMEOUT"
_hung: dict[int, str] = {}  # id(plugin object) -> the failure of the call that overran


@dataclass
class Outcome:
    """What a guarded call gave: its value, or why there is none."""

    value: Any = None
    failure: str | None = None
    error: BaseException | None = None  # the exception the call raised, when it raised

    @property
    def ok(self) -> bool:
        return self.failure is None


_run_limit: list[float] = []  # the run's --timeout, once the command line has set it


def set_run_limit(seconds: float | None) -> None:
    """Make a run's --timeout the limit of every later parent-side plugin call."""
    _run_limit[:] = [seconds] if seconds else []


def default_limit() -> float:
    """The limit of a parent-side plugin call: the run's --timeout when set, else
    $ATTNBENCH_PLUGIN_CALL_TIMEOUT seconds, else 60."""
    if _run_limit:
        return _run_limit[0]
    try:
        value = float(os.environ.get(LIMIT_ENV, "") or DEFAULT_LIMIT_S)
    except ValueError:
        return DEFAULT_LIMIT_S
    return value if value > 0 else DEFAULT_LIMIT_S


def call(what: str, fn: Callable[..., Any], *args: Any, limit: float | None = None,
         owner: Any = None) -> Outcome:
    """fn(*args) under a time limit; `what` names it in the failure ("unsupported()").

    owner: the plugin object the call belongs to; once one of its calls overran, the others
    are not made.
    """
    if owner is not None and id(owner) in _hung:
        return Outcome(failure=f"{what} not called: {_hung[id(owner)]}")
    limit = default_limit() if limit is None else limit
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # a plugin may raise anything, SystemExit included
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"attnbench-guard {what}", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        failure = f"{what} did not return within {limit:g} s"
        if owner is not None:
            _hung[id(owner)] = failure
        return Outcome(failure=failure)
    if "error" in box:
        exc = box["error"]
        return Outcome(failure=f"{what} raised {type(exc).__name__}: {first_line(exc)}",
                       error=exc)
    return Outcome(box.get("value"))


def reasons(what: str, fn: Callable[..., Any], *args: Any, limit: float | None = None,
            owner: Any = None) -> Outcome:
    """A guarded call that must return a list of reason strings (availability, unsupported)."""
    out = call(what, fn, *args, limit=limit, owner=owner)
    if out.ok and (not isinstance(out.value, (list, tuple))
                   or not all(isinstance(r, str) for r in out.value)):
        return Outcome(failure=f"{what} returned {type(out.value).__name__}, "
                               "not a list of strings")
    return Outcome([str(r) for r in out.value]) if out.ok else out


def availability(backend: Any, limit: float | None = None) -> list[str]:
    """backend.availability() guarded: its reasons, or its failure as the one reason."""
    out = reasons("availability()", backend.availability, limit=limit, owner=backend)
    return out.value if out.ok else [str(out.failure)]


def device_reasons(backend: Any, device: str, limit: float | None = None) -> list[str]:
    """backend.device_reasons(device) guarded: its reasons, or its failure as the one reason."""
    out = reasons("device_reasons()", backend.device_reasons, device, limit=limit, owner=backend)
    return out.value if out.ok else [str(out.failure)]
