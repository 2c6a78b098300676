"""Memory: the peak of one call (CPU: VmHWM, CUDA: allocator) and what the harness must hold.

`check_fits` refuses, before anything runs, a case whose own inputs and oracle (what the
harness allocates, not the backend) cannot fit: that is the case's fault, not a backend's oom.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import resource
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from attnbench import variants
from attnbench.case import Case
from attnbench.errors import UsageError
from attnbench.verify.grad_baseline import BASELINE_BLOCK_ENTRIES
from attnbench.verify.grad_oracle import GRAD_BLOCK_ENTRIES
from attnbench.verify.inputs import ELEM_BYTES
from attnbench.verify.layouts import pool_pages
from attnbench.verify.reference import BLOCK_ENTRIES, rows_in_budget
from attnbench.verify.rounding import MODEL_THREADS
from attnbench.verify.roundoff import MODEL_BLOCK_ENTRIES

STATUS = "/proc/self/status"
CLEAR_REFS = "/proc/self/clear_refs"
MEMINFO = "/proc/meminfo"


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


def harness_bytes(case: Case) -> dict[str, int]:
    """Bytes the harness itself holds for a case, by where they live ("host", "device").

    float64 q, k, v (and dO, and a bias), the backend's copy in the case dtype, the oracle's
    rows and rounding model with the float64 copy of the compared output, the model's block
    workspace and, with gradients, the gradient oracle's and baseline's blocks and the compared
    gradients. A packed layout holds one more float64 copy of q, k and v (the pristine values
    in that layout); a paged one its page pools twice (the values of the spare slots, the
    pristine pools), sized by page_size, not seq_kv, with the pool's free pages.
    """
    b, d, dv, group = case.batch, case.head_dim, case.dv, case.heads_q // case.heads_kv
    q = b * case.heads_q * case.seq_q * d
    kv = b * case.heads_kv * case.seq_kv * (d + dv)
    bias = int(np.prod(variants.bias_shape(case))) if case.bias != "none" else 0
    elems = q + kv + bias + (q if case.mode != "fwd" else 0)
    if case.layout == "packed":
        elems += q + kv  # the layout's pristine copy
    elif case.layout == "paged":  # the pool's spare-slot values and its pristine copy: the
        pool = pool_pages(case) * case.page_size  # pool has page_size slots per page, even
        elems += q + 2 * case.heads_kv * pool * (d + dv)  # past seq_kv, and free pages
    # the oracle and its rounding model (ref, det, sigma, temp), the copy, 2 temporaries
    compared = 7 * 8 * b * case.heads_q * rows_in_budget(case) * dv
    # the model's blocks: ~12 score-sized arrays of MODEL_BLOCK_ENTRIES (or of one row when
    # larger) each, up to MODEL_THREADS of them at once, never more than the case's scores
    block = max(MODEL_BLOCK_ENTRIES, group * case.seq_kv)
    scores = b * case.heads_q * rows_in_budget(case) * case.seq_kv
    workspace = 8 * max(4 * BLOCK_ENTRIES, 12 * min(scores, MODEL_THREADS * block))
    if case.mode != "fwd":  # the gradient oracle's and baseline's blocks; the backend's
        # gradients as NumPy with the oracle and floor on their compared rows (at most 3 copies)
        workspace += 12 * 8 * max(GRAD_BLOCK_ENTRIES, group * case.seq_kv)
        workspace += 6 * 8 * max(BASELINE_BLOCK_ENTRIES, group * case.seq_kv)
        workspace += 3 * 8 * (q + kv)
    host = 8 * elems + compared + workspace
    framework = ELEM_BYTES[case.dtype] * elems
    if case.device == "cuda":
        return {"host": host, "device": framework}
    return {"host": host + framework, "device": 0}


def available_bytes(device: str) -> dict[str, int | None]:
    """Memory free now: host MemAvailable (/proc/meminfo) and, for CUDA, the device's free
    memory when torch can tell; None where it cannot be read."""
    host = None
    try:
        with open(MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    dev = None
    if device == "cuda":
        try:
            import torch

            dev = int(torch.cuda.mem_get_info()[0])
        except Exception:  # no torch, no device: the worker will say so
            dev = None
    return {"host": host, "device": dev}


def check_fits(cases: list[Case]) -> None:
    """Raise UsageError naming the first case whose harness memory exceeds what is free."""
    free: dict[str, dict[str, int | None]] = {}
    too_big = []
    for case in dict.fromkeys(cases):
        if case.device not in free:
            free[case.device] = available_bytes(case.device)
        need = harness_bytes(case)
        for where in ("host", "device"):
            have = free[case.device][where]
            if need[where] and have is not None and need[where] > have:
                too_big.append((case, where, need[where], have))
                break
    if too_big:
        case, where, need, have = too_big[0]
        label = "host memory (MemAvailable)" if where == "host" else "free CUDA device memory"
        more = f" ({len(too_big) - 1} more case(s) too large as well)" if len(too_big) > 1 else ""
        raise UsageError(
            f"case {case.id} needs {_gib(need)} for the harness's own inputs and oracle "
            f"(float64 q/k/v, the {case.dtype} copy, the oracle rows), more than the "
            f"{_gib(have)} of {label} now{more}; run smaller cases")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"
