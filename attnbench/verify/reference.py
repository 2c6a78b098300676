"""The float64 NumPy oracle: exact semantics, on every query row or on rows drawn per run.

Every row is checked while the oracle's matmul FLOPs fit ORACLE_FLOP_BUDGET; beyond it, as
many rows as the budget allows (at least MIN_SAMPLED_ROWS): the first, the last and rows drawn
from the run's check seed, so no backend can know in advance which rows are compared. The
oracle is computed in blocks of rows, so its working memory stays under BLOCK_ENTRIES scores.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from attnbench import variants
from attnbench.case import Case
from attnbench.verify.inputs import case_seed

ORACLE_FLOP_BUDGET = 2**35  # matmul FLOPs of the float64 oracle (~2 to 4 s on one CPU core)
MIN_SAMPLED_ROWS = 64
BLOCK_ENTRIES = 2**21  # score entries of one block (16 MiB in float64)


def oracle_flops(case: Case, n_rows: int) -> int:
    """Matmul FLOPs of the oracle on n_rows query rows (every key, every batch and head)."""
    return 2 * case.batch * case.heads_q * n_rows * case.seq_kv * (case.head_dim + case.dv)


def rows_in_budget(case: Case, budget: int | None = None) -> int:
    """How many query rows the oracle checks: all that fit the budget, at least the minimum."""
    budget = ORACLE_FLOP_BUDGET if budget is None else budget
    per_row = max(1, oracle_flops(case, 1))
    return min(case.seq_q, max(MIN_SAMPLED_ROWS, budget // per_row))


def check_rows(case: Case, check_seed: int, budget: int | None = None) -> np.ndarray:
    """Query rows to compare: every row within the budget, else first, last and drawn ones."""
    n, count = case.seq_q, rows_in_budget(case, budget)
    if count >= n:
        return np.arange(n)
    rng = np.random.default_rng(case_seed(case, check_seed))
    picks = rng.choice(np.arange(1, n - 1), size=count - 2, replace=False)
    return np.unique(np.concatenate([[0, n - 1], picks]))


def expand_kv(x: np.ndarray, heads_q: int) -> np.ndarray:
    """Repeat kv heads so that query head h reads kv head h // (heads_q // heads_kv)."""
    return np.repeat(x, heads_q // x.shape[1], axis=1)


def row_visibility(case: Case, rows: np.ndarray, b: int = 0) -> np.ndarray:
    """Boolean (len(rows), seq_kv): True where query row i of batch element b sees key j."""
    return variants.visibility(case, b, rows)


def scores(q: np.ndarray, k: np.ndarray, case: Case, rows: np.ndarray, b: int = 0,
           heads: np.ndarray | None = None, bias: np.ndarray | None = None,
           hidden: np.ndarray | None = None, sinks: np.ndarray | None = None) -> np.ndarray:
    """The scores q kᵀ·scale [softcap] + ALiBi + bias, −inf where masked, on the given query
    rows of batch element b, in q's dtype (float32 for float16 with ALiBi or a bias); with
    sinks one more column, the sink logit σ_h (see probabilities for the arguments)."""
    heads = np.arange(q.shape[1]) if heads is None else heads
    kx = expand_kv(k, q.shape[1])
    s = np.matmul(q[:, :, rows, :], np.swapaxes(kx, -1, -2))
    s *= q.dtype.type(case.softmax_scale)  # in place from here on: one score-sized array
    variants.apply_softcap(s, case.softcap)
    terms = variants.score_terms(case, b, heads, rows, bias)
    if terms is not None:
        if s.dtype == np.float16:  # added in float32, as fused kernels add them
            s = s.astype(np.float32)
        s += terms.astype(s.dtype)
    vis = row_visibility(case, rows, b)
    if hidden is not None:
        vis &= ~hidden[None, :]
    if not vis.all():
        np.copyto(s, -np.inf, where=~vis)
    if sinks is not None:  # one more key per row: score σ_h, value 0 (dropped after)
        sink = np.broadcast_to(sinks[heads].astype(s.dtype)[None, :, None, None],
                               (*s.shape[:-1], 1))
        s = np.concatenate([s, sink], axis=-1)
    return s


def probabilities(q: np.ndarray, k: np.ndarray, case: Case, rows: np.ndarray, b: int = 0,
                  heads: np.ndarray | None = None, bias: np.ndarray | None = None,
                  hidden: np.ndarray | None = None, sinks: np.ndarray | None = None
                  ) -> np.ndarray:
    """softmax(q kᵀ·scale [softcap] + ALiBi + bias + mask) on the given query rows of batch
    element b, in q's dtype (float32 for float16 with ALiBi or a bias); rows that see no key
    are 0.

    q: (1, Hq', Sq, D) and k: (1, Hkv', Skv, D) with Hq' a multiple of Hkv' (a slice of heads
    is fine: heads gives their indices, all of them by default); bias: the case's full bias
    array or None; hidden: (seq_kv,) booleans, keys hidden from every row on top of the mask
    (a diagnosis's "what if these keys were left out"); sinks: the case's (heads_q,) sink
    logits or None, each a term of its heads' denominators (variants.py). A row that sees no
    key has max −inf; it is shifted by 0, so every exp is 0.
    """
    s = scores(q, k, case, rows, b, heads, bias, hidden, sinks)
    m = s.max(axis=-1, keepdims=True)
    s -= np.where(np.isfinite(m), m, 0)
    np.exp(s, out=s)
    den = s.sum(axis=-1, keepdims=True)
    s /= np.where(den == 0, 1, den)
    return s if sinks is None else s[..., :-1]


def attention_rows(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, case: Case, rows: np.ndarray, b: int = 0,
    heads: np.ndarray | None = None, bias: np.ndarray | None = None,
    hidden: np.ndarray | None = None, sinks: np.ndarray | None = None,
) -> np.ndarray:
    """softmax(q kᵀ·scale + …) v for the given query rows of batch element b, in q's dtype;
    rows that see no key are 0 (see probabilities for the arguments)."""
    p = probabilities(q, k, case, rows, b, heads, bias, hidden, sinks)
    return np.matmul(p, expand_kv(v, q.shape[1])).astype(q.dtype)


def group_slices(case: Case, b: int, h: int) -> tuple[int, slice, slice]:
    """Batch index, query-head slice and kv-head slice of one (batch, kv head) group."""
    g = case.heads_q // case.heads_kv
    return b, slice(h * g, (h + 1) * g), slice(h, h + 1)


Block = tuple[int, slice, slice, np.ndarray, slice]


def blocks(case: Case, rows: np.ndarray) -> Iterator[Block]:
    """(batch, query-head slice, kv-head slice, query rows, their positions in rows) blocks.

    One block is one kv head with its group of query heads and as many of the rows as keep
    its scores under BLOCK_ENTRIES, so any size is computed in bounded memory.
    """
    step = max(1, BLOCK_ENTRIES // (case.heads_q // case.heads_kv * case.seq_kv))
    for b in range(case.batch):
        for h in range(case.heads_kv):
            _, qs, ks = group_slices(case, b, h)
            for i in range(0, len(rows), step):
                yield b, qs, ks, rows[i:i + step], slice(i, i + step)


def oracle(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray,
           hidden: np.ndarray | None = None) -> np.ndarray:
    """The float64 reference output on the given rows: (B, Hq, len(rows), Dv), block by block
    (hidden: keys left out of every row, see probabilities)."""
    q, k, v, bias, sinks = (arrays["q"], arrays["k"], arrays["v"], arrays.get("bias"),
                            arrays.get("sinks"))
    out = np.empty((case.batch, case.heads_q, len(rows), case.dv))
    for b, qs, ks, r, at in blocks(case, rows):
        heads = np.arange(qs.start, qs.stop)
        out[b:b + 1, qs, at] = attention_rows(q[b:b + 1, qs], k[b:b + 1, ks], v[b:b + 1, ks],
                                              case, r, b, heads, bias, hidden, sinks)
    return out


def oracle_lse(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray) -> np.ndarray:
    """The float64 log-sum-exp of each compared row (variants.py): (B, Hq, len(rows)), −inf
    where a row sees no key (σ_h with sinks), block by block."""
    q, k, bias, sinks = arrays["q"], arrays["k"], arrays.get("bias"), arrays.get("sinks")
    out = np.empty((case.batch, case.heads_q, len(rows)))
    for b, qs, ks, r, at in blocks(case, rows):
        heads = np.arange(qs.start, qs.stop)
        s = scores(q[b:b + 1, qs], k[b:b + 1, ks], case, r, b, heads, bias, None, sinks)
        out[b:b + 1, qs, at] = variants.log_sum_exp(s)
    return out
