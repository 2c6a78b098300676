"""Thread settings: set torch, numba and BLAS threads explicitly and report what was set."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

# Read by torch (OpenMP, MKL) and numba when they are first imported: a library this process
# has not imported yet (a NumPy backend's worker never imports torch) gets the count from these
# rather than being imported by force (about 1.5 s of CPU for torch).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (affinity-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> dict[str, Any]:
    """Set every known thread pool to n (None: all cores); return what each now reports.

    Libraries that are not installed are reported as None; one installed but not imported yet is
    not imported by force: it is set through THREAD_ENV when it is, reported as n and named
    under "on_import".
    """
    want = n if n is not None else available_cores()
    if want < 1:
        raise ValueError(f"threads must be >= 1, got {want}")
    for var in THREAD_ENV:
        os.environ[var] = str(want)
    later = [m for m in ("torch", "numba")
             if m not in sys.modules and importlib.util.find_spec(m) is not None]
    return {"requested": n, "threads": want, "cores": available_cores(),
            "torch": want if "torch" in later else _torch(want),
            "numba": want if "numba" in later else _numba(want), "blas": _blas(want),
            "on_import": later}


def _torch(n: int) -> int | None:
    if "torch" not in sys.modules:
        return None  # not installed (set_threads checked)
    import torch

    torch.set_num_threads(n)
    return int(torch.get_num_threads())


def _numba(n: int) -> int | None:
    if "numba" not in sys.modules:
        return None
    import numba

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

