"""Worker side of one (case, backend): prepare, first call, timed calls; outputs and what happened.

Nothing here judges an output: the worker's process holds the backend's plugin, which could
change any judgement made in it. The worker writes the arrays to be verified (the first call's
output and gradients, and the outputs of timed calls drawn at random plus the last) into the
exchange folder and reports its measurements; the parent verifies the arrays against the
oracle and builds the record (attnbench/verify/judge.py, attnbench/run/outcome.py).
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from attnbench.case import Case
from attnbench.measure import memory
from attnbench.measure.timing import TimerConfig, time_cpu
from attnbench.plugin.backend import Backend, Unsupported
from attnbench.verify import agreement, determinism, grad
from attnbench.verify import inputs as inputs_mod
from attnbench.worker import arrays
from attnbench.worker.failures import classify_failure


@dataclass
class Options:
    """What the worker does with a case beyond running it once."""

    seed: int = 0
    time_it: bool = True
    timer: TimerConfig = field(default_factory=TimerConfig)
    threads: int | None = None  # None: all cores
    memory: bool = True  # measure peak memory with one extra untimed call
    repeat: int = 1  # --repeat: calls compared bit for bit (verify/determinism.py); 1 = none
    warm: list[str] = field(default_factory=list)  # devices readied at start (warm_devices)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (the worker process receives this)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Options:
        """Inverse of to_dict; unknown keys are an error (a stored check_seed is ignored)."""
        d = {k: v for k, v in d.items() if k != "check_seed"}
        timer = d.pop("timer", None)
        return cls(**d, timer=TimerConfig(**timer) if timer else TimerConfig())


def prepare_process(opts: Options) -> dict[str, Any]:
    """Once per worker process, before any case: apply thread settings and ready the devices
    of the run; return what was set."""
    from attnbench.measure.threads import set_threads

    return {"threads": set_threads(opts.threads), **warm_devices(opts.warm)}


def warm_devices(devices: list[str]) -> dict[str, Any]:
    """Create the CUDA context and load cuBLAS (a tiny matmul per dtype) while the workers start
    side by side, rather than in each backend's first case one after the other (about 6 s per
    worker on an H200). Nothing is timed here; a failure is reported, never raised: the
    backend's own case then meets it and says why."""
    if "cuda" not in devices:
        return {}
    t0 = time.perf_counter()
    try:
        import torch

        if not torch.cuda.is_available():
            return {"cuda_warm": "torch sees no CUDA device"}
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            a = torch.ones(64, 64, device="cuda", dtype=dtype)
            (a @ a).sum().item()
        del a
        torch.cuda.empty_cache()
    except Exception as exc:  # a missing torch, a broken driver: the case will tell
        return {"cuda_warm": f"failed: {type(exc).__name__}: {exc}"[:300]}
    return {"cuda_warm_s": round(time.perf_counter() - t0, 3)}


def sync(device: str) -> None:
    """Wait for queued device work (CUDA); a no-op on the CPU."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


class Report:
    """What one case gave in the worker: measurements, shipped arrays and the failure, if any."""

    def __init__(self, folder: Path, prefix: str):
        self.folder, self.prefix = folder, prefix
        self.data: dict[str, Any] = {"phase": "unsupported()", "arrays": {}}

    def ship(self, name: str, x: Any) -> None:
        """Write an output or gradient for the parent to verify."""
        self.data["arrays"][name] = arrays.ship(x, self.folder, f"{self.prefix}-{name}")

    def phase(self, name: str) -> None:
        self.data["phase"] = name


def execute(backend: Backend, case: Case, opts: Options, folder: Path, prefix: str,
            given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one case on a backend in this (worker) process; the reply's `result`.

    given: the case's inputs as the parent wrote them (values exact in the case dtype); None
    draws them here from the seed (the same values).
    `{"unsupported": reasons}` when the backend declines the case (in unsupported(), prepare()
    or its first call); else the measurements and `arrays` (file entries, see worker/arrays),
    with `failure` when a step raised (the arrays shipped before it are still verified).
    """
    rep = Report(folder, prefix)
    try:
        reasons = backend.unsupported(case)
        if reasons:
            return {"unsupported": [str(r) for r in reasons]}
        _measure(backend, case, opts, rep, given)
    except Unsupported as exc:
        if not rep.data["arrays"]:
            return {"unsupported": [str(exc)]}
        rep.data["failure"] = _failure(exc, rep.data["phase"], "unsupported")
    except BaseException as exc:  # noqa: BLE001 (a plugin may raise SystemExit too: data)
        rep.data["failure"] = _failure(exc, rep.data["phase"])
    return rep.data


def _failure(exc: BaseException, phase: str, status: str | None = None) -> dict[str, Any]:
    """A raised exception as data: the status it means, text, traceback, whether to restart."""
    kind, restart = classify_failure(exc)
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3)
    return {"status": status or kind.value, "error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(tb), "phase": phase, "restart": restart}


@dataclass
class FirstCall:
    """What the backend's first call gave: the callable to time, its output and gradients."""

    fn: Callable[[], Any]
    out: Any
    grads: dict[str, Any] | None
    ms: float
    prepare_ms: float  # backend.prepare(): its set-up (masks, plans, packing), apart from calls


def _measure(backend: Backend, case: Case, opts: Options, rep: Report,
             given: dict[str, Any] | None) -> None:
    rep.phase("inputs")
    arrays_ = given if given is not None else inputs_mod.reference_arrays(case, opts.seed)
    pristine = inputs_mod.pristine_arrays(case, arrays_)
    d_out = grad.upstream_grad(case, opts.seed) if case.mode != "fwd" else None
    inputs = inputs_mod.make_inputs(case, arrays_, backend.framework)
    rep.data["reported"] = inputs.reported  # what the backend says ran, as it says it
    del arrays_
    handed = {n: getattr(inputs, n) for n in pristine}
    rep.phase("prepare() and the first call")
    first = _first_call(backend, inputs, case, d_out)
    rep.data["first_call_ms"], rep.data["prepare_ms"] = first.ms, round(first.prepare_ms, 3)
    _ship_call(rep, "first", first.out, first.grads, case)
    _check_inputs(rep, inputs, handed, pristine, case)
    if opts.repeat >= determinism.MIN_REPEATS:
        rep.phase("the repeated calls (--repeat)")
        rep.data["determinism"] = _repeat(first, inputs, opts.repeat, case.device)
    fn, timed = first.fn, _synced(first.fn, case.device)
    watch = OutputWatch(first.out)
    keep = Keeper(rep, case, inputs if first.grads is not None else None)
    del first  # the first call's output and gradients are freed before timing
    if case.mode != "bwd":  # bwd replays one held output by design
        rep.phase("a second call")
        keep.offer(_flag_reused(rep, watch, timed))
    ops = _cuda_ops(case.device) if opts.time_it else None  # flush buffer before the baseline
    if opts.memory:
        rep.phase("the memory measurement")
        rep.data["memory"] = memory.peak(timed, case.device)
    if opts.time_it:
        rep.phase("the timed calls")
        rep.data["timing"] = _time(fn, case.device, ops, opts, rep.data["first_call_ms"], keep)
    keep.ship()
    if opts.time_it or opts.memory or "determinism" in rep.data:
        _check_inputs(rep, inputs, handed, pristine, case)  # the later calls may change them


def _ship_call(rep: Report, tag: str, out: Any, grads: dict[str, Any] | None, case: Case
               ) -> None:
    """Ship one call's output (not in bwd, where it is the held forward) and gradients."""
    if case.mode != "bwd" or tag == "first":
        rep.ship(f"{tag}.out", out)
    for name, g in (grads or {}).items():
        if g is not None:  # a missing gradient is said by the verdict ("no gradient")
            rep.ship(f"{tag}.{name}", g)


class Keeper:
    """Outputs of timed calls kept for verification: one drawn at random (reservoir sampling
    over every call offered) and the last. The timers offer the output of the last call of
    each sample, outside the timed region; nothing is copied while timing."""

    def __init__(self, rep: Report, case: Case, inputs: Any):
        self.rep, self.case, self.inputs = rep, case, inputs
        self.seen, self.drawn, self.last = 0, None, None
        self._rng = random.Random()

    def _capture(self, out: Any) -> tuple[Any, dict[str, Any] | None]:
        grads = determinism.current_grads(self.inputs) if self.inputs is not None else None
        return out, grads

    def offer(self, out: Any) -> None:
        self.seen += 1
        taken = self._capture(out)
        if self._rng.random() * self.seen < 1.0:
            self.drawn = taken
        self.last = taken

    def ship(self) -> None:
        """Write the drawn and the last call's arrays (once when they are the same call)."""
        if self.last is None:
            return
        tags = [("last", self.last)]
        if self.drawn is not None and self.drawn is not self.last:
            tags.append(("drawn", self.drawn))
        for tag, (out, grads) in tags:
            _ship_call(self.rep, tag, out, grads, self.case)
        self.rep.data["timed_calls_offered"] = self.seen
        self.drawn = self.last = None


def _first_call(backend: Backend, inputs: Any, case: Case, d_out: Any) -> FirstCall:
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


def _repeat(first: FirstCall, inputs: Any, repeats: int, device: str) -> dict[str, Any]:
    """--repeat: the first call's output (and gradients) against repeats − 1 more calls."""
    after = (lambda: determinism.current_grads(inputs)) if first.grads is not None else None
    return determinism.repeat_check(first.fn, determinism.snapshot(first.out, first.grads),
                                    after, repeats, lambda: sync(device))


def _check_inputs(rep: Report, inputs: Any, handed: dict[str, Any], pristine: dict[str, Any],
                  case: Case) -> None:
    """Inputs the backend changed, as sentences (the parent makes the record a mismatch)."""
    if rep.data.get("changed_inputs"):
        return
    problems = agreement.changed_inputs(inputs, handed, pristine, case.softmax_scale)
    if problems:
        rep.data["changed_inputs"] = problems


class OutputWatch:
    """Weak references to a first call's output and to the array owning its memory.

    Weak, so the first output is freed before the next call (as it would be in use): then
    the next call can only return the same object or memory if the backend kept it.
    """

    def __init__(self, out: Any):
        self.out, self.owner = _weak(out), _weak(_owner(out))

    def reused_by(self, again: Any) -> bool:
        """True when again is the first output, or shares memory its backend kept alive."""
        first = self.out() if self.out else None
        if first is not None and again is first:
            return True
        owner = self.owner() if self.owner else None
        return owner is not None and _shares_memory(again, owner)


def _weak(x: Any) -> Any:
    import weakref

    try:
        return weakref.ref(x)
    except TypeError:  # not weak-referenceable (a list, None): not checked
        return None


def _owner(x: Any) -> Any:
    """The array that owns x's memory: NumPy's base chain, torch's _base."""
    import numpy as np

    if isinstance(x, np.ndarray):
        while isinstance(x.base, np.ndarray):
            x = x.base
        return x
    base = getattr(x, "_base", None)  # a torch view's base tensor
    return x if base is None else base


def _shares_memory(a: Any, b: Any) -> bool:
    import numpy as np

    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.may_share_memory(a, b))
    try:
        return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())
    except (AttributeError, RuntimeError, TypeError):
        return False


def _flag_reused(rep: Report, watch: OutputWatch, timed: Callable[[], Any]) -> Any:
    """Call once more: the first output (or its memory) back means the work may be cached."""
    again = timed()
    if watch.reused_by(again):
        rep.data.setdefault("flags", []).append("reused_output")
        rep.data.setdefault("notes", []).append(
            "the callable returned the same output object (or memory) on two calls: it may "
            "return cached work instead of computing; its time is recorded as measured")
    return again


def _cuda_ops(device: str) -> Any:
    if device != "cuda":
        return None
    from attnbench.measure.cuda_timing import TorchCudaOps

    return TorchCudaOps()


def _time(fn: Any, device: str, ops: Any, opts: Options, first_ms: float, keep: Keeper
          ) -> dict[str, Any]:
    """Timing summary, raw samples and how they were taken (CUDA: events, no per-call sync)."""
    if device == "cuda":
        from attnbench.measure.cuda_timing import time_cuda

        t = time_cuda(fn, ops, first_call_ms=first_ms, budget_ms=opts.timer.budget_s * 1e3,
                      on_output=keep.offer)
        return t.record()
    return time_cpu(fn, opts.timer, first_call_ms=first_ms, on_output=keep.offer).record()


def _synced(fn: Any, device: str) -> Any:
    """fn, followed by a device synchronize on CUDA (for CPU-clock timing and memory)."""
    if device != "cuda":
        return fn

    def run() -> Any:
        out = fn()
        sync(device)
        return out

    return run
