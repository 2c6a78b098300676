"""The measuring steps of one case: prepare and first call, repeats, inputs checked, timed calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attnbench.case import Case
from attnbench.measure.timing import TimerConfig, time_cpu
from attnbench.plugin.backend import Backend
from attnbench.verify import agreement, determinism, grad
from attnbench.verify import inputs as inputs_mod
from attnbench.worker.shipping import Keeper, Report


def sync(device: str) -> None:
    """Wait for queued device work (CUDA); a no-op on the CPU."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


@dataclass
class FirstCall:
    """What the backend's first call gave: the callable to time, its output and gradients."""

    fn: Callable[[], Any]
    out: Any
    grads: dict[str, Any] | None
    ms: float
    prepare_ms: float  # backend.prepare(): its set-up (masks, plans, packing), apart from calls


def first_call(backend: Backend, inputs: Any, case: Case, d_out: Any) -> FirstCall:
    """Prepare the backend and run its first call (with autograd in bwd and fwd_bwd)."""
    took: list[float] = []

    def prepare() -> Callable[[], Any]:
        t0 = time.perf_counter_ns()
        fn = backend.prepare(inputs)
        sync(case.device)  # what prepare() queued on the device is its own set-up
        took.append((time.perf_counter_ns() - t0) / 1e6)
        return fn

    if case.mode == "fwd":
        fn = prepare()
        t0 = time.perf_counter_ns()
        out = fn()
        sync(case.device)
        return FirstCall(fn, out, None, (time.perf_counter_ns() - t0) / 1e6, took[0])
    d_out_t = inputs_mod.to_framework(d_out, backend.framework, case.dtype, case.device)
    run = grad.prepare_grad(prepare, inputs, d_out_t, case.mode, lambda: sync(case.device))
    return FirstCall(run.step, run.out, run.grads, run.first_call_ms, sum(took))


def repeat_calls(first: FirstCall, inputs: Any, repeats: int, device: str) -> dict[str, Any]:
    """--repeat: the first call's output (and gradients) against repeats − 1 more calls."""
    after = (lambda: determinism.current_grads(inputs)) if first.grads is not None else None
    return determinism.repeat_check(first.fn, determinism.snapshot(first.out, first.grads),
                                    after, repeats, lambda: sync(device))


def check_inputs(rep: Report, inputs: Any, handed: dict[str, Any], pristine: dict[str, Any],
                 case: Case) -> None:
    """Inputs the backend changed, as sentences (the parent makes the record a mismatch)."""
    if rep.data.get("changed_inputs"):
        return
    problems = agreement.changed_inputs(inputs, handed, pristine, case.softmax_scale)
    if problems:
        rep.data["changed_inputs"] = problems


def cuda_ops(device: str) -> Any:
    """The torch operations the CUDA timer uses (events, the L2 flush buffer); None off CUDA."""
    if device != "cuda":
        return None
    from attnbench.measure.cuda_timing import TorchCudaOps

    return TorchCudaOps()


def time_calls(fn: Any, device: str, ops: Any, timer: TimerConfig, first_ms: float,
               keep: Keeper) -> dict[str, Any]:
    """Timing summary, raw samples and how they were taken (CUDA: events, no per-call sync)."""
    if device == "cuda":
        from attnbench.measure.cuda_timing import time_cuda

        t = time_cuda(fn, ops, first_call_ms=first_ms, budget_ms=timer.budget_s * 1e3,
                      on_output=keep.offer)
        return t.record()
    return time_cpu(fn, timer, first_call_ms=first_ms, on_output=keep.offer).record()


def synced(fn: Any, device: str) -> Any:
    """fn, followed by a device synchronize on CUDA (for CPU-clock timing and memory)."""
    if device != "cuda":
        return fn

    def run() -> Any:
        out = fn()
        sync(device)
        return out

    return run
