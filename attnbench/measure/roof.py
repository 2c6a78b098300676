"""The device's roofs, measured once per run: matmul FLOP/s and stream-copy bandwidth.

The roof of a (device, dtype) is the best rate of `n x n @ n x n` (2·n³ FLOPs) over repeated
calls, with n grown until one call lasts at least MIN_CALL_S (CPU, torch or else NumPy) or fixed
at CUDA_N on a GPU (timed with CUDA events). It runs in a worker process, so it sees the same
thread settings as the cases. Best, not median: a roof is what the hardware can reach.

The bandwidth roof (under the key BANDWIDTH of a device's roofs) is the best rate of copying a
buffer far larger than the caches (COPY_BYTES each way; read + write counted), the STREAM
"copy" kernel; with the matmul roof it makes the roofline a record is placed on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from attnbench.measure.core_roof import KEY as CORES
from attnbench.measure.core_roof import measure_core_roof
from attnbench.measure.fastest import fastest_call_s

MIN_CALL_S = 0.02  # grow n until one call takes this long (CPU): 1000s of times any timer or
# thread wake-up cost; 0.05 s grew bfloat16 to n = 4096 here (0.36 s a call, 1.9 s a roof, 0.5 now)
MAX_N = 4096
CUDA_N = 8192
METHOD = "best of repeated n x n matmuls (2 n^3 FLOPs) in the case dtype on the device"
BANDWIDTH = "bandwidth"  # key of a device's roofs: {"bytes_per_s": ..., "method": ...}
COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 2 * 2**30}  # far past any cache of the device
BANDWIDTH_METHOD = "best of repeated copies of a buffer far larger than the caches (read + write)"


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0


def bandwidth_roof(per_device: dict[str, Any] | None) -> float | None:
    """The measured stream-copy bandwidth in bytes/s among a device's roofs, or None."""
    entry = (per_device or {}).get(BANDWIDTH)
    value = entry.get("bytes_per_s") if isinstance(entry, dict) else None
    return float(value) if _positive(value) else None


def roof_fraction(record: dict[str, Any], roofs: dict[str, dict[str, Any]]) -> None:
    """Add the roofs a timed record is measured against, in place, where they are known:
    roof_flops_per_s and roof_fraction (matmul), bandwidth_fraction, and the roofline's
    roofline_flops_per_s = min(matmul roof, intensity x bandwidth), roofline_fraction and
    bound_by ("memory" below the ridge, "compute" above)."""
    per = roofs.get(record.get("device", "")) or {}
    roof, bandwidth = per.get(record.get("dtype", "")), bandwidth_roof(per)
    gflops, gbytes = record.get("gflops_per_s"), record.get("gbytes_per_s")
    if _positive(roof):
        record["roof_flops_per_s"] = roof
        if gflops is not None:
            record["roof_fraction"] = gflops * 1e9 / roof
    if bandwidth is None:
        return
    record["roof_bytes_per_s"] = bandwidth
    if gbytes is not None:
        record["bandwidth_fraction"] = gbytes * 1e9 / bandwidth
    intensity = record.get("arithmetic_intensity")
    if _positive(roof) and _positive(intensity):
        memory_bound = intensity * bandwidth < roof
        line = intensity * bandwidth if memory_bound else roof
        record["roofline_flops_per_s"] = line
        record["bound_by"] = "memory" if memory_bound else "compute"
        if gflops is not None:
            record["roofline_fraction"] = gflops * 1e9 / line


def core_roof(per_device: dict[str, Any] | None) -> float | None:
    """The cores' rate (measure/core_roof.py) among a device's roofs in FLOP/s, or None."""
    entry = (per_device or {}).get(CORES)
    value = entry.get("flops_per_s") if isinstance(entry, dict) else None
    return float(value) if _positive(value) else None


UNMEASURED = "unmeasured"  # key of a device's roofs: {dtype: why it has no roof}


def measure_roofs(device: str, dtypes: list[str], seconds: float = 0.3,
                  matmul_only: bool = False) -> dict[str, Any]:
    """Matmul roof in FLOP/s for each dtype on a device; None where it cannot be measured,
    and then under UNMEASURED the reason, so a missing roof fraction is explained; unless
    matmul_only (the roofs at the end of a run and between its cases: only the matmul roofs
    are compared there), the copy bandwidth under BANDWIDTH and, on the CPU, one core's rate
    times the cores under CORES (measure/core_roof.py: the bound a busy machine cannot lower)."""
    out: dict[str, Any] = {}
    if not matmul_only:
        out[BANDWIDTH] = measure_bandwidth(device, seconds)
        cores = measure_core_roof(seconds) if device == "cpu" else None
        if cores is not None:
            out[CORES] = cores
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


def measure_bandwidth(device: str, seconds: float = 0.3) -> dict[str, Any]:
    """{"bytes_per_s", "method", "buffer_bytes"}: the best copy rate (bytes read + written per
    second); bytes_per_s None and "why" when the copy cannot run (no memory for the buffer)."""
    size = COPY_BYTES.get(device, COPY_BYTES["cpu"])
    try:
        copy = _cuda_copy if device == "cuda" else _cpu_copy
        best_s = copy(size, seconds)
        return {"bytes_per_s": 2.0 * size / best_s, "method": BANDWIDTH_METHOD,
                "buffer_bytes": size}
    except Exception as exc:  # too little memory, a device that went away: no roof, no failure
        return {"bytes_per_s": None, "method": BANDWIDTH_METHOD,
                "why": f"the copy raised {type(exc).__name__}: {exc}"[:300]}


def _cpu_copy(size: int, seconds: float) -> float:
    """Seconds of the best copy of size bytes: torch's (threaded as the cases are) when
    importable, else NumPy's."""
    try:
        import torch

        src = torch.ones(size // 4, dtype=torch.float32)
        dst = torch.empty_like(src)
        return fastest_call_s(lambda: dst.copy_(src), seconds)
    except ImportError:
        import numpy as np

        a = np.ones(size // 4, dtype=np.float32)
        b = np.empty_like(a)
        return fastest_call_s(lambda: np.copyto(b, a), seconds)


def _cuda_copy(size: int, seconds: float) -> float:
    import torch

    src = torch.ones(size // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    return _cuda_best_s(lambda: dst.copy_(src), seconds)


def _cuda_best_s(fn: Callable[[], Any], seconds: float) -> float:
    """The fastest of fn's calls in seconds, by CUDA events: 3 warm-up calls, then at least 10
    timed ones and for about `seconds` (synchronised every 10, so events never pile up)."""
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    events = []
    start = time.perf_counter()
    while len(events) < 10 or time.perf_counter() - start < seconds:
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        events.append((e0, e1))
        if len(events) % 10 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    return min(e0.elapsed_time(e1) for e0, e1 in events) / 1e3


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


_SIZE: dict[str, int] = {}  # dtype -> the n this process's first CPU roof grew to


def _cpu_roof(dtype: str, seconds: float) -> float | None:
    """The CPU roof in dtype: the best of at least 3 calls and `seconds` of an n x n matmul, n
    grown from 256 the first time, then the same n again, so the roofs at the start and end of a
    run (one roof worker) time the same matmul. The calls that chose n are among those counted."""
    n = _SIZE.get(dtype, 256)
    while True:
        fn = _cpu_matmul(dtype, n)
        if fn is None:
            return None
        fn()  # warm-up: first-touch pages, thread pool
        start = time.perf_counter()
        times = [_seconds(fn), _seconds(fn)]  # the best of two: one stall must not stop growth
        if dtype in _SIZE or min(times) >= MIN_CALL_S or n >= MAX_N:
            break
        n *= 2
    _SIZE[dtype] = n
    while len(times) < 3 or time.perf_counter() - start < seconds:
        times.append(_seconds(fn))
    return 2.0 * n**3 / min(times)


def _seconds(fn: Callable[[], Any]) -> float:
    """The wall time of one call of fn."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cuda_roof(dtype: str, seconds: float) -> float:
    import torch

    n = CUDA_N
    a = torch.randn(n, n, device="cuda").to(getattr(torch, dtype))
    b = torch.randn(n, n, device="cuda").to(getattr(torch, dtype))
    return 2.0 * n**3 / _cuda_best_s(lambda: torch.matmul(a, b), seconds)
