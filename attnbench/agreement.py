"""Error metrics against the oracle and the pass rule (k × naive-baseline error + floor)."""

from __future__ import annotations

from typing import Any

import numpy as np

K_OUTPUT = 2.0
K_GRAD = 3.0
# Fixed bounds when no same-dtype baseline exists (xformers' forward tolerances).
FIXED_ATOL = {"float64": 1e-10, "float32": 3e-4, "float16": 4e-3, "bfloat16": 2e-2}
# Floor added to k × baseline: a couple of units in the last place at magnitude 1.
FLOOR = {"float64": 1e-12, "float32": 2e-6, "float16": 2e-3, "bfloat16": 1.6e-2}


def to_numpy64(x: Any) -> np.ndarray:
    """Any array-like (NumPy, torch on any device and dtype) as float64 NumPy."""
    if type(x).__module__.startswith("torch"):
        return x.detach().to("cpu").double().numpy()
    return np.asarray(x, dtype=np.float64)


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


def verdict(
    m: dict[str, Any], dtype: str, baseline_max_err: float | None, k: float = K_OUTPUT
) -> dict[str, Any]:
    """Apply the pass rule; returns the bound used, how it was set, and passed."""
    if baseline_max_err is not None and np.isfinite(baseline_max_err):
        bound, rule = k * baseline_max_err + FLOOR[dtype], f"{k:g}x baseline + floor"
    else:
        bound, rule = FIXED_ATOL[dtype], "fixed atol"
    passed = m["nonfinite"] == 0 and m["max_abs_err"] <= bound
    return {"bound": bound, "rule": rule, "passed": bool(passed)}


def compare(
    name: str,
    out: Any,
    ref: np.ndarray,
    rows: np.ndarray,
    dtype: str,
    baseline_max_err: float | None,
    expected_shape: tuple[int, ...],
    k: float = K_OUTPUT,
) -> dict[str, Any]:
    """Metrics and verdict for one output or gradient, on the oracle's rows (shape first)."""
    shape = tuple(getattr(out, "shape", ()))
    if shape != tuple(expected_shape):
        return {"name": name, "passed": False, "shape": list(shape),
                "error": f"shape {shape} != expected {tuple(expected_shape)}"}
    got = to_numpy64(out[:, :, rows, :] if len(rows) != shape[2] else out)
    m = metrics(got, ref)
    return {"name": name, "shape": list(shape), **m,
            "baseline_max_abs_err": baseline_max_err, **verdict(m, dtype, baseline_max_err, k)}
