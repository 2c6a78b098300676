"""The rounding bound of every gradient element, derived from the magnitudes rounding acts on.

A correct backward in a dtype of unit roundoff u (sums accumulated with roundoff ua) errs on each
element of dq, dk and dv by at most a few roundings of the terms it is made of. Per query head,
row i and visible key j (docs/agreement.md, "Gradients", gives the derivation):

    E_ij  = ua·log2(1 + D)·A_ij + u·|s_ij|   the score's error: its dot product over D terms
            (A_ij = scale·Σ_t |q_it||k_jt|), then the score stored in the dtype; a softcap passes
            it on times its derivative σ' and adds 2u|s|; ALiBi and bias add u(|t| + |s|)
    e_i   = Σ_j P_ij E_ij + 2u + EXP_ULPS·ua + ua·log2(1 + L_i)   the relative error common to
            row i's weights: the normaliser's, an exp good to EXP_ULPS units of the accumulator,
            the division and storage, the sum over the L_i keys row i sees (P_ij errs by E_ij + e_i)
    Δ_i   = Σ_t |dO_it|·((P∘(E + u_dot + ua·log2(1 + L_i)))|V|)_it + e_i|D_i|
            + Σ_t |dO_it|·2u|O_it|                 the error of D_i = dO_i·O_i (or Σ_j P_ij dP_ij)
    r_ij  = σ'_ij·(|P_ij g_ij|·(E_ij + 2u) + P_ij·u_dot·B_ij) [+ |P_ij g_ij|·(2E_ij/c + 3u)]
            dS_ij = P_ij·g_ij·σ'_ij's own error (g = dP − D, B_ij = Σ_t |dO_it||v_jt|,
            u_dot = u + ua·log2(1 + Dv), the bracket with a softcap c); the rest is common to the
            row: e_i·dS_ij, and P_ij·σ'_ij·Δ_i from D's error
    dq_it: scale·Σ_j (r_ij + ua·log2(1 + L_i)|dS_ij|)|k_jt| + scale·Δ_i·|Σ_j P_ij σ'_ij k_jt|
           + (e_i + 2u)·|dq_it|                   (what is common to the row moves dq_i as a whole)
    dk_jt: Σ_h scale·Σ_i (r_ij + P_ij σ'_ij Δ_i + (e_i + ua·log2(1 + L'_j))|dS_ij|)·|q_it|
           + u·(2 + log2 G)·Σ_h |dk^h_jt|
    dv_jt: Σ_h Σ_i P_ij·(E_ij + e_i + u + ua·log2(1 + L'_j))·|dO_it| + u·(2 + log2 G)·Σ_h |dv^h_jt|

(L'_j: query rows that see key j; G query heads share a kv head, whose per-head gradients are
rounded and summed). In float16, whose normal range ends at 6.1e-5, every stored P, dS, O and
gradient may also be off by half a subnormal spacing, η = 2^-25: η·(1 + |g_ij|) is added to each
dS_ij's error, η to each P_ij's (in dv) and O's (in Δ), and η·(1 + G) to the gradient itself
(where some row sees the key: a gradient no row reaches must be exactly 0). The floor of an
element is GRAD_FLOOR_FACTOR times its sum; benchmarks/grad_study.py set the factor. This module
holds the per-block terms; grad_oracle.py runs them block by block beside the float64 gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attnbench.case import Case

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11,
                 "bfloat16": 2.0**-8}
# float16 and bfloat16 kernels accumulate their sums in float32
SUM_ROUNDOFF = {**UNIT_ROUNDOFF, "float16": 2.0**-24, "bfloat16": 2.0**-24}
# The least accurate exp a correct kernel is known to use, in units of its accumulator: PyTorch's
# CPU flash kernel takes a vectorised exp good to 2^-20 in float32 (16 units of 2^-24).
EXP_ULPS = 16.0
GRAD_FLOOR_FACTOR = 2.0  # benchmarks/grad_study.py: see docs/agreement.md, "Gradients"
# Absolute error of storing a value below the dtype's normal range: half its subnormal spacing.
# float16's (2^-24 spacing below 6.1e-5) is reached by small weights and gradients; bfloat16
# and float32 share float32's range, whose subnormals (below 1.2e-38) are far below any other
# term of a floor, and float64's further: they are taken as 0.
UNDERFLOW = {"float64": 0.0, "float32": 0.0, "float16": 2.0**-25, "bfloat16": 0.0}


@dataclass(frozen=True)
class Roundoff:
    """The unit roundoffs a case's backward is made of."""

    u: float  # the dtype's: every value stored in it
    ua: float  # the accumulator's: sums over keys, rows and the head dim
    qk: float  # the accumulation of one score's dot product over D terms: ua·log2(1 + D)
    dot: float  # one dot product over the value head dim, stored: u + ua·log2(1 + Dv)
    group: float  # per-head gradients rounded and summed over G heads: u·(2 + log2 G)
    softcap: float | None
    eta: float  # UNDERFLOW: the absolute error of each stored value (P, dS, O, gradients)
    group_eta: float  # the gradients' own underflows, per head and in the sum: eta·(1 + G)

    @classmethod
    def of(cls, case: Case) -> Roundoff:
        u, ua = UNIT_ROUNDOFF[case.dtype], SUM_ROUNDOFF[case.dtype]
        group = case.heads_q // case.heads_kv
        eta = UNDERFLOW[case.dtype]
        return cls(u, ua, ua * math.log2(1 + case.head_dim), u + ua * math.log2(1 + case.dv),
                   u * (2 + math.log2(group)), case.softcap, eta, eta * (1 + group))


def score_error(s: np.ndarray, a: np.ndarray, rnd: Roundoff) -> np.ndarray:
    """E_ij of the raw scores s = scale·q·k (before a softcap and terms); a: their A_ij."""
    return rnd.qk * a + rnd.u * np.abs(s)


def row_error(p: np.ndarray, err: np.ndarray, lens: np.ndarray, rnd: Roundoff) -> np.ndarray:
    """e_i, the part of the weights' relative error common to row i (G, R): the normaliser's
    share of the scores' errors, the exp, the division and storage, the sum over its keys.
    p, err (E): (G, R, L); lens: the keys each row sees."""
    const = 2 * rnd.u + EXP_ULPS * rnd.ua
    return np.einsum("grk,grk->gr", p, err) + const + rnd.ua * np.log2(1.0 + lens)


def d_error(p: np.ndarray, err: np.ndarray, e: np.ndarray, v: np.ndarray, d_out: np.ndarray,
            o: np.ndarray, d_i: np.ndarray, lens: np.ndarray, rnd: Roundoff) -> np.ndarray:
    """Δ_i, the error of D_i = dO_i·O_i (or of Σ_j P_ij dP_ij), (G, R): the weights' own
    errors through V (or dP), their common part e_i times |D_i|, O's (or dP's) rounding."""
    own = err + (rnd.dot + rnd.ua * np.log2(1.0 + lens))[:, None]
    abs_do = np.abs(d_out)
    return (np.einsum("grt,grt->gr", abs_do, np.matmul(p * own, np.abs(v))) + e * np.abs(d_i)
            + np.einsum("grt,grt->gr", abs_do, 2 * rnd.u * np.abs(o) + rnd.eta))


def score_grad_error(p: np.ndarray, pg: np.ndarray, err: np.ndarray, b_mag: np.ndarray,
                     sig: np.ndarray | None, rnd: Roundoff) -> np.ndarray:
    """The part of dS_ij's error proper to the element (the rest, common to a row, is added
    where the gradient sums it); pg = P∘(dP − D) before the softcap's derivative sig."""
    r = np.abs(pg) * (err + 2 * rnd.u) + p * (rnd.dot * b_mag)
    if sig is None:
        return r
    assert rnd.softcap is not None
    return r * sig + np.abs(pg) * (2.0 * err / rnd.softcap + 3.0 * rnd.u)


def underflow(p: np.ndarray, g: np.ndarray, rnd: Roundoff) -> np.ndarray | float:
    """The absolute error of each dS_ij from P and dS stored below the normal range:
    eta·(1 + |dP − D|) where row i sees key j (0 unless the dtype is float16)."""
    if not rnd.eta:
        return 0.0
    return rnd.eta * (1.0 + np.abs(g)) * (p > 0)


def sum_rounding(lens: np.ndarray, rnd: Roundoff) -> np.ndarray:
    """ua·log2(1 + n): the rounding of sums of n terms, accumulated in blocks or pairwise."""
    return rnd.ua * np.log2(1.0 + lens)
