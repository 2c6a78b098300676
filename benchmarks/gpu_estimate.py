"""Estimate of a GPU sweep's time on one H100, per case and backend, before any GPU minute.

Usage: python benchmarks/gpu_estimate.py [-s gpu] [--measure-host] [--math-memory]

Kernel times come from published H100 SXM5 bfloat16 forward rates (RATES; docs/gpu.md says
where from), the calls per record from attnbench's own CUDA timer (measure/cuda_timing.py),
and the rest from stated assumptions (ASSUME). --measure-host times, on this machine, the
host work a worker does per case today (float64 inputs, oracle rows, rounding floor);
--math-memory measures SDPA's math kernel peak memory against one float32 score matrix on
the CPU (it upcasts half inputs to float32 on every device). An H200 has the H100's compute
and 1.4x its bandwidth: the estimate bounds it from above.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from attnbench.case import Case
from attnbench.measure.cuda_timing import (
    ESTIMATE_CALLS,
    CudaTimerConfig,
    flush_bytes,
    iterations,
    warmup_count,
)
from attnbench.scenario import resolve_scenario
from attnbench.verify.inputs import flops

# TFLOP/s by head dim at N = 512, 1k, 2k, 4k, 8k, 16k: FlashAttention-3 paper (Shah et al.
# 2024) Fig. 5, forward, non-causal, bf16, H100 80GB SXM5, batch x N = 16k, hidden 2048;
# "standard" is PyTorch eager attention (its 16k point ran out of memory: 8k repeated).
NS = (512, 1024, 2048, 4096, 8192, 16384)
RATES = {
    "fa2": {64: (282, 306, 318, 321, 322, 324), 128: (309, 350, 362, 368, 370, 370)},
    "cudnn": {64: (335, 373, 395, 408, 412, 413), 128: (497, 574, 617, 609, 600, 595)},
    "standard": {64: (52, 63, 67, 72, 73, 73), 128: (74, 100, 119, 133, 139, 139)},
}
# backend: (rate column, factor, computes every score even where the mask hides it)
BACKENDS = {
    "torch-naive": ("standard", 1.0, True),
    "torch-sdpa": ("cudnn", 1.0, False),  # torch 2.11 picks cuDNN on SM90 (issue 20, item 6)
    "torch-sdpa-math": ("math", 1.0, True),
    "torch-sdpa-flash": ("fa2", 1.0, False),  # PyTorch's flash kernel is FlashAttention-2
    "torch-sdpa-efficient": ("fa2", 0.6, False),
    "torch-sdpa-cudnn": ("cudnn", 1.0, False),
    "flex-attention": ("fa2", 0.9, False),
}
ASSUME = {
    "causal_factor": 0.8,  # fused kernels lose ~20 % of their rate on a causal mask
    "fp32_tflops": 50.0,  # the math kernel's float32 matmuls (TF32 off, as PyTorch defaults)
    "hbm_tb_s": 3.35,  # H100 SXM5 bandwidth (H200: 4.8)
    "math_bytes_per_score": 20,  # float32 scores and probabilities written and read again
    "l2_bytes": 50 * 2**20,
    "launch_ms": 0.02,  # host cost of one Python call and kernel launch
    "worker_start_s": 5.0,  # python, torch, a CUDA context, the registry: per backend
    "flex_compile_s": (10.0, 30.0),  # per distinct shape (issue 20, item 9)
    "math_scores": 2.5,  # float32 score matrices the math kernel holds (--math-memory)
}


def rate(column: str, d: int, n: int) -> float:
    """TFLOP/s of a published column at the nearest tabulated length and head dim."""
    row = RATES[column][min(RATES[column], key=lambda x: abs(x - d))]
    return row[min(range(len(NS)), key=lambda i: abs(math.log(NS[i] / n)))]


def kernel_ms(backend: str, case: Case) -> float:
    """One call's estimated device time."""
    column, factor, full = BACKENDS[backend]
    work = flops(case) if not (full and case.mask == "causal") else flops(
        Case(case.batch, case.heads_q, case.heads_kv, case.seq_q, case.seq_kv, case.head_dim))
    if column == "math":
        scores = case.batch * case.heads_q * case.seq_q * case.seq_kv
        return (work / (ASSUME["fp32_tflops"] * 1e12) + scores * ASSUME["math_bytes_per_score"]
                / (ASSUME["hbm_tb_s"] * 1e12)) * 1e3
    r = rate(column, case.head_dim, case.seq_kv) * factor
    if case.mask == "causal" and not full:
        r *= ASSUME["causal_factor"]
    return work / (r * 1e12) * 1e3


def record_s(t_ms: float, budget_s: float = 2.0) -> float:
    """Device seconds of one record: first, reuse and memory calls, then time_cuda's protocol."""
    cfg = CudaTimerConfig()
    n = iterations(t_ms, cfg)
    if n * t_ms > budget_s * 1e3 and n > 3:
        n = max(3, int(budget_s * 1e3 / t_ms))
    calls = 3 + ESTIMATE_CALLS + warmup_count(t_ms, cfg) + n
    flush_ms = flush_bytes(ASSUME["l2_bytes"]) / (ASSUME["hbm_tb_s"] * 1e9)
    return (calls * (t_ms + ASSUME["launch_ms"]) + n * flush_ms) / 1e3


def host_s(case: Case) -> float:
    """Seconds of host work one worker does for a case today, measured here."""
    from attnbench.verify.inputs import reference_arrays
    from attnbench.verify.reference import check_rows
    from attnbench.verify.rounding import oracle_and_model

    t0 = time.perf_counter()
    arrays = reference_arrays(case, 0)
    rows = check_rows(case, 1)
    oracle_and_model(arrays, case, rows)
    return time.perf_counter() - t0


def math_memory_ratio() -> list[str]:
    """Peak memory of SDPA's math kernel over one float32 score matrix, measured (CPU, VmHWM)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from attnbench.measure.memory import peak

    lines = []
    for dtype in (torch.bfloat16, torch.float32):
        for causal in (False, True):
            q, k, v = (torch.randn(1, 8, 2048, 64, dtype=dtype) for _ in range(3))

            def call(q: Any = q, k: Any = k, v: Any = v, causal: bool = causal) -> Any:
                with sdpa_kernel(SDPBackend.MATH):
                    return torch.nn.functional.scaled_dot_product_attention(
                        q, k, v, is_causal=causal)

            got = peak(call, "cpu")["peak_bytes"] / (8 * 2048 * 2048 * 4)
            lines.append(f"- math kernel, {dtype}, causal={causal}: peak {got:.2f} x one "
                         "float32 score matrix")
    return lines


def tables(cases: list[Case], measure: bool) -> list[str]:
    names = list(BACKENDS)
    out = ["| case | GFLOP | " + " | ".join(names) + " | math GB | host s |",
           "|---|---|" + "---|" * (len(names) + 2)]
    device = dict.fromkeys(names, 0.0)
    host = 0.0
    for case in cases:
        ms = {b: kernel_ms(b, case) for b in names}
        for b in names:
            device[b] += record_s(ms[b])
        scores = case.batch * case.heads_q * case.seq_q * case.seq_kv * 4
        h = host_s(case) if measure else float("nan")
        host += h
        out.append(f"| {case.id} | {flops(case) / 1e9:.0f} | "
                   + " | ".join(f"{ms[b]:.3f}" for b in names)
                   + f" | {ASSUME['math_scores'] * scores / 1e9:.0f} | {h:.1f} |")
    return out + [""] + totals(device, host, len(cases), measure)


def totals(device: dict[str, float], host: float, n: int, measure: bool) -> list[str]:
    start = ASSUME["worker_start_s"] * len(device)
    lo, hi = (n * s for s in ASSUME["flex_compile_s"])
    timed = sum(device.values())
    lines = [f"- device time of the timing protocol, all backends: {timed:.0f} s ("
             + ", ".join(f"{b} {s:.1f}" for b, s in device.items()) + ")",
             f"- worker starts: {start:.0f} s; flex-attention compiles, one per shape: "
             f"{lo:.0f}-{hi:.0f} s"]
    if measure:
        lines += [f"- host work per case, measured here: {host:.0f} s for the {n} cases; "
                  f"every backend's worker redoing it (today): {host * len(device):.0f} s, "
                  f"done once per case: {host:.0f} s",
                  f"- total without flex's compiles, today: "
                  f"{timed + start + host * len(device):.0f} s; with the host work done once: "
                  f"{timed + start + host:.0f} s"]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-s", "--scenario", default="gpu", help="a shipped scenario or a .toml file")
    p.add_argument("--measure-host", action="store_true",
                   help="time each case's host work here (minutes for the gpu scenario)")
    p.add_argument("--math-memory", action="store_true",
                   help="measure the math kernel's peak memory on the CPU")
    args = p.parse_args()
    from attnbench.plugin.registry import build_registry

    scenario = resolve_scenario(args.scenario, build_registry(autoload=False).scenario_dirs())
    cases = scenario.cases("cuda")
    print(f"{scenario.name}: {len(cases)} CUDA cases; kernel ms per call (estimate), the math "
          "kernel's memory, host seconds per case\n")
    print("\n".join(tables(cases, args.measure_host)))
    if args.math_memory:
        print("\n" + "\n".join(math_memory_ratio()))


if __name__ == "__main__":
    main()
