"""Worker side of one (case, backend): prepare, first call, timed calls; outputs and what happened.

Nothing here judges an output: the worker's process holds the backend's plugin, which could
change any judgement made in it. The worker writes the arrays to be verified (the first call's
output and gradients, and the outputs of timed calls drawn at random plus the last) into the
exchange folder and reports its measurements; the parent verifies the arrays against the
oracle and builds the record (attnbench/verify/judge.py, attnbench/run/outcome.py).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from attnbench.case import Case
from attnbench.measure import memory
from attnbench.measure.timing import TimerConfig
from attnbench.plugin.backend import Backend, Unsupported
from attnbench.plugin.outputs import main_output
from attnbench.verify import determinism, grad
from attnbench.verify import inputs as inputs_mod
from attnbench.worker.failures import classify_failure
from attnbench.worker.reuse import OutputWatch, flag_reused
from attnbench.worker.shipping import Keeper, Report, ship_call
from attnbench.worker.steps import (
    check_inputs,
    cuda_ops,
    first_call,
    repeat_calls,
    synced,
    time_calls,
)


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


def _measure(backend: Backend, case: Case, opts: Options, rep: Report,
             given: dict[str, Any] | None) -> None:
    """The steps of one case in order: inputs, first call, repeats, memory, timed calls."""
    rep.phase("inputs")
    arrays_ = given if given is not None else inputs_mod.reference_arrays(case, opts.seed)
    pristine = inputs_mod.pristine_arrays(case, arrays_)
    d_out = grad.upstream_grad(case, opts.seed) if case.mode != "fwd" else None
    inputs = inputs_mod.make_inputs(case, arrays_, backend.framework)
    rep.data["reported"] = inputs.reported  # what the backend says ran, as it says it
    del arrays_
    handed = {n: getattr(inputs, n) for n in pristine}
    rep.phase("prepare() and the first call")
    first = first_call(backend, inputs, case, d_out)
    rep.data["first_call_ms"], rep.data["prepare_ms"] = first.ms, round(first.prepare_ms, 3)
    ship_call(rep, "first", first.out, first.grads, case)
    check_inputs(rep, inputs, handed, pristine, case)
    if opts.repeat >= determinism.MIN_REPEATS:
        rep.phase("the repeated calls (--repeat)")
        rep.data["determinism"] = repeat_calls(first, inputs, opts.repeat, case.device)
    fn, timed = first.fn, synced(first.fn, case.device)
    watch = OutputWatch(main_output(first.out, case), case)
    keep = Keeper(rep, case, inputs if first.grads is not None else None)
    del first  # the first call's output and gradients are freed before timing
    if case.mode != "bwd":  # bwd replays one held output by design
        rep.phase("a second call")
        keep.offer(flag_reused(rep, watch, timed))
    ops = cuda_ops(case.device) if opts.time_it else None  # flush buffer before the baseline
    if opts.memory:
        rep.phase("the memory measurement")
        rep.data["memory"] = memory.peak(timed, case.device)
    if opts.time_it:
        rep.phase("the timed calls")
        rep.data["timing"] = time_calls(fn, case.device, ops, opts.timer,
                                       rep.data["first_call_ms"], keep)
    keep.ship()
    if opts.time_it or opts.memory or "determinism" in rep.data:
        check_inputs(rep, inputs, handed, pristine, case)  # the later calls may change them
