"""Cross-check: attnbench's timer against torch.utils.benchmark (CPU) and triton do_bench (GPU).

Usage: python benchmarks/crosscheck.py [--repeats 5] [--threads N] [--budget 2.0] [--cpu]
                                       [--rehearse] [--tolerance 3]

Times the same callables (torch-sdpa forward, prepared through the real backend) with both
timers, alternating which goes first, and prints Markdown tables of medians and differences.
Where a GPU is present: GPU cases only (kernels of >= 1 ms, where two event timers can agree
within 3 %), our CUDA timer against `triton.testing.do_bench(fn, return_mode="median")`, then
one small case timed with a flushed L2 and with a warm one; exit 1 when a GPU case differs by
more than --tolerance %. Without a GPU (or with --cpu): CPU cases against torch.utils.benchmark
and the harness overhead. --rehearse runs the GPU code path on the CPU with stand-ins
(perf_counter events, a 64 MiB buffer written as the flush, attnbench's CPU timer in
do_bench's place), so that a GPU session loses no minute to a typo; its numbers say nothing
about a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from attnbench.case import Case
from attnbench.measure.timing import TimerConfig, time_cpu
from attnbench.plugin.registry import build_registry
from attnbench.run.execute import Options, prepare_process
from attnbench.verify.inputs import make_inputs, reference_arrays

Timer = Callable[[Any], float]  # a callable's median ms


def prepared(case: Case) -> Any:
    """The torch-sdpa callable of a case, exactly as execute() would time it."""
    backend = build_registry(autoload=False).get("torch-sdpa")
    return backend.prepare(make_inputs(case, reference_arrays(case, 0), backend.framework))


def ours_ms(fn: Any, budget: float) -> float:
    return time_cpu(fn, TimerConfig(budget_s=budget)).stats["median_ms"]


def torch_ms(fn: Any, min_run_time: float) -> float:
    """torch.utils.benchmark with our thread count (its default num_threads is 1)."""
    import torch
    from torch.utils.benchmark import Timer

    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def paired(fn: Any, repeats: int, ours: Timer, theirs: Timer) -> tuple[list[float], list[float]]:
    """Medians from both timers, interleaved and alternating which goes first."""
    a: list[float] = []
    b: list[float] = []
    for r in range(repeats):
        if r % 2:
            b.append(theirs(fn))
        a.append(ours(fn))
        if not r % 2:
            b.append(theirs(fn))
    return a, b


def row(label: str, ours: list[float], theirs: list[float], digits: int) -> tuple[str, float]:
    """A table row (medians, their difference, the median paired ratio) and that paired %."""
    a, b = statistics.median(ours), statistics.median(theirs)
    pair = 100 * (statistics.median(x / y for x, y in zip(ours, theirs, strict=True)) - 1)
    spread = (f"{min(ours):.{digits}f}..{max(ours):.{digits}f} | "
              f"{min(theirs):.{digits}f}..{max(theirs):.{digits}f}")
    return (f"| {label} | {a:.{digits}f} | {b:.{digits}f} | {100 * (a - b) / b:+.1f} % "
            f"| {pair:+.1f} % | {spread} |"), pair


def cpu_rows(args: argparse.Namespace) -> list[str]:
    """One table row per case: medians of both timers and the median of paired ratios."""
    rows = ["| N | mask | attnbench ms | torch Timer ms | diff of medians | paired diff "
            "| ours range | torch range |", "|---|---|---|---|---|---|---|---|"]
    for mask in ("none", "causal"):
        for n in (1024, 2048):
            fn = prepared(Case(1, 8, 8, n, n, 64, dtype="float32", mask=mask))
            fn()
            ours, theirs = paired(fn, args.repeats, lambda f: ours_ms(f, args.budget),
                                  lambda f: torch_ms(f, args.budget))
            rows.append(row(f"{n} | {mask}", ours, theirs, 3)[0])
    return rows


def overhead() -> list[str]:
    """Harness cost: an empty callable's per-call time and the fixed cost of one sample."""
    empty = time_cpu(lambda: None, TimerConfig(budget_s=1.0))
    per_call_ns = empty.stats["median_ms"] * 1e6
    t0 = time.perf_counter_ns()
    for _ in range(100_000):
        time.perf_counter_ns()
    clock_ns = (time.perf_counter_ns() - t0) / 100_000
    return [f"- empty callable, per call inside a sample: {per_call_ns:.0f} ns "
            f"({empty.loops} calls per sample)",
            f"- fixed cost per sample (two perf_counter_ns reads): {2 * clock_ns:.0f} ns, "
            f"i.e. {2 * clock_ns / 1e6 * 100:.4f} % of a 1 ms sample"]



# GPU cases: torch-sdpa forward, bfloat16, d128, kernels of ~1.5-5 ms on an H100 by the published
# FlashAttention-2 rates (docs/gpu.md): long enough that launch and event jitter stay far below 3 %.
GPU_CASES = [(2, 8192, "none"), (2, 8192, "causal"), (1, 16384, "none"), (1, 16384, "causal")]
SMALL = (1, 1024, "none")  # ~20-40 µs: where a warm L2 and a flushed one part ways
REHEARSAL_N = 256  # --rehearse: every sequence length becomes this (seconds on a CPU)
REHEARSAL_TIMER = {"warmup_calls": 2, "warmup_ms": 2.0, "target_ms": 10.0, "min_iters": 3,
                   "max_iters": 20}  # --rehearse: the CUDA timer's protocol, shortened


class CpuStandIn:
    """--rehearse only: the CudaOps protocol on the CPU (perf_counter stamps as events, an
    8 MiB buffer written as the flush, no graph capture: the call itself is replayed)."""

    def __init__(self) -> None:
        import numpy as np

        self.buffer = np.zeros(8 * 2**20, dtype=np.uint8)

    def event(self) -> Any:
        return Stamp()

    def synchronize(self) -> None:
        pass

    def flush(self) -> None:
        self.buffer.fill(1)

    def capture(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        return fn


class Stamp:
    """A CPU stand-in for a CUDA event: record() reads perf_counter_ns."""

    ns = 0

    def record(self) -> None:
        self.ns = time.perf_counter_ns()

    def elapsed_time(self, end: Stamp) -> float:
        return (end.ns - self.ns) / 1e6


def gpu_case(batch: int, n: int, mask: str, d: int, device: str, rehearse: bool) -> Case:
    n = REHEARSAL_N if rehearse else n
    heads = 2 if rehearse else 16
    return Case(batch, heads, heads, n, n, d, dtype="bfloat16", device=device, mask=mask)


def timer_config(rehearse: bool, **kw: Any) -> Any:
    """The CUDA timer's protocol (docs/timing.md), shortened for a rehearsal."""
    from attnbench.measure.cuda_timing import CudaTimerConfig

    return CudaTimerConfig(**(REHEARSAL_TIMER if rehearse else {}), **kw)


def gpu_timers(rehearse: bool, budget: float) -> tuple[Any, Timer, Timer]:
    """(ops, our CUDA timer, do_bench's median) on the device, or their CPU stand-ins."""
    from attnbench.measure.cuda_timing import TorchCudaOps, time_cuda

    config = timer_config(rehearse)
    if rehearse:
        ops: Any = CpuStandIn()
        return ops, lambda f: time_cuda(f, ops, config).stats["median_ms"], \
            lambda f: ours_ms(f, min(budget, 0.2))
    from triton.testing import do_bench

    ops = TorchCudaOps()
    return ops, lambda f: time_cuda(f, ops, config).stats["median_ms"], \
        lambda f: float(do_bench(f, return_mode="median"))


def gpu_rows(args: argparse.Namespace, device: str) -> tuple[list[str], list[float]]:
    """Our CUDA timer against do_bench on the GPU cases: table rows and the paired diffs (%)."""
    ops, ours, theirs = gpu_timers(args.rehearse, args.budget)
    rows = ["| case | attnbench ms | do_bench ms | diff of medians | paired diff "
            "| ours range | do_bench range |", "|---|---|---|---|---|---|---|"]
    diffs = []
    for batch, n, mask in GPU_CASES:
        case = gpu_case(batch, n, mask, 128, device, args.rehearse)
        fn = prepared(case)
        fn()
        text, diff = row(case.id, *paired(fn, args.repeats, ours, theirs), 4)
        rows.append(text)
        diffs.append(diff)
        del fn
    rows.append("")
    rows.extend(warm_l2_rows(ops, device, args.rehearse))
    return rows, diffs


def warm_l2_rows(ops: Any, device: str, rehearse: bool) -> list[str]:
    """One small case: flushed L2 (the default), warm L2 (no flush) and a warm CUDA graph."""
    from attnbench.measure.cuda_timing import time_cuda

    case = gpu_case(*SMALL, 64, device, rehearse)
    fn = prepared(case)
    fn()
    flushed = time_cuda(fn, ops, timer_config(rehearse, flush=True, graph=True)).stats
    warm = time_cuda(fn, ops, timer_config(rehearse, flush=False, graph=False)).stats
    graph = flushed.get("graph", {})
    graph_ms = graph.get("median_ms")
    return [f"Warm L2 against flushed, {case.id}:", "",
            "| timing | median ms | p20..p80 ms | / flushed |", "|---|---|---|---|",
            _warm_row("events, L2 flushed per call (default)", flushed, flushed["median_ms"]),
            _warm_row("events, L2 warm (no flush)", warm, flushed["median_ms"]),
            _warm_row("CUDA graph replay, L2 warm", graph, flushed["median_ms"])
            if graph_ms else f"| CUDA graph replay | {graph.get('error', 'not taken')} | | |"]


def _warm_row(label: str, stats: dict[str, Any], flushed_ms: float) -> str:
    return (f"| {label} | {stats['median_ms']:.4f} | {stats['p20_ms']:.4f}.."
            f"{stats['p80_ms']:.4f} | {stats['median_ms'] / flushed_ms:.2f} |")


def gpu_present() -> str | None:
    """Why the GPU cross-check cannot run here (None: it can)."""
    import torch

    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False on this machine"
    try:
        import triton.testing  # noqa: F401
    except ImportError as exc:
        return f"triton not importable ({exc})"
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="paired measurements per case")
    p.add_argument("--threads", type=int, default=None, help="default: all cores")
    p.add_argument("--budget", type=float, default=2.0,
                   help="seconds per CPU measurement (ours: budget; torch: min_run_time)")
    p.add_argument("--cpu", action="store_true", help="the CPU cases even where a GPU is")
    p.add_argument("--rehearse", action="store_true",
                   help="run the GPU code path on the CPU with stand-ins (no GPU numbers)")
    p.add_argument("--tolerance", type=float, default=3.0,
                   help="largest paired GPU difference in %% (default 3); exit 1 beyond")
    args = p.parse_args()
    threads = prepare_process(Options(threads=args.threads))["threads"]
    print(f"threads: torch {threads['torch']}, numba {threads['numba']}, cores {threads['cores']}")
    why_not = None if args.rehearse else gpu_present()
    if why_not or args.cpu:
        print("\n" + "\n".join(cpu_rows(args)))
        print("\nHarness overhead:\n" + "\n".join(overhead()))
    if why_not:
        print(f"\nGPU cross-check skipped: {why_not}.")
        return 0
    device = "cpu" if args.rehearse else "cuda"
    if args.rehearse:
        print("\nREHEARSAL on the CPU: stand-ins for events, flush and do_bench; sizes "
              f"shrunk to N={REHEARSAL_N}; these numbers say nothing about a GPU.")
    rows, diffs = gpu_rows(args, device)
    print("\n" + "\n".join(rows))
    worst = max(abs(d) for d in diffs)
    ok = worst <= args.tolerance
    verdict = ("not judged: stand-ins" if args.rehearse
               else f"{'within' if ok else 'BEYOND'} {args.tolerance:g} %")
    print(f"\nGPU cases: worst paired difference {worst:.1f} % ({verdict})")
    return 0 if ok or args.rehearse else 1


if __name__ == "__main__":
    sys.exit(main())
