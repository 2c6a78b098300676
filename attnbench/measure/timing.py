"""CPU timing: first call apart, warm-up, ≥1 ms samples, adaptive stop. Knows no backend."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_SAMPLE_NS = 1_000_000  # a sample lasts at least 1 ms (short calls are looped)
WARMUP_CALLS = 3
WARMUP_S = 0.1
MIN_SAMPLES = 5
MIN_TIME_S = 0.5
STOP_IQR = 0.05  # stop once IQR/median falls below this
NOISY_IQR = 0.10  # flag a result as noisy at or above this


@dataclass
class TimerConfig:
    """How long to time one case; budget_s caps the sampling phase."""

    budget_s: float = 2.0
    min_samples: int = MIN_SAMPLES
    min_time_s: float = MIN_TIME_S
    warmup_calls: int = WARMUP_CALLS
    warmup_s: float = WARMUP_S
    max_samples: int = 10_000


@dataclass
class Timing:
    """Raw per-call samples (ms) and the statistics derived from them."""

    samples_ms: list[float]
    loops: int  # calls per sample
    first_call_ms: float | None = None
    warmup_calls: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What a record stores: the statistics, every raw sample and how they were taken."""
        return {**self.stats, "samples_ms": self.samples_ms, "loops": self.loops,
                "warmup_calls": self.warmup_calls}


def summarize(samples_ms: list[float]) -> dict[str, Any]:
    """Median, IQR, p20/p80, min, mean, std and the noisy flag of raw samples."""
    a = np.asarray(samples_ms, dtype=float)
    q20, q25, q50, q75, q80 = np.percentile(a, [20, 25, 50, 75, 80])
    iqr = float(q75 - q25)
    return {
        "n": int(a.size), "median_ms": float(q50), "iqr_ms": iqr, "p20_ms": float(q20),
        "p80_ms": float(q80), "min_ms": float(a.min()), "mean_ms": float(a.mean()),
        "std_ms": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "iqr_over_median": iqr / float(q50) if q50 > 0 else 0.0,
        "noisy": bool(q50 > 0 and iqr / q50 >= NOISY_IQR),
    }


Offer = Callable[[Any], None]


def _one_sample(fn: Callable[[], Any], loops: int, clock: Callable[[], int],
                on_output: Offer | None = None) -> int:
    """ns of `loops` calls; the last call's output goes to on_output after the clock stops."""
    out = None
    t0 = clock()
    for _ in range(loops):
        out = fn()
    took = clock() - t0
    if on_output is not None:
        on_output(out)
    return took


def time_cpu(
    fn: Callable[[], Any],
    config: TimerConfig | None = None,
    first_call_ms: float | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
    on_output: Offer | None = None,
) -> Timing:
    """Time fn on the CPU (docs/timing.md); pass first_call_ms if the first call was made.

    on_output gets the output of the last call of every warm-up call and sample, outside the
    timed region (the worker keeps some for verification: a timed call is checked too)."""
    cfg = config or TimerConfig()
    if first_call_ms is None:
        t0 = clock()
        fn()
        first_call_ms = (clock() - t0) / 1e6
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        warm, per_call = _warm_up(fn, cfg, clock, on_output)
        loops = _calibrate(fn, per_call, clock)
        samples = _sample(fn, loops, cfg, clock, on_output)
    finally:
        if gc_was_enabled:
            gc.enable()
    ms = [s / loops / 1e6 for s in samples]
    return Timing(ms, loops, first_call_ms, warm, {**summarize(ms), "clock": "perf_counter_ns"})


def _warm_up(
    fn: Callable[[], Any], cfg: TimerConfig, clock: Callable[[], int],
    on_output: Offer | None = None,
) -> tuple[int, int]:
    """Call fn at least warmup_calls times and warmup_s long; return (calls, fastest call ns).

    The fastest call, not the last, estimates the cost: a call the OS preempted reads long.
    """
    calls, start, fastest = 0, clock(), None
    while calls < cfg.warmup_calls or clock() - start < cfg.warmup_s * 1e9:
        took = _one_sample(fn, 1, clock, on_output)
        fastest = took if fastest is None else min(fastest, took)
        calls += 1
        if took > cfg.budget_s * 1e9 / 4:  # a very slow call: don't warm up forever
            break
    return calls, fastest or 0


def _calibrate(fn: Callable[[], Any], per_call: int, clock: Callable[[], int]) -> int:
    """Calls per sample so that one sample lasts at least MIN_SAMPLE_NS.

    One warm-up call is a noisy estimate for sub-millisecond calls (a single call of an
    empty function reads as tens of µs), so the loop count is checked on whole samples and
    grown until a sample really lasts 1 ms, as timeit's autorange does.
    """
    if per_call >= MIN_SAMPLE_NS:
        return 1
    loops = max(1, MIN_SAMPLE_NS // max(per_call, 1))
    while (took := _one_sample(fn, loops, clock)) < MIN_SAMPLE_NS:
        loops = max(2 * loops, -(-loops * MIN_SAMPLE_NS * 11 // (10 * max(took, 1))))
    return loops


def _sample(
    fn: Callable[[], Any], loops: int, cfg: TimerConfig, clock: Callable[[], int],
    on_output: Offer | None = None,
) -> list[int]:
    samples: list[int] = []
    start = clock()
    while len(samples) < cfg.max_samples:
        samples.append(_one_sample(fn, loops, clock, on_output))
        elapsed = (clock() - start) / 1e9
        if len(samples) >= cfg.min_samples and elapsed >= cfg.min_time_s:
            q25, q50, q75 = np.percentile(samples, [25, 50, 75])
            if (q75 - q25) / q50 < STOP_IQR or elapsed >= cfg.budget_s:
                break
        elif elapsed >= cfg.budget_s and len(samples) >= 3:
            break  # a slow case: keep what the budget allows, at least 3 samples
    return samples
