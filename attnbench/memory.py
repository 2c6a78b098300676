"""Peak memory of one call beyond what the process already holds (CPU: VmHWM, CUDA: allocator)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import resource
import sys
from collections.abc import Callable
from typing import Any

STATUS = "/proc/self/status"
CLEAR_REFS = "/proc/self/clear_refs"


def read_status(path: str = STATUS) -> dict[str, int]:
    """VmRSS, VmHWM and the other Vm* fields of /proc/self/status, in bytes."""
    out: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if key.startswith("Vm") and len(parts) == 2 and parts[1] == "kB":
                out[key] = int(parts[0]) * 1024
    return out


def release_free_heap() -> None:
    """Return freed heap pages to the OS (glibc malloc_trim), so RSS is what is live.

    Without it, pages the allocator kept from earlier calls would be reused by the measured
    call without raising the high-water mark, and the peak would be under-reported.
    """
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _libc() -> Any:
    """glibc with malloc_trim, looked up once per process (find_library spawns a subprocess)."""
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def cpu_peak(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run fn once; peak resident bytes it added over the process's resident set before it."""
    release_free_heap()
    try:
        with open(CLEAR_REFS, "w") as f:
            f.write("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)
        base = read_status()["VmRSS"]
    except (OSError, KeyError):
        return _ru_maxrss_peak(fn)
    out = fn()
    hwm = read_status()["VmHWM"]
    del out
    return {"peak_bytes": max(0, hwm - base), "base_bytes": base,
            "method": "VmHWM - VmRSS after clear_refs"}


def _ru_maxrss_peak(fn: Callable[[], Any]) -> dict[str, Any]:
    """Fallback: the growth of the process's lifetime maximum RSS; a lower bound."""
    unit = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    out = fn()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    del out
    return {"peak_bytes": max(0, after - before), "base_bytes": before,
            "method": "ru_maxrss growth (fallback; lower bound, not reset between cases)"}


def cuda_peak(fn: Callable[[], Any]) -> dict[str, Any]:
    """Allocator peak over the allocated baseline during one call (synchronized)."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return {"peak_bytes": int(max(0, peak)), "base_bytes": int(base),
            "method": "torch.cuda.max_memory_allocated - memory_allocated"}


def peak(fn: Callable[[], Any], device: str) -> dict[str, Any]:
    """Peak memory of one untimed call of fn on the device."""
    return cuda_peak(fn) if device == "cuda" else cpu_peak(fn)
