"""Timers: CPU loop/stop logic and the CUDA iteration logic, both driven by fake clocks.

The fakes below stand in for time.perf_counter_ns and for torch.cuda events (no GPU here);
they test only our own logic: loop counts, warm-up, stop rules, statistics, flush order.
"""

from __future__ import annotations

import numpy as np

from attnbench.measure.cuda_timing import (
    CudaTimerConfig,
    flush_bytes,
    iterations,
    time_cuda,
    warmup_count,
)
from attnbench.measure.timing import TimerConfig, summarize, time_cpu


class FakeClock:
    """A nanosecond clock that advances only when the fake function 'runs'."""

    def __init__(self, cost_ns):
        self.now, self.cost_ns, self.calls = 0, cost_ns, 0

    def __call__(self) -> int:
        return self.now

    def fn(self) -> None:
        self.now += self.cost_ns(self.calls) if callable(self.cost_ns) else self.cost_ns
        self.calls += 1


def test_summarize_statistics_and_noisy_flag():
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["median_ms"] == 3.0 and s["min_ms"] == 1.0 and s["mean_ms"] == 3.0
    assert s["p20_ms"] < s["median_ms"] < s["p80_ms"] and s["noisy"]
    assert not summarize([1.0, 1.001, 0.999, 1.0, 1.0])["noisy"]


def test_short_calls_are_looped_into_1ms_samples():
    clock = FakeClock(10_000)  # 10 µs per call
    t = time_cpu(clock.fn, TimerConfig(budget_s=2.0), clock=clock)
    assert t.loops == 100  # 100 × 10 µs = 1 ms per sample
    assert t.first_call_ms == 0.01
    assert t.warmup_calls >= 3 and t.warmup_calls * 10_000 >= 0.1e9
    assert len(t.samples_ms) >= 5 and np.allclose(t.samples_ms, 0.01)
    assert not t.stats["noisy"]


class CostlyClock(FakeClock):
    """Each clock read costs 20 µs: a single timed call reads far longer than it is."""

    def __call__(self) -> int:
        self.now += 20_000
        return self.now


def test_calibration_makes_samples_last_1ms_even_when_one_call_misreads():
    clock = CostlyClock(100)  # a 100 ns call, timed alone it reads ~20 µs
    t = time_cpu(clock.fn, TimerConfig(budget_s=0.5), clock=clock)
    assert t.loops >= 9_800  # (1 ms − one clock read) / 100 ns
    assert min(t.samples_ms) * t.loops >= 1.0


def test_stops_once_stable_after_min_time():
    clock = FakeClock(2_000_000)  # a steady 2 ms call
    cfg = TimerConfig(budget_s=10.0, min_time_s=0.5)
    t = time_cpu(clock.fn, cfg, first_call_ms=5.0, clock=clock)
    assert t.loops == 1 and t.first_call_ms == 5.0
    assert len(t.samples_ms) == 250  # stops at 0.5 s: IQR/median is 0 < 5 %
    assert t.stats["median_ms"] == 2.0


def test_noisy_function_runs_to_the_budget_and_is_flagged():
    rng = np.random.default_rng(0)
    noise = rng.uniform(1e6, 3e6, size=100_000).astype(int)
    clock = FakeClock(lambda i: int(noise[i]))
    t = time_cpu(clock.fn, TimerConfig(budget_s=1.0), first_call_ms=1.0, clock=clock)
    total_ms = sum(t.samples_ms) * t.loops
    assert 1000 <= total_ms <= 1010  # sampled up to the budget, not beyond one sample
    assert t.stats["noisy"]


def test_slow_call_keeps_at_least_three_samples_within_budget():
    clock = FakeClock(800_000_000)  # 0.8 s per call, budget 1 s
    t = time_cpu(clock.fn, TimerConfig(budget_s=1.0), first_call_ms=800.0, clock=clock)
    assert len(t.samples_ms) == 3 and t.warmup_calls == 1


class FakeGPU:
    """Fake torch.cuda: a device timeline advanced by calls, flushes and nothing else."""

    def __init__(self, call_ms: float, flush_ms: float = 0.5):
        self.t, self.call_ms, self.flush_ms = 0.0, call_ms, flush_ms
        self.syncs, self.flushes, self.calls, self.log = 0, 0, 0, []

    def fn(self) -> None:
        self.t += self.call_ms
        self.calls += 1
        self.log.append("call")

    def event(self):
        gpu = self

        class Ev:
            def record(self) -> None:
                self.at = gpu.t

            def elapsed_time(self, end) -> float:
                return end.at - self.at

        return Ev()

    def synchronize(self) -> None:
        self.syncs += 1

    def flush(self) -> None:
        self.t += self.flush_ms
        self.flushes += 1
        self.log.append("flush")

    def capture(self, fn):
        return fn


def test_cuda_iteration_count_and_warmup_rules():
    cfg = CudaTimerConfig()
    assert iterations(10.0, cfg) == 25 and iterations(1.0, cfg) == 100
    assert iterations(0.001, cfg) == 500
    assert warmup_count(10.0, cfg) == 10 and warmup_count(0.1, cfg) == 250
    assert flush_bytes(50 * 2**20) == 256 * 2**20 and flush_bytes(200 * 2**20) == 400 * 2**20


def test_cuda_timer_flushes_each_iteration_outside_the_events():
    gpu = FakeGPU(call_ms=2.0)
    t = time_cuda(gpu.fn, gpu, CudaTimerConfig(), first_call_ms=7.0)
    n = len(t.samples_ms)
    assert n == 50  # 100 ms / 2 ms
    assert np.allclose(t.samples_ms, 2.0)  # the flush is not inside the timed window
    assert gpu.flushes == n and gpu.syncs == 3  # around the estimate, then one per batch
    assert t.warmup_calls == 5 + 13  # 5 estimate calls, then max(10, 25 ms / 2 ms) warm-up
    assert gpu.log[-2:] == ["flush", "call"] and t.stats["l2"] == "cold"
    assert t.stats["median_ms"] == 2.0 and "graph" not in t.stats


def test_cuda_budget_caps_the_iterations_of_a_slow_kernel():
    gpu = FakeGPU(call_ms=400.0)
    t = time_cuda(gpu.fn, gpu, CudaTimerConfig(), budget_ms=2000.0)
    assert len(t.samples_ms) == 5 and t.stats["capped_by_budget"]  # not 25 iterations: 10 s
    fast = FakeGPU(call_ms=2.0)
    assert not time_cuda(fast.fn, fast, CudaTimerConfig(), budget_ms=2000.0).stats[
        "capped_by_budget"]


def test_cuda_graph_mode_for_tiny_kernels_is_labelled_warm_l2():
    gpu = FakeGPU(call_ms=0.01)
    t = time_cuda(gpu.fn, gpu, CudaTimerConfig())
    assert len(t.samples_ms) == 500
    g = t.stats["graph"]
    assert g["label"].startswith("warm-L2") and len(g["samples_ms"]) == 500
    assert gpu.flushes == 500  # the graph replays are not flushed


def test_options_round_trip_through_json_and_prepare_process_sets_threads():
    import importlib.util
    import json

    from attnbench.measure.threads import available_cores
    from attnbench.run.execute import Options, prepare_process

    opts = Options(seed=3, threads=1, memory=False)
    opts.timer.budget_s = 0.5
    assert Options.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts
    try:
        got = prepare_process(opts)["threads"]
        installed = {m: importlib.util.find_spec(m) is not None for m in ("torch", "numba")}
        assert got["threads"] == 1
        assert got["torch"] == (1 if installed["torch"] else None)
        assert got["numba"] == (1 if installed["numba"] else None)
        assert got["blas"] and all(p["threads"] == 1 for p in got["blas"])  # numpy's BLAS
    finally:
        prepare_process(Options())  # back to all cores for the other tests
    assert prepare_process(Options())["threads"]["threads"] == available_cores()


def test_warm_devices_readies_cuda_only_when_the_run_uses_it_and_never_raises():
    import importlib.util

    from attnbench.worker.execute import Options, warm_devices

    assert warm_devices([]) == {} and warm_devices(["cpu"]) == {}
    got = warm_devices(["cpu", "cuda"])
    if importlib.util.find_spec("torch") is None:
        assert got["cuda_warm"].startswith("failed: ModuleNotFoundError")
    else:
        import torch

        if torch.cuda.is_available():  # on a GPU box: the context and cuBLAS are up
            assert got["cuda_warm_s"] > 0 and torch.cuda.is_initialized()
        else:
            assert got == {"cuda_warm": "torch sees no CUDA device"}
    opts = Options(warm=["cuda"])
    assert Options.from_dict(opts.to_dict()) == opts
