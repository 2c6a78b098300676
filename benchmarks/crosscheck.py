"""Cross-check: attnbench's timer against torch.utils.benchmark (CPU) and triton do_bench (GPU).

Usage: python benchmarks/crosscheck.py [--repeats 3] [--threads N] [--budget 2.0]

Times the same callable (torch-sdpa forward, prepared through the real backend) with both
timers, alternating which goes first, and prints a Markdown table of medians and their
difference; also the harness overhead per call and per sample (an empty callable).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from attnbench.case import Case
from attnbench.measure.timing import TimerConfig, time_cpu
from attnbench.plugin.registry import build_registry
from attnbench.run.execute import Options, prepare_process
from attnbench.verify.inputs import make_inputs, reference_arrays


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


def paired(fn: Any, repeats: int, budget: float) -> tuple[list[float], list[float]]:
    """Medians from both timers, interleaved and alternating which goes first."""
    ours: list[float] = []
    theirs: list[float] = []
    for r in range(repeats):
        if r % 2:
            theirs.append(torch_ms(fn, budget))
        ours.append(ours_ms(fn, budget))
        if not r % 2:
            theirs.append(torch_ms(fn, budget))
    return ours, theirs


def cpu_rows(args: argparse.Namespace) -> list[str]:
    """One table row per case: medians of both timers and the median of paired ratios."""
    rows = []
    for mask in ("none", "causal"):
        for n in (1024, 2048):
            fn = prepared(Case(1, 8, 8, n, n, 64, dtype="float32", mask=mask))
            fn()
            ours, theirs = paired(fn, args.repeats, args.budget)
            a, b = statistics.median(ours), statistics.median(theirs)
            ratio = statistics.median(x / y for x, y in zip(ours, theirs, strict=True))
            spread = f"{min(ours):.2f}..{max(ours):.2f} | {min(theirs):.2f}..{max(theirs):.2f}"
            rows.append(f"| {n} | {mask} | {a:.3f} | {b:.3f} | {100 * (a - b) / b:+.1f} % "
                        f"| {100 * (ratio - 1):+.1f} % | {spread} |")
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


def gpu_rows() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return ["GPU cross-check skipped: torch.cuda.is_available() is False on this machine."]
    try:
        from triton.testing import do_bench
    except ImportError as exc:
        return [f"GPU cross-check skipped: triton not importable ({exc})."]
    from attnbench.measure.cuda_timing import TorchCudaOps, time_cuda

    ops = TorchCudaOps()
    rows = ["| N | mask | attnbench ms | do_bench ms | diff |", "|---|---|---|---|---|"]
    for mask in ("none", "causal"):
        for n in (1024, 2048, 4096):
            fn = prepared(Case(1, 8, 8, n, n, 64, dtype="float16", device="cuda", mask=mask))
            a = time_cuda(fn, ops).stats["median_ms"]
            b = do_bench(fn, return_mode="median")
            rows.append(f"| {n} | {mask} | {a:.4f} | {b:.4f} | {100 * (a - b) / b:+.1f} % |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="paired measurements per case")
    p.add_argument("--threads", type=int, default=None, help="default: all cores")
    p.add_argument("--budget", type=float, default=2.0,
                   help="seconds per measurement (ours: budget; torch: min_run_time)")
    args = p.parse_args()
    threads = prepare_process(Options(threads=args.threads))["threads"]
    print(f"threads: torch {threads['torch']}, numba {threads['numba']}, cores {threads['cores']}")
    print("\n| N | mask | attnbench ms | torch Timer ms | diff of medians | paired diff "
          "| ours range | torch range |\n|---|---|---|---|---|---|---|---|")
    print("\n".join(cpu_rows(args)))
    print("\nHarness overhead:\n" + "\n".join(overhead()))
    print("\n" + "\n".join(gpu_rows()))


if __name__ == "__main__":
    main()
