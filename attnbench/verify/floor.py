"""The rounding floor of the pass rule, derived per query row from the magnitudes of the case.

A correct implementation in a dtype of unit roundoff u errs, on output row i, by about

    u · V_i · (1 + A_i)  +  u_sum · V_i · log2(1 + L_i)

where A_i = max_j scale · Σ_t |q_it| |k_jt| over the keys row i sees (a score's rounding error is
at most a few u times this sum of magnitudes, and exp turns an absolute error in the score into a
relative error of the weight: δp/p = δs), V_i = max |v_j| over those keys (the weights multiply
v), and L_i the number of keys it sees (sums of L_i terms, in blocks or pairwise, add a few
roundings per doubling, in the precision of the accumulator u_sum: the dtype's own for float32
and float64, float32 for float16 and bfloat16, whose kernels all accumulate in float32).
docs/agreement.md gives the derivation and the study that fixed the constant.
"""

from __future__ import annotations

import numpy as np

from attnbench import variants
from attnbench.case import Case
from attnbench.verify.reference import expand_kv

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11,
                 "bfloat16": 2.0**-8}
SUM_ROUNDOFF = {**UNIT_ROUNDOFF, "float16": 2.0**-24, "bfloat16": 2.0**-24}
FLOOR_FACTOR = 2.0  # the study's worst correct implementation needs 0.8 (float32)
ROW_BLOCK_ENTRIES = 2**22  # score entries per block while the magnitudes are computed


def row_magnitudes(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """A (max score magnitude, ALiBi and bias terms included), V (max |v|) and L (keys seen)
    per (batch, head, row)."""
    q, k, v = arrays["q"], expand_kv(arrays["k"], case.heads_q), expand_kv(
        arrays["v"], case.heads_q)
    abs_q, abs_kt = np.abs(q), np.abs(np.swapaxes(k, -1, -2))
    absmax_v = np.abs(v).max(axis=-1)  # (B, H, Skv)
    per_block = max(1, ROW_BLOCK_ENTRIES // max(1, case.batch * case.heads_q * case.seq_kv))
    s_parts, v_parts = [], []
    for start in range(0, len(rows), per_block):
        r = rows[start:start + per_block]
        vis = _visibility(case, r)  # (B, 1, R, Skv)
        s = np.matmul(abs_q[:, :, r, :], abs_kt) * case.softmax_scale
        s += _abs_terms(arrays, case, r)
        s_parts.append(np.where(vis, s, 0.0).max(axis=-1, initial=0.0))
        v_parts.append(np.where(vis, absmax_v[:, :, None, :], 0.0).max(axis=-1, initial=0.0))
    seen = _visibility(case, rows).sum(axis=-1)
    return {"A": np.concatenate(s_parts, axis=-1), "V": np.concatenate(v_parts, axis=-1),
            "L": np.broadcast_to(seen, (case.batch, case.heads_q, len(rows)))}


def _visibility(case: Case, rows: np.ndarray) -> np.ndarray:
    """(batch, 1, len(rows), seq_kv) visibility of the given rows."""
    return np.stack([variants.visibility(case, b, rows) for b in range(case.batch)])[:, None]


def _abs_terms(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray) -> np.ndarray | float:
    """|ALiBi + bias| on the given rows, (batch, heads, R, Skv), or 0 when the case has none."""
    heads = np.arange(case.heads_q)
    terms = [variants.score_terms(case, b, heads, rows, arrays.get("bias"))
             for b in range(case.batch)]
    if terms[0] is None:
        return 0.0
    return np.abs(np.stack([np.broadcast_to(t, (case.heads_q, *t.shape[1:])) for t in terms]))


def row_floor(magnitudes: dict[str, np.ndarray], dtype: str,
              factor: float = FLOOR_FACTOR) -> np.ndarray:
    """The floor per (batch, head, row): factor · V · (u (1 + A) + u_sum log2(1 + L))."""
    m = magnitudes
    sums = SUM_ROUNDOFF[dtype] * np.log2(1.0 + m["L"])
    return factor * m["V"] * (UNIT_ROUNDOFF[dtype] * (1.0 + m["A"]) + sums)
