"""The pass rule of a forward output: per element, per-head L2, output scale and softmax scale.

From the rounding model of the compared rows (verify/rounding.py: det, sigma, ...), an output
passes when all four checks hold (u: the dtype's unit roundoff):

- every element: |err| <= 2 · (det + 4 sigma), at most the convex-hull cap; exactly 0 on rows
  that see no key;
- every (batch, head): ||err||₂ <= 1.25 · sqrt(M + 2√8 |a|₂ + 16 max a), M the mean of the sum
  of squared errors a correct kernel makes (Σ RNE·(u o)² + sigma² + drift²), a the weights of
  the independent squares it is made of (one per element, per row, per key of a row; Laurent &
  Massart's tail, e^-8 for Gaussian errors): a global error (10 % noise, a dropped key) that
  each element hides in its rounding adds up here;
- every (batch, head): the fitted output scale <err, o> / <o, o> and the fitted softmax scale
  <err, t> / <t, t> (t = d o / d log scale) are at most 1.25 · (4 standard deviations under the
  model + the model's drift along o or t + u/2, a scalar rounded to the dtype, + 4 u_acc, the
  accumulation type's fast exp and division): a 1 % scale error is a tiny change per element
  but a large fitted scale.

The margins were set by the study (benchmarks/false_alarms.py, docs/agreement.md). A same-dtype
baseline that itself exceeds the model is reported, and k times its own per-row errors, L2 norms
and fitted scales are added to the bounds (`Allowance`): never the whole output's largest error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attnbench.verify.rounding import ACC_ROUNDOFF, RNE_VARIANCE, UNIT_ROUNDOFF, Model

FACTOR = 2.0  # margin over the model of the per-element check
FACTOR_FIT = 1.25  # margin over the model of the fitted scales (averages: nearly Gaussian)
Z_ELEMENT = 4.0  # standard deviations of the random part allowed per element
FACTOR_L2 = 1.25  # margin over the model's L2 bound (a sum of many squares: concentrated)
TAIL_L2 = 8.0  # x of Laurent & Massart's tail of Σ a_i Z_i²: P(> mean + 2√x |a|₂ + 2x |a|_∞)
#                ≤ e^-x (Gaussian errors; rounding errors, bounded, have lighter tails)
Z_SCALE = 4.0  # standard deviations of the fitted scale
SYSTEMATIC = 1 / 2  # a systematic relative error a correct kernel may have (a scalar rounded
#                     to the dtype), in units of u
APPROX = 4.0  # and one from the accumulation type's fast exp and division, in units of its u:
#              CUDA documents 2 ulp (= 4 u) for exp2f, __expf and __fdividef; an H200's float32
#              memory-efficient SDPA kernel showed fitted output scales of ~1 u on every head
K_BASELINE = 2.0  # the baseline's own errors count k times when it exceeds the model
RULE = "rounding model: per element, per-head rel L2, output scale and softmax scale"


@dataclass
class Allowance:
    """What a baseline that exceeded the model adds: k × its per-row max errors (batch, heads,
    rows, 1), its per-head L2 error norms and its fitted scales (batch, heads)."""

    rows: np.ndarray
    l2: np.ndarray
    scale: np.ndarray
    temp: np.ndarray
    reason: str


def element_bounds(model: Model, allowance: Allowance | None = None) -> np.ndarray:
    """The per-element bound (batch, heads, rows, dv); 0 on rows that see no key."""
    bound = np.minimum(FACTOR * (model.det + Z_ELEMENT * model.sigma), model.cap)
    if allowance is not None:
        bound = bound + allowance.rows
    return np.where(model.empty, 0.0, bound)


def element_ratios(got: np.ndarray, model: Model, allowance: Allowance | None = None
                   ) -> np.ndarray:
    """|got − oracle| / the element bound, per element of the compared rows; inf at NaN/Inf."""
    finite = np.isfinite(got)
    abs_err = np.where(finite, np.abs(np.where(finite, got, 0.0) - model.ref), np.inf)
    return _ratios(abs_err, element_bounds(model, allowance))


def head_stats(err: np.ndarray, model: Model) -> dict[str, np.ndarray]:
    """Per (batch, head): the error's L2 norm and fitted scale α, and what the model expects
    of each: the L2 norm's bound and the fitted scales' standard deviations and drifts.

    The sum of squared errors is a weighted sum Σ a_i Z_i² of independent squares: one per
    output element (its own rounding), one per row (the relative error it shares) and one per
    key of each row (a key's error moves every channel of the row at once); its bound is
    Laurent & Massart's tail: mean + 2√x |a|₂ + 2x max a, x = TAIL_L2."""
    ref, u2 = model.ref, RNE_VARIANCE * UNIT_ROUNDOFF[model.dtype] ** 2
    own = u2 * ref * ref
    var = np.minimum(own + model.sigma ** 2, model.cap ** 2)
    o2_row = (ref * ref).sum(axis=3)  # (B, H, R)
    shared = model.rho[..., 0] * o2_row
    o2 = o2_row.sum(axis=2)
    safe = np.where(o2 > 0, o2, 1.0)
    spread = np.sqrt(model.key_spread[..., 0].sum(axis=2) + (own * own).sum(axis=(2, 3))
                     + (shared * shared).sum(axis=2))  # |a|₂ of the squares' weights
    heaviest = np.maximum.reduce([model.key_max[..., 0].max(axis=2, initial=0.0),
                                  own.max(axis=(2, 3), initial=0.0),
                                  shared.max(axis=2, initial=0.0)])  # |a|_∞
    scale_var = (model.key_scale[..., 0].sum(axis=2) + (own * ref * ref).sum(axis=(2, 3))
                 + (shared * o2_row).sum(axis=2))
    temp = model.temp
    t2 = (temp * temp).sum(axis=(2, 3))
    safe_t = np.where(t2 > 0, t2, 1.0)
    ot_row = (ref * temp).sum(axis=3)
    temp_var = (model.key_temp[..., 0].sum(axis=2) + (own * temp * temp).sum(axis=(2, 3))
                + (model.rho[..., 0] * ot_row * ot_row).sum(axis=2))
    return {
        "l2": np.sqrt((err * err).sum(axis=(2, 3))),
        "l2_model": np.sqrt(var.sum(axis=(2, 3)) + 2 * np.sqrt(TAIL_L2) * spread
                            + 2 * TAIL_L2 * heaviest + model.drift_sq),
        "scale": np.where(o2 > 0, (err * ref).sum(axis=(2, 3)) / safe, 0.0),
        "scale_sd": np.sqrt(scale_var) / safe,
        "scale_drift": np.abs(model.drift_o) / safe,
        "has_output": o2 > 0,
        "temp": np.where(t2 > 0, (err * temp).sum(axis=(2, 3)) / safe_t, 0.0),
        "temp_sd": np.sqrt(temp_var) / safe_t,
        "temp_drift": np.abs(model.drift_t) / safe_t,
        "has_temp": t2 > 0,
    }


def judge(got: np.ndarray, nonfinite: int, model: Model, allowance: Allowance | None = None,
          rows: np.ndarray | None = None) -> dict[str, Any]:
    """The verdict of an output (float64, on the compared rows) against the model: each
    check's worst ratio, the worst check, where it is, its bound there, and passed.

    nonfinite: NaN/Inf anywhere in the whole output (they always fail); rows: the query rows
    compared (to name the worst one)."""
    finite = np.isfinite(got)
    err = np.where(finite, got, 0.0) - model.ref
    abs_err = np.where(finite, np.abs(err), np.inf)
    bounds = element_bounds(model, allowance)
    ratios = {"element": _ratios(abs_err, bounds)}
    _fit_limits(err, model, allowance, ratios)
    checks = {n: _worst(r) for n, r in ratios.items()}
    name = max(checks, key=lambda n: checks[n][0])
    ratio, at = checks[name]
    largest = _worst(abs_err)[1]  # where max_abs_err is: "bound" is that element's bound
    seen = bounds[np.broadcast_to(~model.empty, bounds.shape)]
    entry = {
        "rule": RULE if allowance is None else f"{RULE}, + {K_BASELINE:g}x baseline per row",
        "error_over_bound": ratio, "worst": _where(name, at, rows, model),
        "bound": float(bounds[largest]) if largest else 0.0,
        "checks": {n: c[0] for n, c in checks.items()},
        "bound_min": float(seen.min(initial=np.inf)) if seen.size else 0.0,
        "bound_max": float(seen.max(initial=0.0)),
        "magnitudes": model.magnitudes,
        "passed": bool(nonfinite == 0 and ratio <= 1.0),
    }
    if allowance is not None:
        entry["baseline_fallback"] = allowance.reason
    return entry


def _fit_limits(err: np.ndarray, model: Model, allowance: Allowance | None,
                ratios: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-head checks: their bounds (returned) and ratios (added to ratios)."""
    st = head_stats(err, model)
    extra = allowance or Allowance(0.0, 0.0, 0.0, 0.0, "")  # type: ignore[arg-type]
    sys_err = SYSTEMATIC * UNIT_ROUNDOFF[model.dtype] + APPROX * ACC_ROUNDOFF[model.dtype]
    limits = {
        "rel_l2": FACTOR_L2 * st["l2_model"] + extra.l2,
        "scale": FACTOR_FIT * (Z_SCALE * st["scale_sd"] + st["scale_drift"] + sys_err)
        + extra.scale,
        "softmax_scale": FACTOR_FIT * (Z_SCALE * st["temp_sd"] + st["temp_drift"] + sys_err)
        + extra.temp,
    }
    ratios["rel_l2"] = _ratios(st["l2"], limits["rel_l2"])
    ratios["scale"] = np.where(st["has_output"], _ratios(np.abs(st["scale"]), limits["scale"]),
                               0.0)
    ratios["softmax_scale"] = np.where(st["has_temp"], _ratios(np.abs(st["temp"]),
                                                               limits["softmax_scale"]), 0.0)
    return limits


def allowance_from(base_out: np.ndarray, model: Model, reason: str) -> Allowance:
    """k × the baseline's own per-row errors, L2 norms and fitted scales."""
    err = np.where(np.isfinite(base_out), base_out, np.inf) - model.ref
    st = head_stats(np.where(np.isfinite(err), err, 0.0), model)
    return Allowance(K_BASELINE * np.abs(err).max(axis=-1, keepdims=True, initial=0.0),
                     K_BASELINE * st["l2"], K_BASELINE * np.abs(st["scale"]),
                     K_BASELINE * np.abs(st["temp"]), reason)


def _ratios(err: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """err / bound element-wise; 0 where both are 0, inf where only the bound is."""
    safe = np.where(bound > 0, bound, 1.0)
    return np.where(bound > 0, err / safe, np.where(err > 0, np.inf, 0.0))


def _worst(ratios: np.ndarray) -> tuple[float, tuple[int, ...] | None]:
    """The largest ratio and its index (None for an empty array)."""
    if ratios.size == 0:
        return 0.0, None
    at = np.unravel_index(int(np.argmax(ratios)), ratios.shape)
    return float(ratios[at]), tuple(int(i) for i in at)


def _where(check: str, at: tuple[int, ...] | None, rows: np.ndarray | None,
           model: Model) -> str:
    """Where the worst check is, in words."""
    if at is None:
        return "nothing compared"
    head = f"batch {at[0]}, head {at[1]}"
    if check == "element":
        row = int(rows[at[2]]) if rows is not None else at[2]
        empty = " (it sees no key: it must be exactly 0)" if model.empty[at[0], 0, at[2], 0] \
            else ""
        return f"element at {head}, query row {row}{empty}, channel {at[3]}"
    what = {"rel_l2": "relative L2 error", "scale": "fitted output scale",
            "softmax_scale": "fitted softmax scale"}[check]
    return f"{what} of {head}"
