"""CUDA timing: per-iteration events, L2 flush, cost estimate, optional CUDA-graph (warm-L2).

Everything that touches the GPU goes through a small `ops` object (TorchCudaOps here), so the
iteration-count and statistics logic imports and is unit-tested on a machine without a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from attnbench.measure.timing import Timing, summarize

FLUSH_MIN_BYTES = 256 * 2**20  # the L2-flush buffer: at least 2 × L2 and at least 256 MiB
ESTIMATE_CALLS = 5
GRAPH_BELOW_MS = 0.05  # kernels under ~50 µs also get a CUDA-graph (warm-L2) timing


@dataclass
class CudaTimerConfig:
    """Warm-up and iteration targets of docs/timing.md (milliseconds of device time)."""

    warmup_calls: int = 10
    warmup_ms: float = 25.0
    target_ms: float = 100.0
    min_iters: int = 25
    max_iters: int = 500
    flush: bool = True
    graph: bool | None = None  # None: add a graph timing when the kernel is under GRAPH_BELOW_MS


class Event(Protocol):
    def record(self) -> None: ...
    def elapsed_time(self, end: Any) -> float: ...


class CudaOps(Protocol):
    """What the timer needs from the device: events, synchronize, L2 flush, graph capture."""

    def event(self) -> Event: ...
    def synchronize(self) -> None: ...
    def flush(self) -> None: ...
    def capture(self, fn: Callable[[], Any]) -> Callable[[], Any]: ...


def flush_bytes(l2_bytes: int | None) -> int:
    """Size of the L2-flush buffer: max(2 × L2, 256 MiB)."""
    return max(2 * (l2_bytes or 0), FLUSH_MIN_BYTES)


class TorchCudaOps:
    """The real device: torch.cuda events and a flush buffer allocated at construction.

    Construct it before taking the memory baseline so that the buffer is not counted.
    """

    def __init__(self, device: int | None = None, flush: bool = True):
        import torch

        self.torch = torch
        props = torch.cuda.get_device_properties(device or torch.cuda.current_device())
        self.l2_bytes = int(getattr(props, "L2_cache_size", 0) or 0)
        n = flush_bytes(self.l2_bytes)
        self.buffer = torch.empty(n, dtype=torch.int8, device="cuda") if flush else None

    def event(self) -> Any:
        return self.torch.cuda.Event(enable_timing=True)

    def synchronize(self) -> None:
        self.torch.cuda.synchronize()

    def flush(self) -> None:
        if self.buffer is not None:
            self.buffer.zero_()

    def capture(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        torch = self.torch
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up on a side stream, as torch's docs ask
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph.replay


def iterations(estimate_ms: float, cfg: CudaTimerConfig) -> int:
    """Timed iterations for >= target_ms of device time, clamped to [min_iters, max_iters]."""
    n = math.ceil(cfg.target_ms / max(estimate_ms, 1e-6))
    return int(min(cfg.max_iters, max(cfg.min_iters, n)))


def warmup_count(estimate_ms: float, cfg: CudaTimerConfig) -> int:
    """Warm-up calls: at least warmup_calls and at least warmup_ms of device time."""
    return int(max(cfg.warmup_calls, math.ceil(cfg.warmup_ms / max(estimate_ms, 1e-6))))


def estimate_ms(fn: Callable[[], Any], ops: CudaOps, calls: int = ESTIMATE_CALLS) -> float:
    """Mean device time of one call without the flush (back-to-back, one event pair)."""
    ops.synchronize()
    start, end = ops.event(), ops.event()
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    ops.synchronize()
    return start.elapsed_time(end) / calls


def timed_batch(fn: Callable[[], Any], ops: CudaOps, n: int, flush: bool,
                on_output: Callable[[Any], None] | None = None) -> list[float]:
    """n iterations of (flush, start event, call, end event); one synchronize at the end.

    on_output gets each call's output after its end event is recorded (outside the timed span).
    """
    starts = [ops.event() for _ in range(n)]
    ends = [ops.event() for _ in range(n)]
    for i in range(n):
        if flush:
            ops.flush()
        starts[i].record()
        out = fn()
        ends[i].record()
        if on_output is not None:
            on_output(out)
    ops.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]


def time_cuda(
    fn: Callable[[], Any],
    ops: CudaOps,
    config: CudaTimerConfig | None = None,
    first_call_ms: float | None = None,
    budget_ms: float | None = None,
    on_output: Callable[[Any], None] | None = None,
) -> Timing:
    """Time fn on the GPU as docs/timing.md says; samples are per-call device times in ms (cold L2).

    budget_ms (the user's --budget) caps the timed iterations of a slow kernel, never below 3.
    """
    cfg = config or CudaTimerConfig()
    est = estimate_ms(fn, ops)
    warm = warmup_count(est, cfg)
    for _ in range(warm):
        out = fn()
        if on_output is not None:
            on_output(out)
    n = iterations(est, cfg)
    capped = budget_ms is not None and n * est > budget_ms and n > 3
    if capped:
        n = max(3, int(budget_ms / max(est, 1e-6)))
    samples = timed_batch(fn, ops, n, cfg.flush, on_output)
    timing = Timing(samples, 1, first_call_ms, warm + ESTIMATE_CALLS, summarize(samples))
    timing.stats.update(estimate_ms=est, l2="cold" if cfg.flush else "warm", clock="cuda-events",
                        capped_by_budget=capped)
    want_graph = cfg.graph if cfg.graph is not None else est < GRAPH_BELOW_MS
    if want_graph:
        timing.stats["graph"] = time_graph(fn, ops, n)
    return timing


def time_graph(fn: Callable[[], Any], ops: CudaOps, n: int) -> dict[str, Any]:
    """The call captured in a CUDA graph and replayed without flushing: labelled warm-L2."""
    try:
        replay = ops.capture(fn)
    except Exception as exc:  # some kernels cannot be captured; say so, don't fail the case
        return {"label": "warm-L2 (CUDA graph)", "error": f"{type(exc).__name__}: {exc}"}
    for _ in range(3):
        replay()
    samples = timed_batch(replay, ops, n, flush=False)
    return {"label": "warm-L2 (CUDA graph)", **summarize(samples), "samples_ms": samples}
