"""Error metrics against the oracle, and the pass rules: the rounding model's (verify/bound.py)
for outputs, k × the naive baseline's error + a floor for gradients.

Also what fails regardless of the error: NaN/Inf anywhere in the output (the whole output is
scanned, not only the compared rows), a wrong shape or dtype, and inputs the backend changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnbench.verify import bound
from attnbench.verify.rounding import Model

K_OUTPUT = 2.0
K_GRAD = 3.0
# Fixed bounds when no same-dtype baseline exists (xformers' forward tolerances).
FIXED_ATOL = {"float64": 1e-10, "float32": 3e-4, "float16": 4e-3, "bfloat16": 2e-2}
# Floor added to k × baseline for gradients: a couple of units in the last place at magnitude 1.
# Outputs are judged by the rounding model instead (verify/rounding.py, verify/bound.py).
FLOOR = {"float64": 1e-12, "float32": 2e-6, "float16": 2e-3, "bfloat16": 1.6e-2}


@dataclass(frozen=True)
class Rule:
    """What one output's or gradient's bound is made of.

    Gradients: dtype, k and the same-dtype baseline's error, or why there is none (then fixed
    bounds). Outputs: the rounding model of the compared rows (`model`), the baseline's
    allowance where the baseline itself exceeded the model, and the baseline's own verdict
    under the model (`calibration`, stored in the record as a live check of the model)."""

    dtype: str
    baseline_max_err: float | None
    k: float = K_OUTPUT
    fallback_reason: str | None = None  # why there is no baseline error
    model: Model | None = None
    allowance: bound.Allowance | None = None
    calibration: dict[str, Any] | None = None
    rows: np.ndarray | None = None  # the query rows the model covers (to name the worst)


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


def verdict(m: dict[str, Any], rule: Rule) -> dict[str, Any]:
    """The gradients' pass rule: k × baseline + floor, or fixed bounds (and why)."""
    base = rule.baseline_max_err
    out: dict[str, Any]
    if base is not None and np.isfinite(base):
        bound_ = rule.k * base + FLOOR[rule.dtype]
        out = {"bound": bound_, "rule": f"{rule.k:g}x baseline + floor"}
    else:
        why = rule.fallback_reason or (f"the baseline's max error is {base}" if base is not None
                                       else "no same-dtype baseline")
        bound_ = FIXED_ATOL[rule.dtype]
        out = {"bound": bound_, "rule": "fixed atol", "fallback_reason": why}
    out["error_over_bound"] = _ratio(np.asarray(m["max_abs_err"]), np.asarray(bound_))
    out["passed"] = bool(m["nonfinite"] == 0 and m["max_abs_err"] <= bound_)
    return out


def _ratios(err: np.ndarray, bound_: np.ndarray) -> np.ndarray:
    """err / bound element-wise; 0 where both are 0, inf where only bound is."""
    safe = np.where(bound_ > 0, bound_, 1.0)
    return np.where(bound_ > 0, err / safe, np.where(err > 0, np.inf, 0.0))


def _ratio(err: np.ndarray, bound_: np.ndarray) -> float:
    return float(_ratios(err, bound_))


def compare(
    name: str, out: Any, expected_shape: tuple[int, ...], select: Callable[[Any], np.ndarray],
    ref: np.ndarray, rule: Rule, dtype: str | None = None,
) -> dict[str, Any]:
    """Metrics and verdict for one output or gradient: shape and dtype first, NaN/Inf over
    the whole array, errors on the part select() picks (as float64) against ref; an output
    (rule.model set) is judged by the rounding model, a gradient by verdict().

    dtype: the dtype the backend returned, when out is a host copy in another one (bfloat16
    values arrive in float32)."""
    shape = tuple(getattr(out, "shape", ()))
    if shape != tuple(expected_shape):
        return {"name": name, "passed": False, "shape": list(shape),
                "error": f"shape {shape} != expected {tuple(expected_shape)}"}
    got = select(out)
    m = metrics(got, ref)
    m["nonfinite"] = nonfinite_count(out)
    entry = {"name": name, "shape": list(shape), "dtype": dtype or dtype_name(out), **m,
             "baseline_max_abs_err": rule.baseline_max_err}
    if rule.model is not None:
        entry.update(bound.judge(got, m["nonfinite"], rule.model, rule.allowance, rule.rows))
        entry.update(rule.calibration or {})
    else:
        entry.update(verdict(m, rule))
    if entry["dtype"] != rule.dtype:
        entry["passed"] = False
        entry["error"] = f"dtype {entry['dtype']}, expected {rule.dtype} (the case's dtype)"
    return entry


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
    return all(np.array_equal(to_numpy64(x[i:i + per]), pristine[i:i + per], equal_nan=True)
               for i in range(0, pristine.shape[0], per))
