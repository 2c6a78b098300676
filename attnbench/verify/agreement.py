"""Error metrics against the oracle and the pass rule (k × naive-baseline error + row floor).

Also what fails regardless of the error: NaN/Inf anywhere in the output (the whole output is
scanned, not only the compared rows), a wrong shape or dtype, and inputs the backend changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

K_OUTPUT = 2.0
K_GRAD = 3.0
# Fixed bounds when no same-dtype baseline exists (xformers' forward tolerances).
FIXED_ATOL = {"float64": 1e-10, "float32": 3e-4, "float16": 4e-3, "bfloat16": 2e-2}
# Floor added to k × baseline where no per-row floor is given (gradients): a couple of units in
# the last place at magnitude 1. Outputs get the floor derived per row (attnbench.verify.floor).
FLOOR = {"float64": 1e-12, "float32": 2e-6, "float16": 2e-3, "bfloat16": 1.6e-2}


@dataclass(frozen=True)
class Rule:
    """What one output's bound is made of: dtype, k and the baseline's error, or why none."""

    dtype: str
    baseline_max_err: float | None
    k: float = K_OUTPUT
    fallback_reason: str | None = None  # why there is no baseline error (then fixed bounds)
    floor: np.ndarray | None = None  # per (batch, head, row) floor; None: the constant FLOOR
    magnitudes: dict[str, float] | None = None  # what the floor was derived from (for records)


def to_numpy64(x: Any) -> np.ndarray:
    """Any array-like (NumPy, torch on any device and dtype) as float64 NumPy."""
    if type(x).__module__.startswith("torch"):
        return x.detach().to("cpu").double().numpy()
    return np.asarray(x, dtype=np.float64)


def dtype_name(x: Any) -> str:
    """An array's dtype as the case spells it: 'float32', 'bfloat16' (torch's prefix dropped)."""
    return str(getattr(x, "dtype", type(x).__name__)).removeprefix("torch.")


def nonfinite_count(x: Any) -> int:
    """NaN and Inf entries in a whole array, counted where it lives (no float64 copy)."""
    if type(x).__module__.startswith("torch"):
        import torch

        return int((~torch.isfinite(x.detach())).sum().item())
    a = np.asarray(x)
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def metrics(out: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Max abs, mean abs, relative L2 errors and the NaN/Inf count of out against ref."""
    nonfinite = int(np.size(out) - np.isfinite(out).sum())
    diff = np.abs(np.where(np.isfinite(out), out, 0) - ref)
    norm = float(np.linalg.norm(ref))
    return {
        "max_abs_err": float(diff.max()) if diff.size else 0.0,
        "mean_abs_err": float(diff.mean()) if diff.size else 0.0,
        "rel_l2_err": float(np.linalg.norm(diff) / norm) if norm else float(np.linalg.norm(diff)),
        "nonfinite": nonfinite,
    }


def verdict(m: dict[str, Any], rule: Rule, row_err: np.ndarray | None = None) -> dict[str, Any]:
    """Apply the pass rule; the bound used, how it was set (and why, if fixed), and passed.

    row_err: the max error of each (batch, head, row), needed for a per-row floor. The entry's
    `error_over_bound` is the worst row's error over that row's bound; `bound` is that row's.
    """
    base = rule.baseline_max_err
    out: dict[str, Any]
    if base is not None and np.isfinite(base):
        if rule.floor is not None and row_err is not None:
            return _row_verdict(m, rule, row_err)
        bound = rule.k * base + FLOOR[rule.dtype]
        out = {"bound": bound, "rule": f"{rule.k:g}x baseline + floor"}
    else:
        why = rule.fallback_reason or (f"the baseline's max error is {base}" if base is not None
                                       else "no same-dtype baseline")
        bound = FIXED_ATOL[rule.dtype]
        out = {"bound": bound, "rule": "fixed atol", "fallback_reason": why}
    out["error_over_bound"] = _ratio(np.asarray(m["max_abs_err"]), np.asarray(bound))
    out["passed"] = bool(m["nonfinite"] == 0 and m["max_abs_err"] <= bound)
    return out


def _row_verdict(m: dict[str, Any], rule: Rule, row_err: np.ndarray) -> dict[str, Any]:
    """k × baseline + the floor of each row, row by row."""
    assert rule.baseline_max_err is not None and rule.floor is not None
    bounds = rule.k * rule.baseline_max_err + np.broadcast_to(rule.floor, row_err.shape)
    ratios = _ratios(row_err, bounds)
    worst = np.unravel_index(int(np.argmax(ratios)), ratios.shape) if ratios.size else ()
    ratio = float(ratios[worst]) if ratios.size else 0.0
    bound = float(bounds[worst]) if ratios.size else 0.0
    return {"bound": bound, "rule": f"{rule.k:g}x baseline + row floor",
            "error_over_bound": ratio, "floor_min": float(rule.floor.min(initial=0.0)),
            "floor_max": float(rule.floor.max(initial=0.0)), "magnitudes": rule.magnitudes,
            "passed": bool(m["nonfinite"] == 0 and ratio <= 1.0)}


def _ratios(err: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """err / bound element-wise; 0 where both are 0 (an exact zero row), inf where only bound is."""
    safe = np.where(bound > 0, bound, 1.0)
    return np.where(bound > 0, err / safe, np.where(err > 0, np.inf, 0.0))


def _ratio(err: np.ndarray, bound: np.ndarray) -> float:
    return float(_ratios(err, bound))


def compare(
    name: str, out: Any, expected_shape: tuple[int, ...], select: Callable[[Any], np.ndarray],
    ref: np.ndarray, rule: Rule, dtype: str | None = None,
) -> dict[str, Any]:
    """Metrics and verdict for one output or gradient: shape and dtype first, NaN/Inf over
    the whole array, errors on the part select() picks (as float64) against ref.

    dtype: the dtype the backend returned, when out is a host copy in another one (bfloat16
    values arrive in float32)."""
    shape = tuple(getattr(out, "shape", ()))
    if shape != tuple(expected_shape):
        return {"name": name, "passed": False, "shape": list(shape),
                "error": f"shape {shape} != expected {tuple(expected_shape)}"}
    got = select(out)
    m = metrics(got, ref)
    m["nonfinite"] = nonfinite_count(out)
    row_err = row_errors(got, ref) if rule.floor is not None else None
    entry = {"name": name, "shape": list(shape), "dtype": dtype or dtype_name(out), **m,
             "baseline_max_abs_err": rule.baseline_max_err, **verdict(m, rule, row_err)}
    if entry["dtype"] != rule.dtype:
        entry["passed"] = False
        entry["error"] = f"dtype {entry['dtype']}, expected {rule.dtype} (the case's dtype)"
    return entry


def row_errors(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Max abs error of each (batch, head, row) over the head dim; NaN/Inf count as inf."""
    diff = np.abs(np.where(np.isfinite(out), out, np.inf) - ref)
    return diff.max(axis=-1, initial=0.0)


def rows_of(rows: np.ndarray, seq: int) -> Callable[[Any], np.ndarray]:
    """select() for compare: the given query rows (axis 2) of an output, as float64."""
    if len(rows) == seq:
        return to_numpy64
    return lambda out: to_numpy64(out[:, :, rows, :])


def changed_inputs(inputs: Any, handed: dict[str, Any], arrays: dict[str, np.ndarray],
                   scale: float) -> list[str]:
    """Sentences for each input the backend reassigned or overwrote since it got them.

    handed: the q, k, v objects given to the backend; arrays: their pristine float64 values.
    Compared exactly (the values are representable in every dtype), one head at a time.
    """
    changed = []
    for n, original in handed.items():
        if getattr(inputs, n) is not original:
            changed.append(f"reassigned inputs.{n}")
        elif not _same_values(original, arrays[n]):
            changed.append(f"overwrote {n} in place")
    if inputs.scale != scale:
        changed.append(f"changed inputs.scale from {scale:g} to {inputs.scale!r}")
    if not changed:
        return []
    return [f"the backend modified its inputs ({', '.join(changed)}) during prepare() or a "
            "call: a result computed from changed inputs is not trusted; the oracle and the "
            "baseline used the original values"]


def _same_values(x: Any, pristine: np.ndarray) -> bool:
    """Exactly equal, compared a slab of the first axis at a time (bounded memory)."""
    if tuple(getattr(x, "shape", ())) != pristine.shape:
        return False
    per = max(1, 2**22 // max(1, int(np.prod(pristine.shape[1:]))))
    return all(np.array_equal(to_numpy64(x[i:i + per]), pristine[i:i + per])
               for i in range(0, pristine.shape[0], per))
