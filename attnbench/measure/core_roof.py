"""One CPU core's matmul rate times the cores: what all the cores can do, even measured busy.

The matmul roof (measure/roof.py) is a multi-threaded matmul; while other processes share the
cores, its threads wait for each other at every barrier each time one is descheduled, and its
rate falls far below the machine's (on the 2-core VM, with six torch processes running matmuls:
0.3 to 5 GFLOP/s against about 170 idle). One thread's best call over a tenth of a second is not
slowed that way (the same load: 102 GFLOP/s against 103 idle), so cores x that rate bounds what
the machine can do whether it was busy or not. The judge of impossible throughputs
(run/outcome.py) takes the larger of the two, so a busy machine's low roof cannot turn a
record into an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from attnbench.measure.fastest import fastest_call_s
from attnbench.measure.threads import available_cores

KEY = "cores"  # key of a device's roofs: {"flops_per_s": ..., "per_core_flops_per_s": ...}
CORE_N = 256  # 2·256³ FLOPs: a fraction of a millisecond, inside one time slice of a busy core
MAX_SECONDS = 0.1  # hundreds of such calls: enough for one undisturbed call on a busy core
DTYPE = "float32"
METHOD = (f"best of repeated {CORE_N} x {CORE_N} {DTYPE} matmuls on one thread, times the cores "
          "this process may run on")


def measure_core_roof(seconds: float) -> dict[str, Any] | None:
    """{"flops_per_s", "per_core_flops_per_s", "cores", "dtype", "method"}, or None where no
    single-threaded BLAS matmul can be run (neither torch nor threadpoolctl importable, or
    the matmul raised: then only the multi-threaded roof bounds throughputs)."""
    try:
        best = _best_call_s(min(seconds, MAX_SECONDS))
    except Exception:  # noqa: BLE001 (a broken BLAS: the roof without this bound)
        return None
    if best is None:
        return None
    per_core = 2.0 * CORE_N**3 / best
    cores = available_cores()
    return {"flops_per_s": per_core * cores, "per_core_flops_per_s": per_core, "cores": cores,
            "dtype": DTYPE, "method": METHOD}


def _best_call_s(seconds: float) -> float | None:
    """The fastest single-threaded call in seconds: at least 3 calls and about `seconds`."""
    matmul = _one_thread_matmul()
    if matmul is None:
        return None
    with matmul as fn:
        best = fastest_call_s(fn, seconds)
    return best if best > 0 else None


def _one_thread_matmul() -> Any:
    """A context giving a zero-argument single-threaded float32 matmul, or None."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        a, b = torch.randn(CORE_N, CORE_N), torch.randn(CORE_N, CORE_N)
        return _torch_threads(torch, lambda: torch.matmul(a, b))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((CORE_N, CORE_N)).astype(np.float32) for _ in range(2))
    return _numpy_threads(threadpool_limits, lambda: np.matmul(x, y))


@contextmanager
def _torch_threads(torch: Any, fn: Callable[[], Any]) -> Iterator[Callable[[], Any]]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield fn
    finally:
        torch.set_num_threads(before)


@contextmanager
def _numpy_threads(limits: Any, fn: Callable[[], Any]) -> Iterator[Callable[[], Any]]:
    with limits(limits=1):
        yield fn
