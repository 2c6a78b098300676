"""The float64 gradient oracle and its rounding floor, in bounded memory, block by block.

One (batch, kv head) group at a time, over blocks of query rows that see every key (so each
block's softmax is exact, with no running statistics): the block's weights P, D_i = dO_i·O_i,
dS = P∘(dP − D) [∘ the softcap's derivative], then dq of the block's rows, and the block's share
of dk and dv summed over the blocks. dq_i needs only row i, so dq is computed on any rows; dk_j
and dv_j need every query row of the group, on any keys (`cols`). Beside each value, the
rounding floor of grad_bound (factor 1) is computed from the same intermediates.
"""

from __future__ import annotations

import numpy as np

from attnbench import variants
from attnbench.case import Case
from attnbench.verify import grad_bound as gb
from attnbench.verify.grad_plan import GradPlan
from attnbench.verify.reference import group_slices

GRAD_BLOCK_ENTRIES = 2**20  # score entries of one block (8 MiB per float64 array)


def block_scores(q: np.ndarray, k: np.ndarray, case: Case, b: int, heads: np.ndarray,
                 rows: np.ndarray, bias: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(P, E, σ') of one block: softmax weights, the scores' error bounds (grad_bound) and the
    softcap's derivative (None without a cap). q: (G, R, D) rows of the group's heads;
    k: (Skv, D)."""
    rnd = gb.Roundoff.of(case)
    s = np.matmul(q, k.T) * case.softmax_scale
    err = gb.score_error(s, np.matmul(np.abs(q), np.abs(k).T) * case.softmax_scale, rnd)
    sig = None
    if case.softcap is not None:
        t = np.tanh(s / case.softcap)
        sig = 1.0 - t * t
        s = case.softcap * t
        err = err * sig + 2 * rnd.u * np.abs(s)
    terms = variants.score_terms(case, b, heads, rows, bias)
    if terms is not None:
        s = s + terms
        err = err + rnd.u * (np.abs(terms) + np.abs(s))
    vis = variants.visibility(case, b, rows)
    s = np.where(vis, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    s -= np.where(np.isfinite(m), m, 0.0)
    np.exp(s, out=s)
    den = s.sum(axis=-1, keepdims=True)
    s /= np.where(den == 0, 1.0, den)
    return s, err, sig


class _Sums:
    """Per-head running sums of dk, dv and their floor terms over the blocks of a group."""

    def __init__(self, g: int, n_cols: int, d: int, dv: int):
        self.dk, self.wk = np.zeros((g, n_cols, d)), np.zeros((g, n_cols, d))
        self.dv, self.wv = np.zeros((g, n_cols, dv)), np.zeros((g, n_cols, dv))

    def result(self, rnd: gb.Roundoff, seen: np.ndarray) -> dict[str, np.ndarray]:
        """dk, dv of the group (summed over its query heads) and their floors; seen: whether
        some query row sees each key (one no row sees has exactly 0 gradients)."""
        own = rnd.group_eta * seen[:, None]
        return {"dk": self.dk.sum(axis=0),
                "dk_floor": self.wk.sum(axis=0) + rnd.group * np.abs(self.dk).sum(axis=0) + own,
                "dv": self.dv.sum(axis=0),
                "dv_floor": self.wv.sum(axis=0) + rnd.group * np.abs(self.dv).sum(axis=0) + own}


def group_grads(arrays: dict[str, np.ndarray], d_out: np.ndarray, case: Case, b: int, h: int,
                rows: np.ndarray, cols: np.ndarray | None, want_dq: bool
                ) -> dict[str, np.ndarray]:
    """Oracle gradients of group (b, h) with their floors (factor 1).

    dq and dq_floor (G, len(rows), D) when want_dq (then cols must be None: dq_i needs every
    key); dk, dv and their floors (len(cols) or seq_kv, D | Dv) when rows are every query row.
    """
    assert not (want_dq and cols is not None), "dq needs every key"
    _, qs, ks = group_slices(case, b, h)
    q, k, v = arrays["q"][b, qs], arrays["k"][b, ks.start], arrays["v"][b, ks.start]
    d_out_g, heads, bias = d_out[b, qs], np.arange(qs.start, qs.stop), arrays.get("bias")
    rnd, scale = gb.Roundoff.of(case), case.softmax_scale
    want_kv = len(rows) == case.seq_q
    lens = variants.row_counts(case, b)
    pick = slice(None) if cols is None else cols
    seen_by = variants.key_counts(case, b)[pick]
    col_sum = gb.sum_rounding(seen_by, rnd)
    g = q.shape[0]
    sums = _Sums(g, case.seq_kv if cols is None else len(cols), case.head_dim, case.dv)
    out: dict[str, np.ndarray] = {}
    if want_dq:
        out = {"dq": np.empty((g, len(rows), case.head_dim)),
               "dq_floor": np.empty((g, len(rows), case.head_dim))}
    step = max(1, GRAD_BLOCK_ENTRIES // (g * case.seq_kv))
    for i in range(0, len(rows), step):
        r = rows[i:i + step]
        qb, dob = q[:, r], d_out_g[:, r]
        p, err, sig = block_scores(qb, k, case, b, heads, r, bias)
        o = np.matmul(p, v)
        d_i = np.einsum("grt,grt->gr", dob, o)
        e = gb.row_error(p, err, lens[r], rnd)
        # D_i's error (e_i's share in it included) moves each dS_ij by P_ij σ'_ij times it
        row_d = gb.d_error(p, err, e, v, dob, o, d_i, lens[r], rnd)[..., None]
        p_sig = p if sig is None else p * sig
        if want_dq:  # those terms are common to row i: they move dq_i by Σ_j P σ' k_j times
            common = np.abs(np.matmul(p_sig, k)) * row_d
        p, err, p_sig = p[..., pick], err[..., pick], p_sig[..., pick]
        sig = None if sig is None else sig[..., pick]
        g = np.matmul(dob, v[pick].T) - d_i[..., None]
        pg, low = p * g, gb.underflow(p, g, rnd)
        b_mag = np.matmul(np.abs(dob), np.abs(v[pick]).T)
        w = gb.score_grad_error(p, pg, err, b_mag, sig, rnd)
        ds = pg if sig is None else pg * sig
        abs_ds = np.abs(ds)
        if want_dq:
            dq = scale * np.matmul(ds, k)
            row_sum = gb.sum_rounding(lens[r], rnd)[:, None]
            out["dq"][:, i:i + step] = dq
            out["dq_floor"][:, i:i + step] = (
                scale * (np.matmul(w + row_sum * abs_ds + low, np.abs(k)) + common)
                + (e[..., None] + 2 * rnd.u) * np.abs(dq) + rnd.eta * (lens[r] > 0)[:, None])
        if want_kv:
            wk = w + p_sig * row_d + (e[..., None] + col_sum) * abs_ds + low
            sums.dk += scale * np.matmul(np.swapaxes(ds, -1, -2), qb)
            sums.wk += scale * np.matmul(np.swapaxes(wk, -1, -2), np.abs(qb))
            sums.dv += np.matmul(np.swapaxes(p, -1, -2), dob)
            wv = p * (err + e[..., None] + rnd.u + col_sum) + rnd.eta * (p > 0)
            sums.wv += np.matmul(np.swapaxes(wv, -1, -2), np.abs(dob))
    if want_kv:
        out.update(sums.result(rnd, seen_by > 0))
    return out


def plan_grads(arrays: dict[str, np.ndarray], d_out: np.ndarray, case: Case, plan: GradPlan
               ) -> dict[str, np.ndarray]:
    """Oracle gradients and floors on a plan's rows: dq (B, Hq, len(q_rows), D); dk, dv
    (len(groups), len(k_rows), D | Dv); each with its `_floor` (factor 1)."""
    g, every = case.heads_q // case.heads_kv, np.arange(case.seq_q)
    out = {n: np.empty((case.batch, case.heads_q, len(plan.q_rows), case.head_dim))
           for n in ("dq", "dq_floor")}
    if not plan.full:
        for b in range(case.batch):
            for h in range(case.heads_kv):
                got = group_grads(arrays, d_out, case, b, h, plan.q_rows, None, True)
                for n in ("dq", "dq_floor"):
                    out[n][b, h * g:(h + 1) * g] = got[n]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in ("dk", "dk_floor", "dv", "dv_floor")}
    for b, h in plan.groups:
        cols = None if plan.all_keys else plan.k_rows
        got = group_grads(arrays, d_out, case, b, h, every, cols, plan.full)
        for n, part in parts.items():
            part.append(got[n])
        if plan.full:
            for n in ("dq", "dq_floor"):
                out[n][b, h * g:(h + 1) * g] = got[n]
    return {**out, **{n: np.stack(p) for n, p in parts.items()}}
