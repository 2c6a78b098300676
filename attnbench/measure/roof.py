"""The device's matmul roof: the FLOP/s of a large square matmul, measured once per run.

The roof of a (device, dtype) is the best rate of `n x n @ n x n` (2·n³ FLOPs) over repeated
calls, with n grown until one call lasts at least MIN_CALL_S (CPU, torch or else NumPy) or fixed
at CUDA_N on a GPU (timed with CUDA events). It runs in a worker process, so it sees the same
thread settings as the cases. Best, not median: a roof is what the hardware can reach.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

MIN_CALL_S = 0.05  # grow n until one call takes this long (CPU)
MAX_N = 4096
CUDA_N = 8192
METHOD = "best of repeated n x n matmuls (2 n^3 FLOPs) in the case dtype on the device"


def roof_fraction(record: dict[str, Any], roofs: dict[str, dict[str, float | None]]) -> None:
    """Add roof_flops_per_s and roof_fraction to a timed record, in place, when a roof is known."""
    roof = roofs.get(record.get("device", ""), {}).get(record.get("dtype", ""))
    gflops = record.get("gflops_per_s")
    if isinstance(roof, (int, float)) and roof > 0:
        record["roof_flops_per_s"] = roof
        if gflops is not None:
            record["roof_fraction"] = gflops * 1e9 / roof


UNMEASURED = "unmeasured"  # key of a device's roofs: {dtype: why it has no roof}


def measure_roofs(device: str, dtypes: list[str], seconds: float = 0.3) -> dict[str, Any]:
    """Matmul roof in FLOP/s for each dtype on a device; None where it cannot be measured,
    and then under UNMEASURED the reason, so a missing roof fraction is explained."""
    out: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for dtype in dtypes:
        try:
            measure = _cuda_roof if device == "cuda" else _cpu_roof
            out[dtype] = measure(dtype, seconds)
            if out[dtype] is None:
                reasons[dtype] = (f"no BLAS matmul in {dtype} here (NumPy has none and torch "
                                  "is not importable)")
        except Exception as exc:  # an unsupported dtype on this device: no roof, no failure
            out[dtype] = None
            reasons[dtype] = f"the {dtype} matmul raised {type(exc).__name__}: {exc}"[:300]
    if reasons:
        out[UNMEASURED] = reasons
    return out


def unmeasured(roofs: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{device: {dtype: reason}} for every roof of a run.json that could not be measured."""
    out = {}
    for device, per in (roofs or {}).items():
        if not isinstance(per, dict):
            continue
        why = per.get(UNMEASURED) if isinstance(per.get(UNMEASURED), dict) else {}
        missing = {d: str(why.get(d, "not measured (the roof worker failed)"))
                   for d, v in per.items() if d != UNMEASURED and v is None}
        if missing:
            out[device] = missing
    return out


def _cpu_matmul(dtype: str, n: int) -> Callable[[], Any] | None:
    """A zero-argument n x n matmul in dtype: torch when importable, else NumPy (no half types)."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        a = torch.randn(n, n, dtype=torch.float32).to(getattr(torch, dtype))
        b = torch.randn(n, n, dtype=torch.float32).to(getattr(torch, dtype))
        return lambda: torch.matmul(a, b)
    if dtype not in ("float32", "float64"):
        return None  # NumPy's float16 matmul is not BLAS: its rate would be no roof
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    return lambda: np.matmul(a, b)


def _cpu_roof(dtype: str, seconds: float) -> float | None:
    n, fn, call_s = 256, None, 0.0
    while True:
        fn = _cpu_matmul(dtype, n)
        if fn is None:
            return None
        fn()
        t0 = time.perf_counter()
        fn()
        call_s = time.perf_counter() - t0
        if call_s >= MIN_CALL_S or n >= MAX_N:
            break
        n *= 2
    best, calls, start = call_s, 1, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return 2.0 * n**3 / best


def _cuda_roof(dtype: str, seconds: float) -> float:
    import torch

    n = CUDA_N
    a = torch.randn(n, n, device="cuda").to(getattr(torch, dtype))
    b = torch.randn(n, n, device="cuda").to(getattr(torch, dtype))
    for _ in range(3):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    events = []
    start = time.perf_counter()
    while len(events) < 10 or time.perf_counter() - start < seconds:
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        torch.matmul(a, b)
        e1.record()
        events.append((e0, e1))
        if len(events) % 10 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    best_ms = min(e0.elapsed_time(e1) for e0, e1 in events)
    return 2.0 * n**3 / (best_ms / 1e3)
