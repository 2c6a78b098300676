"""The float64 NumPy oracle: exact semantics, on all query rows or a sample of them."""

from __future__ import annotations

import numpy as np

from attnbench.case import Case

FULL_ORACLE_LIMIT = 2**24  # score entries (B·Hq·Sq·Skv) up to which every row is checked
SAMPLED_ROWS = 64


def check_rows(case: Case, seed: int = 0) -> np.ndarray:
    """Query rows to check: all for small cases, else first, last and random ones (sorted)."""
    n = case.seq_q
    if case.batch * case.heads_q * n * case.seq_kv <= FULL_ORACLE_LIMIT or n <= SAMPLED_ROWS:
        return np.arange(n)
    rng = np.random.default_rng(seed + n)
    picks = rng.choice(np.arange(1, n - 1), size=SAMPLED_ROWS - 2, replace=False)
    return np.unique(np.concatenate([[0, n - 1], picks]))


def expand_kv(x: np.ndarray, heads_q: int) -> np.ndarray:
    """Repeat kv heads so that query head h reads kv head h // (heads_q // heads_kv)."""
    return np.repeat(x, heads_q // x.shape[1], axis=1)


def row_visibility(case: Case, rows: np.ndarray) -> np.ndarray:
    """Boolean (len(rows), seq_kv): True where query row i sees key j (bottom-right causal)."""
    if case.mask == "none":
        return np.ones((len(rows), case.seq_kv), dtype=bool)
    off = case.seq_kv - case.seq_q
    return np.arange(case.seq_kv)[None, :] <= (rows[:, None] + off)


def attention_rows(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, case: Case, rows: np.ndarray
) -> np.ndarray:
    """softmax(q kᵀ·scale + mask) v for the given query rows, in q's dtype; empty rows → 0."""
    dt = q.dtype
    kx, vx = expand_kv(k, case.heads_q), expand_kv(v, case.heads_q)
    s = np.matmul(q[:, :, rows, :], np.swapaxes(kx, -1, -2)) * dt.type(case.softmax_scale)
    vis = row_visibility(case, rows)
    s = np.where(vis, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    p = np.exp(s - m)
    den = p.sum(axis=-1, keepdims=True)
    out = np.matmul(p / np.where(den == 0, 1, den), vx).astype(dt)
    return np.where(vis.any(axis=-1)[:, None], out, dt.type(0))


def oracle(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray) -> np.ndarray:
    """The float64 reference output on the given rows."""
    return attention_rows(arrays["q"], arrays["k"], arrays["v"], case, rows)
