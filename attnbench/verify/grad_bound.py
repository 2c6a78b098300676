"""The rounding bound of every gradient element, derived from the magnitudes rounding acts on.

A correct backward in a dtype of unit roundoff u (sums accumulated with roundoff ua) errs on each
element of dq, dk and dv by at most a few roundings of the terms it is made of. Per query head,
row i and visible key j (docs/agreement.md, "Gradients", gives the derivation):

    E_ij = ua·log2(1 + D)·A_ij + u·|s_ij|      the score's error: its dot product over D terms
           (A_ij = scale·Σ_t |q_it||k_jt|), then the score stored in the dtype; a softcap passes
           the error on times its derivative σ' and adds 2u|s|; ALiBi and bias add u(|t| + |s|)
    ε_ij = E_ij + Ē_i + 2u + EXP_ULPS·ua + ua·log2(1 + L_i)   relative error of the weight P_ij
           (Ē_i = Σ_j P_ij E_ij: the normaliser's share; an exp good to EXP_ULPS units of the
           accumulator; the division and storage; the sum over the L_i keys row i sees)
    Δ_i  = Σ_t |dO_it|·((P∘ε_D)|V|)_it + 2u·Σ_t |dO_it||O_it|   error of D_i = dO_i·O_i
           (ε_D = ε + u_dot + ua·log2(1 + L_i): O's or dP's rounding on the way)
    R_ij = σ'_ij·(|P_ij g_ij|·(ε_ij + 2u) + P_ij·(u_dot·B_ij + Δ_i)) [+ |P_ij g_ij|·(2E_ij/c + 3u)]
           error of dS_ij = P_ij·g_ij·σ'_ij, g = dP − D, B_ij = Σ_t |dO_it||v_jt|,
           u_dot = u + ua·log2(1 + Dv); the bracket with a softcap c only
    dq_it: scale·Σ_j (R_ij + ua·log2(1 + L_i)·|dS_ij|)·|k_jt| + 2u·|dq_it|
    dk_jt: Σ_h scale·Σ_i (R_ij + ua·log2(1 + L'_j)·|dS_ij|)·|q_it| + u·(2 + log2 G)·Σ_h |dk^h_jt|
    dv_jt: Σ_h Σ_i P_ij·(ε_ij + u + ua·log2(1 + L'_j))·|dO_it| + u·(2 + log2 G)·Σ_h |dv^h_jt|

(L'_j: query rows that see key j; G query heads share a kv head, whose per-head gradients are
rounded and summed). The floor of an element is GRAD_FLOOR_FACTOR times its sum; the factor was
set by benchmarks/grad_study.py. This module holds the per-block terms; grad_oracle.py runs them
block by block beside the float64 gradients.
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


@dataclass(frozen=True)
class Roundoff:
    """The unit roundoffs a case's backward is made of."""

    u: float  # the dtype's: every value stored in it
    ua: float  # the accumulator's: sums over keys, rows and the head dim
    qk: float  # the accumulation of one score's dot product over D terms: ua·log2(1 + D)
    dot: float  # one dot product over the value head dim, stored: u + ua·log2(1 + Dv)
    group: float  # per-head gradients rounded and summed over G heads: u·(2 + log2 G)
    softcap: float | None

    @classmethod
    def of(cls, case: Case) -> Roundoff:
        u, ua = UNIT_ROUNDOFF[case.dtype], SUM_ROUNDOFF[case.dtype]
        group = case.heads_q // case.heads_kv
        return cls(u, ua, ua * math.log2(1 + case.head_dim), u + ua * math.log2(1 + case.dv),
                   u * (2 + math.log2(group)), case.softcap)


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
            + 2 * rnd.u * np.einsum("grt,grt->gr", abs_do, np.abs(o)))


def score_grad_error(p: np.ndarray, pg: np.ndarray, err: np.ndarray, b_mag: np.ndarray,
                     sig: np.ndarray | None, rnd: Roundoff) -> np.ndarray:
    """The part of dS_ij's error proper to the element (the rest, common to a row, is added
    where the gradient sums it); pg = P∘(dP − D) before the softcap's derivative sig."""
    r = np.abs(pg) * (err + 2 * rnd.u) + p * (rnd.dot * b_mag)
    if sig is None:
        return r
    assert rnd.softcap is not None
    return r * sig + np.abs(pg) * (2.0 * err / rnd.softcap + 3.0 * rnd.u)


def sum_rounding(lens: np.ndarray, rnd: Roundoff) -> np.ndarray:
    """ua·log2(1 + n): the rounding of sums of n terms, accumulated in blocks or pairwise."""
    return rnd.ua * np.log2(1.0 + lens)
