"""Whether a backend hands its first output back on a later call: cached work, not computed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attnbench.case import Case
from attnbench.plugin.outputs import main_output
from attnbench.worker.shipping import Report


class OutputWatch:
    """Weak references to a first call's output and to the array owning its memory.

    Weak, so the first output is freed before the next call (as it would be in use): then
    the next call can only return the same object or memory if the backend kept it.
    """

    def __init__(self, out: Any, case: Case | None = None):
        self.out, self.owner = _weak(out), _weak(_owner(out))
        self.case = case  # with lse = true, a call's output is the first of (out, lse)

    def reused_by(self, again: Any) -> bool:
        """True when again is the first output, or shares memory its backend kept alive."""
        first = self.out() if self.out else None
        if first is not None and again is first:
            return True
        owner = self.owner() if self.owner else None
        return owner is not None and _shares_memory(again, owner)


def _weak(x: Any) -> Any:
    import weakref

    try:
        return weakref.ref(x)
    except TypeError:  # not weak-referenceable (a list, None): not checked
        return None


def _owner(x: Any) -> Any:
    """The array that owns x's memory: NumPy's base chain, torch's _base."""
    import numpy as np

    if isinstance(x, np.ndarray):
        while isinstance(x.base, np.ndarray):
            x = x.base
        return x
    base = getattr(x, "_base", None)  # a torch view's base tensor
    return x if base is None else base


def _shares_memory(a: Any, b: Any) -> bool:
    import numpy as np

    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.may_share_memory(a, b))
    try:
        return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())
    except (AttributeError, RuntimeError, TypeError):
        return False


def flag_reused(rep: Report, watch: OutputWatch, timed: Callable[[], Any]) -> Any:
    """Call once more: the first output (or its memory) back means the work may be cached."""
    again = timed()
    if watch.reused_by(again if watch.case is None else main_output(again, watch.case)):
        rep.data.setdefault("flags", []).append("reused_output")
        rep.data.setdefault("notes", []).append(
            "the callable returned the same output object (or memory) on two calls: it may "
            "return cached work instead of computing; its time is recorded as measured")
    return again
