"""Thread settings: set torch, numba and BLAS threads explicitly and report what was set."""

from __future__ import annotations

import os
from typing import Any


def available_cores() -> int:
    """Cores this process may run on (affinity-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> dict[str, Any]:
    """Set every known thread pool to n (None: all cores); return what each now reports.

    Libraries that are not installed are reported as None rather than imported by force.
    """
    want = n if n is not None else available_cores()
    if want < 1:
        raise ValueError(f"threads must be >= 1, got {want}")
    return {"requested": n, "threads": want, "cores": available_cores(),
            "torch": _torch(want), "numba": _numba(want), "blas": _blas(want)}


def _torch(n: int) -> int | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(n)
    return int(torch.get_num_threads())


def _numba(n: int) -> int | None:
    try:
        import numba
    except ImportError:
        return None
    n = min(n, int(numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return int(numba.get_num_threads())


def _blas(n: int) -> list[dict[str, Any]] | None:
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return None
    threadpool_limits(limits=n)
    return [{"api": p.get("internal_api"), "lib": os.path.basename(p.get("filepath", "")),
             "threads": p.get("num_threads")} for p in threadpool_info()]

