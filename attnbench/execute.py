"""Runs one (case, backend): inputs, first call, agreement with the oracle, timing → record."""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from attnbench import agreement, grad, memory
from attnbench import inputs as inputs_mod
from attnbench.backend import Backend, Unsupported
from attnbench.baseline import baseline_rows
from attnbench.case import Case
from attnbench.record import Status, new_record
from attnbench.reference import check_rows, oracle
from attnbench.timing import TimerConfig, time_cpu


@dataclass
class Options:
    """What execute() does beyond running the case once."""

    seed: int = 0
    time_it: bool = True
    timer: TimerConfig = field(default_factory=TimerConfig)
    threads: int | None = None  # None: all cores
    memory: bool = True  # measure peak memory with one extra untimed call

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (the worker process receives this)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Options:
        """Inverse of to_dict; unknown keys are an error."""
        d = dict(d)
        timer = d.pop("timer", None)
        return cls(**d, timer=TimerConfig(**timer) if timer else TimerConfig())


def prepare_process(opts: Options) -> dict[str, Any]:
    """Once per worker process, before any case: apply thread settings; return what was set."""
    from attnbench.threads import set_threads

    return {"threads": set_threads(opts.threads)}


class CaseData:
    """Shared float64 inputs, checked rows and oracle output of one case.

    A worker keeps the last one; the runner goes backend by backend, so each backend's worker
    builds its own (the oracle costs a few rows, the inputs one RNG draw).
    """

    def __init__(self, case: Case, seed: int):
        self.case = case
        self.arrays = inputs_mod.reference_arrays(case, seed)
        self.rows = check_rows(case, seed)
        self.ref = oracle(self.arrays, case, self.rows)
        self.seed = seed
        self._baseline: dict[str, float | None] = {}
        self.extra: dict[str, Any] = {}  # per-case caches (gradient oracle, dO)

    def baseline_err(self, inputs: Any, framework: str) -> float | None:
        """Max error of the same-dtype naive baseline on this device; None if there is none."""
        if framework not in self._baseline:
            try:
                with _no_grad(framework):  # the baseline needs no autograd graph
                    out = baseline_rows(inputs, self.rows, framework)
                self._baseline[framework] = agreement.metrics(
                    agreement.to_numpy64(out), self.ref)["max_abs_err"]
            except Exception:
                self._baseline[framework] = None
        return self._baseline[framework]


def _no_grad(framework: str) -> Any:
    if framework == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def sync(device: str) -> None:
    """Wait for queued device work (CUDA); a no-op on the CPU."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def execute(
    backend: Backend, scenario: str, case: Case, get_data: Callable[[], CaseData], opts: Options
) -> dict[str, Any]:
    """One record for (case, backend); failures become statuses, never exceptions.

    get_data returns the case's shared inputs and oracle; it is called only when the
    backend supports the case, so an all-unsupported case costs no oracle.
    """
    reasons = backend.unsupported(case)
    if reasons:
        return new_record(scenario, case, backend, Status.UNSUPPORTED, reasons=reasons)
    rec = new_record(scenario, case, backend, Status.OK)
    try:
        return _measure(backend, get_data(), opts, rec)
    except Unsupported as exc:
        return new_record(scenario, case, backend, Status.UNSUPPORTED, reasons=[str(exc)])
    except MemoryError as exc:
        return new_record(scenario, case, backend, Status.OOM, error=f"MemoryError: {exc}")
    except Exception as exc:
        status = Status.OOM if "out of memory" in str(exc).lower() else Status.ERROR
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3)
        return new_record(scenario, case, backend, status, error=f"{type(exc).__name__}: {exc}",
                          traceback="".join(tb))


def _measure(
    backend: Backend, data: CaseData, opts: Options, rec: dict[str, Any]
) -> dict[str, Any]:
    case = data.case
    inputs = inputs_mod.make_inputs(case, data.arrays, backend.framework)
    if case.mode == "fwd":
        fn = backend.prepare(inputs)
        t0 = time.perf_counter_ns()
        out = fn()
        sync(case.device)
        first_ms, grads, d_out = (time.perf_counter_ns() - t0) / 1e6, None, None
    else:
        d_out = _d_out(data, backend.framework)
        run = grad.prepare_grad(lambda: backend.prepare(inputs), inputs, d_out, case.mode,
                                lambda: sync(case.device))
        fn, out, first_ms, grads = run.step, run.out, run.first_call_ms, run.grads
        del run  # so that `del out, grads` below frees the first call's tensors
    rec["agreement"] = _agree(out, inputs, data, backend.framework)
    if grads is not None:
        _add_grads(rec["agreement"], grad.check_grads(data, inputs, grads, d_out))
    rec["status"] = (Status.OK if rec["agreement"]["passed"] else Status.MISMATCH).value
    rec["first_call_ms"] = first_ms
    del out, grads
    timed = _synced(fn, case.device)
    ops = _cuda_ops(case.device) if opts.time_it else None  # flush buffer before the baseline
    if opts.memory:
        rec["memory"] = memory.peak(timed, case.device)
    if opts.time_it:
        rec["timing"] = _time(fn, case.device, ops, opts, first_ms)
        rec["gflops_per_s"] = rec["flops"] / (rec["timing"]["median_ms"] * 1e6)
    return rec


def _d_out(data: CaseData, framework: str) -> Any:
    """The case's fixed upstream gradient, float64 (cached) and in the backend's framework."""
    case = data.case
    if "d_out" not in data.extra:
        data.extra["d_out"] = grad.upstream_grad(case, data.seed)
    return inputs_mod.to_framework(data.extra["d_out"], framework, case.dtype, case.device)


def _add_grads(agree: dict[str, Any], checked: dict[str, Any]) -> None:
    agree["outputs"].extend(checked["entries"])
    agree["passed"] = all(o["passed"] for o in agree["outputs"])
    agree["grads_checked"] = checked["note"]


def _cuda_ops(device: str) -> Any:
    if device != "cuda":
        return None
    from attnbench.cuda_timing import TorchCudaOps

    return TorchCudaOps()


def _time(fn: Any, device: str, ops: Any, opts: Options, first_ms: float) -> dict[str, Any]:
    """Timing summary, raw samples and how they were taken (CUDA: events, no per-call sync)."""
    if device == "cuda":
        from attnbench.cuda_timing import time_cuda

        t = time_cuda(fn, ops, first_call_ms=first_ms, budget_ms=opts.timer.budget_s * 1e3)
        return t.record()
    return time_cpu(fn, opts.timer, first_call_ms=first_ms).record()


def _synced(fn: Any, device: str) -> Any:
    """fn, followed by a device synchronize on CUDA (for CPU-clock timing and memory)."""
    if device != "cuda":
        return fn

    def run() -> Any:
        out = fn()
        sync(device)
        return out

    return run


def _agree(out: Any, inputs: Any, data: CaseData, framework: str) -> dict[str, Any]:
    case = data.case
    shape = (case.batch, case.heads_q, case.seq_q, case.head_dim)
    base = data.baseline_err(inputs, framework)
    result = agreement.compare("out", out, data.ref, data.rows, case.dtype, base, shape)
    full = len(data.rows) == case.seq_q
    return {"passed": result["passed"], "outputs": [result],
            "rows_checked": "all" if full else int(len(data.rows)),
            "oracle": "float64 numpy", "out_dtype": str(getattr(out, "dtype", "?"))}
