"""The log-sum-exp's check: its float64 oracle on the compared rows, a bound per row, the verdict.

A correct kernel's lse differs from the exact one (variants.py) in two ways (docs/variants.md):

- its scores err by e_j, which moves the lse by ln Σ_j p_j e^(e_j) (p: the exact weights): at
  most ln Σ_j p_j e^(E_j) when |e_j| <= E_j, a weighted mean of the keys' bounds, never more
  than their largest. E_j, in a dtype of unit roundoff u accumulating in u_acc: the dot product
  Z·√D·u_acc·scale·Σ_t |q_t k_jt| (a probabilistic bound of a D-term sum, Higham and Mary), the
  product and the scale multiply 2u|s1_j|, a softcap's divide, tanh and multiply u|s1_j| +
  2u|cap·tanh|, ALiBi/bias terms added u(|t_j| + |s_j|), the shift before exp u|s_j − m| and
  exp's result u (the sink's logit is exact: only its shift and exp);
- its own sum and log: the L terms of the denominator summed in u_acc (Z·√L·u_acc) and the sum
  rounded to the dtype (u), the log, the row max added and the result rounded to the returned
  dtype (u_lse·(ln L + 2|lse|)).

The bound is FACTOR times that (twice over in float64, where the oracle errs as much), the
margins of the output's per-element check (verify/bound.py). Rows that see no key must hold
exactly −inf (σ_h with sinks), and −inf is accepted nowhere else; NaN and +inf never.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attnbench import variants
from attnbench.case import Case
from attnbench.plugin.outputs import LSE_CONTRACT, LSE_DTYPES
from attnbench.verify.bound import FACTOR, Z_ELEMENT
from attnbench.verify.reference import blocks, row_visibility, scores
from attnbench.verify.roundoff import ACC_ROUNDOFF, TINY, UNIT_ROUNDOFF

RULE = "lse: score errors weighted by the exact softmax + the sum, log and rounding of the lse"


@dataclass
class LseModel:
    """The oracle's lse on the compared rows and what a correct kernel's may differ by:
    (batch, heads_q, rows) each; `scores` the score errors' part, `seen` the terms of each
    row's denominator (keys seen, + 1 with sinks)."""

    dtype: str
    ref: np.ndarray
    scores: np.ndarray
    seen: np.ndarray

    def bound(self, lse_dtype: str) -> np.ndarray:
        """The per-row bound for an lse returned in lse_dtype; 0 where the sum is empty."""
        u, ua, u_lse = (UNIT_ROUNDOFF[self.dtype], ACC_ROUNDOFF[self.dtype],
                        UNIT_ROUNDOFF[lse_dtype])
        n = np.maximum(self.seen, 1)
        size = np.where(np.isfinite(self.ref), np.abs(self.ref), 0.0)
        own = (Z_ELEMENT * np.sqrt(n) * ua + u + u_lse * (np.log(n) + 2 * size)
               + TINY[lse_dtype])
        tol = FACTOR * (self.scores + own) * (2 if self.dtype == "float64" else 1)
        return np.where(self.seen > 0, tol, 0.0)


def lse_model(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray) -> LseModel:
    """The float64 lse of the compared rows and the score errors' part of its bound."""
    shape = (case.batch, case.heads_q, len(rows))
    ref, part, seen = np.empty(shape), np.zeros(shape), np.zeros(shape)
    q, k, bias, sinks = arrays["q"], arrays["k"], arrays.get("bias"), arrays.get("sinks")
    for b, qs, ks, r, at in blocks(case, rows):
        heads = np.arange(qs.start, qs.stop)
        qb, kb = q[b:b + 1, qs], k[b:b + 1, ks]
        s = scores(qb, kb, case, r, b, heads, bias, None, sinks)
        lse = variants.log_sum_exp(s)
        err = _score_errors(qb, kb, case, r, b, s)
        with np.errstate(invalid="ignore"):  # −inf − (−inf) on a row that sees no key
            p = np.where(np.isfinite(s), np.exp(s - np.where(np.isfinite(lse), lse, 0)[..., None]),
                         0.0)
        ref[b:b + 1, qs, at] = lse
        part[b:b + 1, qs, at] = np.log1p((p * np.expm1(err)).sum(axis=-1))
        seen[b:b + 1, qs, at] = np.isfinite(s).sum(axis=-1)
    return LseModel(case.dtype, ref, part, seen)


def _score_errors(q: np.ndarray, k: np.ndarray, case: Case, rows: np.ndarray, b: int,
                  s: np.ndarray) -> np.ndarray:
    """E_j of every score of the block (0 where masked), the sink's column included."""
    u, ua = UNIT_ROUNDOFF[case.dtype], ACC_ROUNDOFF[case.dtype]
    kx = np.repeat(k, q.shape[1] // k.shape[1], axis=1)
    qr, kt = q[:, :, rows, :], np.swapaxes(kx, -1, -2)
    scale = case.softmax_scale
    s1 = np.matmul(qr, kt) * scale
    err = Z_ELEMENT * np.sqrt(case.head_dim) * ua * scale * np.matmul(np.abs(qr), np.abs(kt))
    err += 2 * u * np.abs(s1)
    capped = variants.apply_softcap(s1.copy(), case.softcap)
    if case.softcap is not None:
        err += u * np.abs(s1) + 2 * u * np.abs(capped)
    final = s[..., :s1.shape[-1]]
    vis = np.broadcast_to(row_visibility(case, rows, b), s1.shape)
    if case.alibi or case.bias != "none":
        terms = np.where(vis, final - capped, 0.0)
        err += u * (np.abs(terms) + np.abs(np.where(vis, final, 0.0)))
    if s.shape[-1] > s1.shape[-1]:  # the sink: its logit exact, one more column
        err = np.concatenate([err, np.zeros((*err.shape[:-1], 1))], axis=-1)
    top = s.max(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        shift = np.where(np.isfinite(s), np.abs(s - np.where(np.isfinite(top), top, 0)), 0.0)
    err += u * shift + u
    return np.where(np.isfinite(s), err, 0.0)


def judge_lse(values: np.ndarray, dtype: str, model: LseModel, rows: np.ndarray,
              case: Case) -> dict[str, Any]:
    """The lse's agreement entry: values (batch, heads_q, seq_q) as shipped, float64 or
    float32 (every row scanned for NaN, +inf and −inf where a row sees a key)."""
    entry: dict[str, Any] = {"name": "lse", "shape": list(values.shape), "dtype": dtype,
                             "rule": RULE}
    if dtype not in LSE_DTYPES:
        return {**entry, "passed": False,
                "error": f"lse dtype {dtype}, not float32 or float64: {LSE_CONTRACT}"}
    full = values.astype(np.float64)
    empty = variants.empty_rows(case)[:, None, :]  # their lse is −inf (σ_h with sinks)
    allowed = empty if not case.sinks else np.zeros_like(empty)
    bad = np.isnan(full) | (full == np.inf) | ((full == -np.inf) & ~allowed)
    got = full[:, :, rows]
    tol = model.bound(dtype)
    err, ratio = _errors(got, model.ref, tol)
    at = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else None
    finite = np.isfinite(err)
    entry.update({
        "max_abs_err": float(err[finite].max(initial=0.0)),  # the infinite ones: in ratio
        "mean_abs_err": float(err[finite].mean()) if finite.any() else 0.0,
        "rel_l2_err": _rel_l2(got, model.ref), "nonfinite": int(bad.sum()),
        "error_over_bound": float(ratio[at]) if at is not None else 0.0,
        "bound": float(tol[at]) if at is not None else 0.0,
        "bound_min": float(tol[tol > 0].min(initial=np.inf)) if (tol > 0).any() else 0.0,
        "bound_max": float(tol.max(initial=0.0)),
        "worst": _where(at, rows, model),
    })
    entry["passed"] = bool(entry["nonfinite"] == 0 and entry["error_over_bound"] <= 1.0)
    return entry


def _errors(got: np.ndarray, ref: np.ndarray, tol: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """|got − ref| (0 where both are −inf, inf at NaN) and its ratio to tol (inf over 0)."""
    with np.errstate(invalid="ignore"):  # −inf − (−inf): equal, an error of 0
        err = np.where(got == ref, 0.0, np.abs(got - ref))
    err = np.where(np.isnan(err), np.inf, err)
    ratio = np.where(tol > 0, err / np.where(tol > 0, tol, 1.0), np.where(err > 0, np.inf, 0.0))
    return err, ratio


def calibration(model: LseModel, base: np.ndarray) -> dict[str, Any]:
    """The same-dtype baseline's lse (on the compared rows, float32 or float64 as
    verify/baseline.py computes it) judged by the bound: a live check of the bound."""
    dtype = "float64" if model.dtype == "float64" else "float32"
    ratio = _errors(base, model.ref, model.bound(dtype))[1]
    return {"baseline_over_bound": float(ratio.max(initial=0.0))}


def _rel_l2(got: np.ndarray, ref: np.ndarray) -> float:
    """‖got − ref‖ / ‖ref‖ over the rows where the oracle is finite (inf where got is not)."""
    fin = np.isfinite(ref)
    if not fin.any():
        return 0.0
    diff = got[fin] - ref[fin]
    if not np.isfinite(diff).all():
        return float("inf")
    norm = float(np.linalg.norm(ref[fin]))
    return float(np.linalg.norm(diff) / norm) if norm else float(np.linalg.norm(diff))


def _where(at: tuple[Any, ...] | None, rows: np.ndarray, model: LseModel) -> str:
    if at is None:
        return "nothing compared"
    b, h, r = (int(i) for i in at)
    empty = " (it sees no key: its lse is exact)" if model.seen[b, h, r] == 0 else ""
    return f"lse of batch {b}, head {h}, query row {int(rows[r])}{empty}"
