"""The float64 oracle and a model of what a correct kernel errs, per element, in one blocked pass.

For output element (row i, channel t), o_t = Σ_j p_j v_jt with the oracle's float64 weights p.
A correct kernel in a dtype of unit roundoff u (accumulating in u_acc: float32 for the half
types) moves it by (first order; docs/agreement.md derives it):

- score errors e_j (roundings of q·k_j, of the scale multiply or of a sqrt(scale) prescale of q
  and k, of a softcap, of added ALiBi/bias terms; the dot product's accumulation): the weights
  become p_j e^(e_j) / Σ, so o_t moves by Σ_j p_j (e^(e_j) − 1) (v_jt − o_t);
- the weights rounded to the dtype before the p·v product: Σ_j p_j ε_j v_jt;
- L terms summed in u_acc, and a row's denominator rounded (a relative error the row shares);
- the output rounded to the dtype: at most u·|o_t|.

Independent roundings add like a random walk: the model keeps, per element, the deterministic
part `det` (u·|o_t| plus the drift E[e^(e_j)] − 1 causes) and the standard deviation `sigma` of
the rest; per row, what the statistics of bound.py need; `cap` bounds the error of any convex
combination of the visible values. Rows that see no key have all of these 0: their output must
be exactly zero. verify/roundoff.py computes it on one block of rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnbench.case import Case
from attnbench.verify.reference import row_visibility
from attnbench.verify.roundoff import (
    ACC_ROUNDOFF,
    DEFAULT,
    DEFAULTS,
    MODEL_BLOCK_ENTRIES,
    RNE_VARIANCE,
    TINY,
    UNIT_ROUNDOFF,
    Block,
    Coefficients,
)

MODEL_THREADS = 8  # threads of the parent's rounding model (blocks of one case)

__all__ = ["ACC_ROUNDOFF", "MODEL_THREADS", "RNE_VARIANCE", "TINY", "UNIT_ROUNDOFF",
           "Coefficients", "Model", "oracle_and_model"]
WIDE = ("ref", "det", "sigma", "temp", "drift")  # fields with a channel axis
FIELDS = (*WIDE, "rho", "cap", "key_spread", "key_max", "key_scale", "key_temp")


@dataclass
class Model:
    """The oracle on the compared rows and the model of a correct kernel's error there.

    (batch, heads_q, rows, dv): ref, det, sigma (sigma² includes rho·ref², the variance of the
    relative error a row shares), temp (d ref / d log scale: how the output moves when the
    softmax scale does); (batch, heads_q, rows, 1): rho, cap, key_spread and key_max (Σ over
    keys of the squared variance each key's errors add to the row's sum of squared errors, and
    the largest of those variances), key_scale and
    key_temp (the variance key errors add to <err_row, ref_row> and <err_row, temp_row>);
    (batch, heads_q): drift_sq, drift_o, drift_t (Σ drift², Σ drift·ref, Σ drift·temp);
    empty (batch, 1, rows, 1): rows that see no key.
    """

    dtype: str
    ref: np.ndarray
    det: np.ndarray
    sigma: np.ndarray
    temp: np.ndarray
    rho: np.ndarray
    cap: np.ndarray
    key_spread: np.ndarray
    key_max: np.ndarray
    key_scale: np.ndarray
    key_temp: np.ndarray
    empty: np.ndarray
    drift_sq: np.ndarray
    drift_o: np.ndarray
    drift_t: np.ndarray
    magnitudes: dict[str, float]


def oracle_and_model(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray,
                     coef: Coefficients | None = None) -> Model:
    """The float64 oracle and the rounding model on the given rows, block by block (memory
    bounded by MODEL_BLOCK_ENTRIES scores); coef: the dtype's defaults when None."""
    coef = coef or DEFAULTS.get(case.dtype, DEFAULT)
    shape = (case.batch, case.heads_q, len(rows), case.dv)
    out = {n: np.zeros(shape if n in WIDE else (*shape[:3], 1)) for n in FIELDS}
    sums = {n: np.zeros(shape[:2]) for n in ("drift_sq", "drift_o", "drift_t")}
    group = case.heads_q // case.heads_kv
    step = max(1, MODEL_BLOCK_ENTRIES // (group * case.seq_kv))

    def one_block(b: int, h: int, i: int) -> None:
        qs, at = slice(h * group, (h + 1) * group), slice(i, i + step)
        blk = Block(arrays, case, rows[at], b, h, np.arange(qs.start, qs.stop))
        for name, x in blk.model(coef).items():
            out[name][b, qs, at] = x

    blocks = [(b, h, i) for b in range(case.batch) for h in range(case.heads_kv)
              for i in range(0, len(rows), step)]
    in_parallel(one_block, blocks)
    for b in range(case.batch):
        for h in range(case.heads_kv):
            qs = slice(h * group, (h + 1) * group)
            d = out["drift"][b, qs]
            for name, x in (("drift_sq", d), ("drift_o", out["ref"][b, qs]),
                            ("drift_t", out["temp"][b, qs])):
                sums[name][b, qs] = (d * x).sum(axis=(1, 2))
    del out["drift"]
    empty = np.stack([~row_visibility(case, rows, b).any(axis=1) for b in range(case.batch)])
    model = Model(case.dtype, **out, empty=empty[:, None, :, None], **sums, magnitudes={})
    model.magnitudes = _magnitudes(arrays, case, rows, model)
    return model


def in_parallel(fn: Any, items: Sequence[tuple[int, ...]]) -> None:
    """fn(*item) for every item, on up to MODEL_THREADS threads (numpy's array work releases
    the GIL; each block writes its own slice, so the result does not depend on the order).
    The parent runs this while no worker is timing: a GPU box's idle cores shorten a case."""
    threads = min(MODEL_THREADS, len(items), len(os.sched_getaffinity(0)))
    if threads <= 1:
        for item in items:
            fn(*item)
        return
    with one_blas_thread(), ThreadPoolExecutor(threads, thread_name_prefix="model") as pool:
        for done in [pool.submit(fn, *item) for item in items]:
            done.result()  # re-raises a block's error here


def one_blas_thread() -> Any:
    """BLAS on one thread per call while the blocks run side by side (else each call's own
    threads compete with the other blocks'); nothing changes where threadpoolctl is missing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _magnitudes(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray, m: Model
                ) -> dict[str, float]:
    """What the model was derived from, for the record."""
    seen = max(int(row_visibility(case, rows, b).sum(axis=1).max(initial=0))
               for b in range(case.batch))
    return {"V_max": float(np.abs(arrays["v"]).max(initial=0.0)), "L_max": seen,
            "out_max": float(np.abs(m.ref).max(initial=0.0)),
            "sigma_max": float(m.sigma.max(initial=0.0))}
