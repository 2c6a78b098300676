"""Backward pass: autograd runs of torch backends, and their gradients checked against float64.

What is timed. `fwd_bwd` times forward then `out.backward(dO)`. `bwd` runs the forward once
and then times `out.backward(dO, retain_graph=True)` alone: retain_graph keeps the saved
tensors, so every iteration replays exactly the backward kernels of a training step, without
the forward and without subtracting two noisy medians (fwd_bwd − fwd). Between iterations the
gradients are set to None (as `zero_grad(set_to_none=True)` does), so each backward allocates
and writes fresh gradients instead of accumulating. dO is a fixed, seeded standard normal in
the case's dtype.

What is checked. dq, dk and dv, as NumPy arrays, against the analytic float64 backward of
softmax attention (with the padded-layout variants), computed in bounded memory
(grad_oracle). Every row of every gradient within the oracle's FLOP budget; beyond it rows drawn
from a seed the caller draws after the backend has returned (grad_plan): dq's query rows in
every head, dk's and dv's key rows of drawn (batch, kv head) groups. Nothing is skipped, and each
entry says which rows were compared. The bound of each element is its rounding floor derived
from its magnitudes (grad_bound, factor 1) times max(GRAD_FLOOR_FACTOR, K_GRAD × β), β the
factor plain torch autograd in the case dtype needs on the same rows (grad_baseline): k × the
same-dtype baseline, measured in units of each element's floor rather than as one number for
the whole array (which would let a small gradient be wrong under a large one's error).
"""

from __future__ import annotations

import secrets
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnbench.case import Case
from attnbench.verify import agreement
from attnbench.verify.grad_baseline import baseline_grads
from attnbench.verify.grad_bound import GRAD_FLOOR_FACTOR
from attnbench.verify.grad_oracle import plan_grads
from attnbench.verify.grad_plan import GradPlan, grad_plan
from attnbench.verify.inputs import case_seed, quantize

GRAD_NAMES = ("dq", "dk", "dv")


@dataclass
class GradRun:
    """A prepared autograd run: the callable to time and what its first call produced."""

    step: Callable[[], Any]
    out: Any
    grads: dict[str, Any]
    first_call_ms: float


def upstream_grad(case: Case, seed: int) -> np.ndarray:
    """The fixed upstream gradient dO: seeded standard normal, representable in case.dtype."""
    rng = np.random.default_rng(case_seed(case, seed) ^ zlib.crc32(b"dO"))
    shape = (case.batch, case.heads_q, case.seq_q, case.dv)
    return quantize(rng.standard_normal(shape), case.dtype)


def prepare_grad(
    fn_factory: Callable[[], Callable[[], Any]], inputs: Any, d_out: Any,
    mode: str, sync: Callable[[], None],
) -> GradRun:
    """Make q, k, v require grad, prepare the backend, run its first call in the given mode."""
    leaves = [inputs.q.requires_grad_(True), inputs.k.requires_grad_(True),
              inputs.v.requires_grad_(True)]
    fn = fn_factory()

    def reset() -> None:
        for t in leaves:
            t.grad = None

    if mode == "fwd_bwd":
        def step() -> Any:
            reset()
            out = fn()
            out.backward(d_out)
            return out
    elif mode == "bwd":
        held = fn()

        def step() -> Any:
            reset()
            held.backward(d_out, retain_graph=True)
            return held
    else:
        raise ValueError(f"no backward in mode {mode!r}")
    sync()
    t0 = time.perf_counter_ns()
    out = step()
    sync()
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    grads = {n: t.grad for n, t in zip(GRAD_NAMES, leaves, strict=True)}
    return GradRun(step, out, grads, first_ms)


@dataclass
class GradRef:
    """The float64 oracle on a plan's rows, each element's floor (factor 1) and, per gradient,
    the baseline's max error and the factor β of the floor it needs (None, with the reason,
    where no baseline could be computed)."""

    plan: GradPlan
    values: dict[str, np.ndarray]
    floors: dict[str, np.ndarray]
    baseline_err: dict[str, float | None]
    baseline_ratio: dict[str, float | None]
    fallback_reason: str | None = None

    def factor(self, name: str) -> float:
        """What the floor of a gradient is multiplied by: max(F, K_GRAD × β)."""
        beta = self.baseline_ratio[name]
        return max(GRAD_FLOOR_FACTOR, agreement.K_GRAD * beta if beta else 0.0)


def grad_reference(case: Case, arrays: dict[str, np.ndarray], d_out: np.ndarray,
                   plan: GradPlan) -> GradRef:
    """Oracle, floors and the torch baseline's errors on the plan's rows (pristine arrays)."""
    got = plan_grads(arrays, d_out, case, plan)
    values = {n: got[n] for n in GRAD_NAMES}
    floors = {n: got[f"{n}_floor"] for n in GRAD_NAMES}
    none = dict.fromkeys(GRAD_NAMES)
    try:
        base = baseline_grads(arrays, d_out, case, plan)
    except Exception as exc:  # no baseline: the floor alone, and the record says why
        why = f"gradient baseline raised {exc!r}"[:300]
        return GradRef(plan, values, floors, none, none, why)
    errs = {n: np.abs(base[n] - values[n]) for n in GRAD_NAMES}
    ratios = {n: _ratio_to(errs[n], floors[n]) for n in GRAD_NAMES}
    if not all(np.isfinite(r) for r in ratios.values()):
        return GradRef(plan, values, floors, none, none,
                       f"the gradient baseline's errors over the floor are {ratios}")
    largest: dict[str, float | None] = {n: float(e.max(initial=0.0)) for n, e in errs.items()}
    beta: dict[str, float | None] = dict(ratios)
    return GradRef(plan, values, floors, largest, beta, None)


def _ratio_to(err: np.ndarray, floor: np.ndarray) -> float:
    """max err / floor where the floor is positive (NaN stays NaN)."""
    pos = floor > 0
    return float((err[pos] / floor[pos]).max(initial=0.0)) if pos.any() else 0.0


@dataclass
class GradData:
    """What checking one case's gradients needs: dO, and the oracle of the all-rows plan
    (shared by every backend; a drawn plan's oracle is computed per check)."""

    d_out: np.ndarray  # float64, representable in case.dtype
    full: GradRef | None = None


def grad_data(case: Case, arrays: dict[str, np.ndarray], seed: int) -> GradData:
    """dO of the case (the oracle is computed when a check needs it)."""
    return GradData(upstream_grad(case, seed))


def grad_arrays(grads: dict[str, Any]) -> tuple[dict[str, np.ndarray | None], dict[str, str]]:
    """A backend's gradients (torch or NumPy) as NumPy arrays and the dtype names they had:
    bfloat16 values held exactly in float32, the other dtypes as they are."""
    arrays: dict[str, np.ndarray | None] = {}
    names: dict[str, str] = {}
    for n, g in grads.items():
        if g is None:
            arrays[n] = None
            continue
        names[n] = agreement.dtype_name(g)
        if type(g).__module__.startswith("torch"):
            g = g.detach().to("cpu")
            g = (g.float() if names[n] == "bfloat16" else g).numpy()
        arrays[n] = np.asarray(g)
    return arrays, names


def check_grads(case: Case, arrays: dict[str, np.ndarray], data: GradData,
                grads: dict[str, np.ndarray | None], dtypes: dict[str, str] | None = None,
                seed: int | None = None) -> dict[str, Any]:
    """Agreement entries for dq, dk, dv, a note on which rows were compared, and the seed.

    grads: the backend's gradients as NumPy arrays; dtypes: the dtype name each had (default:
    the array's own); seed: drawn by the caller after the gradients exist, from a secret the
    backend never saw (default: drawn here). It picks the rows beyond the oracle's budget.
    """
    seed = secrets.randbits(63) if seed is None else seed
    plan = grad_plan(case, seed)
    if plan.full:
        data.full = data.full or grad_reference(case, arrays, data.d_out, plan)
        ref = data.full
    else:
        ref = grad_reference(case, arrays, data.d_out, plan)
    return {"entries": grad_entries(case, ref, grads, dtypes), "note": coverage(case, plan),
            "seed": None if plan.full else seed}


def grad_entries(case: Case, ref: GradRef, grads: dict[str, np.ndarray | None],
                 dtypes: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The entries of dq, dk and dv against a reference (see check_grads)."""
    dtypes = dtypes or {}
    return [_entry(case, ref, n, grads.get(n), dtypes.get(n)) for n in GRAD_NAMES]


def _entry(case: Case, ref: GradRef, name: str, got: np.ndarray | None,
           dtype: str | None) -> dict[str, Any]:
    """One gradient's entry: shape, dtype, NaN/Inf over the whole array, errors on the rows
    compared against each element's bound."""
    plan = ref.plan
    shape = grad_shapes(case)[name]
    entry: dict[str, Any] = {"name": name, **_rows(case, plan, name)}
    if got is None:
        return {**entry, "passed": False, "shape": [], "error": "no gradient"}
    if tuple(got.shape) != shape:
        return {**entry, "passed": False, "shape": list(got.shape),
                "error": f"shape {tuple(got.shape)} != expected {shape}"}
    sel = select_rows(got, plan, name)
    factor = ref.factor(name)
    bound = factor * ref.floors[name]
    m = agreement.metrics(sel, ref.values[name])
    m["nonfinite"] = int(got.size - np.count_nonzero(np.isfinite(got)))
    worst = _worst(sel, ref.values[name], bound)
    dtype = dtype or agreement.dtype_name(got)
    entry.update(shape=list(shape), dtype=dtype, **m, **worst,
                 baseline_max_abs_err=ref.baseline_err[name],
                 baseline_floor_ratio=ref.baseline_ratio[name], floor_factor=factor,
                 rule=f"element floor x max({GRAD_FLOOR_FACTOR:g}, {agreement.K_GRAD:g}x "
                 "baseline's error/floor)",
                 floor_min=float(bound.min(initial=0.0)), floor_max=float(bound.max(initial=0.0)))
    if ref.fallback_reason:
        entry.update(rule=f"element floor x {GRAD_FLOOR_FACTOR:g} (no baseline)",
                     fallback_reason=ref.fallback_reason)
    entry["passed"] = bool(m["nonfinite"] == 0 and worst["error_over_bound"] <= 1.0
                           and sel.size > 0)
    if sel.size == 0:
        entry["error"] = "no row of this gradient was compared"
    if dtype != case.dtype:
        entry["passed"] = False
        entry["error"] = f"dtype {dtype}, expected {case.dtype} (the case's dtype)"
    return entry


def _worst(got: np.ndarray, ref: np.ndarray, bound: np.ndarray) -> dict[str, Any]:
    """The element with the largest error over its bound: the ratio and that bound."""
    err = np.abs(np.where(np.isfinite(got), got, np.inf) - ref)
    safe = np.where(bound > 0, bound, 1.0)
    ratio = np.where(bound > 0, err / safe, np.where(err > 0, np.inf, 0.0))
    if ratio.size == 0:
        return {"error_over_bound": 0.0, "bound": 0.0, "worst": "element"}
    at = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    return {"error_over_bound": float(ratio[at]), "bound": float(bound[at]), "worst": "element"}


def grad_shapes(case: Case) -> dict[str, tuple[int, ...]]:
    """The shape of each gradient a backend must return: those of q, k and v."""
    return {"dq": (case.batch, case.heads_q, case.seq_q, case.head_dim),
            "dk": (case.batch, case.heads_kv, case.seq_kv, case.head_dim),
            "dv": (case.batch, case.heads_kv, case.seq_kv, case.dv)}


def select_rows(got: np.ndarray, plan: GradPlan, name: str) -> np.ndarray:
    """The compared rows of a gradient as float64, laid out as the oracle's."""
    if name == "dq":
        return got[:, :, plan.q_rows].astype(np.float64)
    parts = [got[b, h, plan.k_rows] for b, h in plan.groups]
    if not parts:
        return np.empty((0, len(plan.k_rows), got.shape[-1]))
    return np.stack(parts).astype(np.float64)


def _rows(case: Case, plan: GradPlan, name: str) -> dict[str, Any]:
    """Which rows of a gradient are compared, and how they were chosen."""
    drawn = "the first, the last and rows drawn from the check's secret seed"
    if name == "dq":
        return {"rows_checked": "all" if plan.all_q_rows else len(plan.q_rows),
                "rows_total": case.seq_q, "rows_chosen": "every row" if plan.all_q_rows
                else f"{drawn}, in every (batch, head)"}
    whole = plan.all_keys and plan.all_groups
    return {"rows_checked": "all" if whole else len(plan.k_rows) * len(plan.groups),
            "rows_total": case.seq_kv * plan.n_groups,
            "groups_checked": "all" if plan.all_groups else len(plan.groups),
            "rows_chosen": "every row" if whole else
            f"{'every key' if plan.all_keys else len(plan.k_rows)} of {case.seq_kv} keys "
            f"({drawn}) in {len(plan.groups)} of {plan.n_groups} (batch, kv head) groups"}


def coverage(case: Case, plan: GradPlan) -> str:
    """One line: which rows of dq, dk and dv were compared."""
    if plan.full:
        return "every row of dq, dk and dv"
    dq = ("every row" if plan.all_q_rows else
          f"{len(plan.q_rows)} of {case.seq_q} query rows in every head")
    return f"dq: {dq}; dk, dv: {_rows(case, plan, 'dk')['rows_chosen']}"
