"""Runs one (case, backend): inputs, first call, agreement with the oracle, timing → record."""

from __future__ import annotations

import secrets
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from attnbench.case import Case
from attnbench.measure import memory
from attnbench.measure.timing import TimerConfig, time_cpu
from attnbench.plugin.backend import Backend, Unsupported
from attnbench.record import Status, new_record
from attnbench.run import determinism
from attnbench.verify import agreement, grad, layouts
from attnbench.verify import inputs as inputs_mod
from attnbench.verify.baseline import output_rule
from attnbench.verify.reference import check_rows
from attnbench.verify.rounding import Model, oracle_and_model


@dataclass
class Options:
    """What execute() does beyond running the case once."""

    seed: int = 0
    time_it: bool = True
    timer: TimerConfig = field(default_factory=TimerConfig)
    threads: int | None = None  # None: all cores
    memory: bool = True  # measure peak memory with one extra untimed call
    # seed of the rows compared beyond the oracle budget: drawn per run, kept in run.json's
    # config (so --resume compares the same rows); None draws a fresh one per case
    check_seed: int | None = None
    repeat: int = 1  # --repeat: calls compared bit for bit (run/determinism.py); 1 = none

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (the worker process receives this)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Options:
        """Inverse of to_dict; unknown keys are an error."""
        d = dict(d)
        timer = d.pop("timer", None)
        return cls(**d, timer=TimerConfig(**timer) if timer else TimerConfig())


def run_check_seed(resumed_meta: dict[str, Any] | None = None) -> int:
    """The run's check seed: the stored one when resuming a run that has one, else a new draw."""
    stored = ((resumed_meta or {}).get("config") or {}).get("check_seed")
    return stored if isinstance(stored, int) else secrets.randbits(32)


def prepare_process(opts: Options) -> dict[str, Any]:
    """Once per worker process, before any case: apply thread settings; return what was set."""
    from attnbench.measure.threads import set_threads

    return {"threads": set_threads(opts.threads)}


class CaseData:
    """One case's pristine float64 inputs, compared rows, oracle output and pass rules.

    A worker keeps the last one; the runner goes backend by backend, so each backend's worker
    builds its own. Nothing a backend gets shares memory with these arrays (every framework
    copy is a new one), and the baseline runs on its own copies of them.
    """

    def __init__(self, case: Case, seed: int, check_seed: int | None = None):
        self.case, self.seed = case, seed
        self.arrays = inputs_mod.reference_arrays(case, seed)
        # None: a fresh draw, so which rows are compared beyond the budget is not predictable
        self.check_seed = secrets.randbits(32) if check_seed is None else check_seed
        self._oracle: tuple[np.ndarray, Model] | None = None
        self._rules: dict[str, agreement.Rule] = {}
        self._grads: grad.GradData | None = None
        self._pristine: dict[str, np.ndarray] | None = None

    @property
    def pristine(self) -> dict[str, np.ndarray]:
        """The values every handed input must still hold, in the case's layout."""
        if self._pristine is None:
            lay = inputs_mod.layout_arrays(self.case, self.arrays)
            bias = {"bias": self.arrays["bias"]} if "bias" in self.arrays else {}
            self._pristine = {**lay, **bias}
        return self._pristine

    @property
    def handed_names(self) -> tuple[str, ...]:
        """The Inputs fields a backend gets that must come back unchanged."""
        return tuple(self.pristine)

    def use_check_seed(self, check_seed: int | None) -> None:
        """Draw the compared rows from this seed (the run's); a new seed drops the oracle."""
        if check_seed is not None and check_seed != self.check_seed:
            self.check_seed, self._oracle, self._rules = check_seed, None, {}

    def _rows_and_ref(self) -> tuple[np.ndarray, Model]:
        if self._oracle is None:
            rows = check_rows(self.case, self.check_seed)
            self._oracle = (rows, oracle_and_model(self.arrays, self.case, rows))
        return self._oracle

    @property
    def rows(self) -> np.ndarray:
        """The query rows compared with the oracle (all of them within the oracle budget)."""
        return self._rows_and_ref()[0]

    @property
    def model(self) -> Model:
        """The float64 oracle on those rows and the rounding model of a correct kernel there."""
        return self._rows_and_ref()[1]

    @property
    def ref(self) -> np.ndarray:
        """The float64 oracle output on those rows."""
        return self.model.ref

    def rule(self, framework: str) -> agreement.Rule:
        """The output's pass rule in a framework: the rounding model, calibrated live by the
        same-dtype baseline of that framework."""
        if framework not in self._rules:
            self._rules[framework] = output_rule(self.arrays, self.case, self.rows, self.model,
                                                 framework)
        return self._rules[framework]

    def grads(self) -> grad.GradData:
        """dO, the gradient-checked groups and their oracle (built on first use)."""
        if self._grads is None:
            self._grads = grad.grad_data(self.case, self.arrays, self.seed)
        return self._grads


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


@dataclass
class FirstCall:
    """What the backend's first call gave: the callable to time, its output and gradients."""

    fn: Callable[[], Any]
    out: Any
    grads: dict[str, Any] | None
    ms: float


def _measure(
    backend: Backend, data: CaseData, opts: Options, rec: dict[str, Any]
) -> dict[str, Any]:
    case = data.case
    data.use_check_seed(opts.check_seed)
    rule = data.rule(backend.framework)  # before the backend's inputs exist: pristine copies
    inputs = inputs_mod.make_inputs(case, data.arrays, backend.framework)
    handed = {n: getattr(inputs, n) for n in data.handed_names}
    first = _first_call(backend, inputs, data)
    rec["agreement"] = _agree(first.out, data, rule)
    if first.grads is not None:
        _add_grads(rec["agreement"], grad.check_grads(case, data.arrays, data.grads(),
                                                      first.grads))
    _check_inputs(rec, inputs, handed, data)
    if opts.repeat >= determinism.MIN_REPEATS:
        rec["determinism"] = _repeat(first, inputs, opts.repeat, case.device)
    rec["first_call_ms"] = first.ms
    fn, timed, watch = first.fn, _synced(first.fn, case.device), OutputWatch(first.out)
    del first  # so that the first call's output and gradients are freed before timing
    if case.mode != "bwd":  # bwd replays one held output by design
        _flag_reused(rec, watch, timed)
    ops = _cuda_ops(case.device) if opts.time_it else None  # flush buffer before the baseline
    if opts.memory:
        rec["memory"] = memory.peak(timed, case.device)
    if opts.time_it:
        rec["timing"] = _time(fn, case.device, ops, opts, rec["first_call_ms"])
        rec["gflops_per_s"] = rec["flops"] / (rec["timing"]["median_ms"] * 1e6)
    if opts.time_it or opts.memory or "determinism" in rec:
        _check_inputs(rec, inputs, handed, data)  # the later calls may change them too
    return rec


def _first_call(backend: Backend, inputs: Any, data: CaseData) -> FirstCall:
    """Prepare the backend and run its first call (with autograd in bwd and fwd_bwd)."""
    case = data.case
    if case.mode == "fwd":
        fn = backend.prepare(inputs)
        t0 = time.perf_counter_ns()
        out = fn()
        sync(case.device)
        return FirstCall(fn, out, None, (time.perf_counter_ns() - t0) / 1e6)
    d_out = inputs_mod.to_framework(data.grads().d_out, backend.framework, case.dtype,
                                    case.device)
    run = grad.prepare_grad(lambda: backend.prepare(inputs), inputs, d_out, case.mode,
                            lambda: sync(case.device))
    return FirstCall(run.step, run.out, run.grads, run.first_call_ms)


def _repeat(first: FirstCall, inputs: Any, repeats: int, device: str) -> dict[str, Any]:
    """--repeat: the first call's output (and gradients) against repeats − 1 more calls."""
    after = (lambda: determinism.current_grads(inputs)) if first.grads is not None else None
    return determinism.repeat_check(first.fn, determinism.snapshot(first.out, first.grads),
                                    after, repeats, lambda: sync(device))


def _check_inputs(rec: dict[str, Any], inputs: Any, handed: dict[str, Any],
                  data: CaseData) -> None:
    """A backend that changed its inputs is a mismatch, with a sentence saying so."""
    agree = rec["agreement"]
    problems = agreement.changed_inputs(inputs, handed, data.pristine, data.case.softmax_scale)
    if problems and not agree.get("problems"):
        agree["problems"] = problems
        agree["passed"] = False
    rec["status"] = (Status.OK if agree["passed"] else Status.MISMATCH).value


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


def _weak(x: Any) -> weakref.ref | None:
    try:
        return weakref.ref(x)
    except TypeError:  # not weak-referenceable (a list, None): not checked
        return None


def _owner(x: Any) -> Any:
    """The array that owns x's memory: NumPy's base chain, torch's _base."""
    if isinstance(x, np.ndarray):
        while isinstance(x.base, np.ndarray):
            x = x.base
        return x
    base = getattr(x, "_base", None)  # a torch view's base tensor
    return x if base is None else base


def _shares_memory(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.may_share_memory(a, b))
    try:
        return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())
    except (AttributeError, RuntimeError, TypeError):
        return False


def _flag_reused(rec: dict[str, Any], watch: OutputWatch, timed: Callable[[], Any]) -> None:
    """Call once more: the first output (or its memory) back means the work may be cached."""
    if watch.reused_by(timed()):
        rec["flags"] = [*rec.get("flags", []), "reused_output"]
        rec["notes"] = [*rec.get("notes", []), "the callable returned the same output object "
                        "(or memory) on two calls: it may return cached work instead of "
                        "computing; its time is recorded as measured"]


def _add_grads(agree: dict[str, Any], checked: dict[str, Any]) -> None:
    agree["outputs"].extend(checked["entries"])
    agree["passed"] = all(o["passed"] for o in agree["outputs"])
    agree["grads_checked"] = checked["note"]


def _cuda_ops(device: str) -> Any:
    if device != "cuda":
        return None
    from attnbench.measure.cuda_timing import TorchCudaOps

    return TorchCudaOps()


def _time(fn: Any, device: str, ops: Any, opts: Options, first_ms: float) -> dict[str, Any]:
    """Timing summary, raw samples and how they were taken (CUDA: events, no per-call sync)."""
    if device == "cuda":
        from attnbench.measure.cuda_timing import time_cuda

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


def _agree(out: Any, data: CaseData, rule: agreement.Rule) -> dict[str, Any]:
    """The output's agreement entry, which rows were compared and how they were chosen."""
    case = data.case
    shape = expected_shape(case)
    select = agreement.rows_of(data.rows, case.seq_q)
    if case.layout == "packed":  # compared in the padded layout, zeros past each length
        padded = select

        def select(x: Any) -> np.ndarray:
            return padded(layouts.padded_output(agreement.to_numpy64(x), case))
    result = agreement.compare("out", out, shape, select, data.ref, rule)
    full = len(data.rows) == case.seq_q
    agree: dict[str, Any] = {"passed": result["passed"], "outputs": [result],
             "rows_checked": "all" if full else int(len(data.rows)),
             "oracle": "float64 numpy", "out_dtype": agreement.dtype_name(out)}
    agree["check_seed"] = data.check_seed  # with the case, it says which rows were compared
    return agree


def expected_shape(case: Case) -> tuple[int, ...]:
    """The output shape a backend must return: (total_q, Hq, Dv) packed, else (B, Hq, Sq, Dv)."""
    if case.layout == "packed":
        return (int(sum(case.q_lens or [case.seq_q] * case.batch)), case.heads_q, case.dv)
    return (case.batch, case.heads_q, case.seq_q, case.dv)
