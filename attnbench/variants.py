"""The exact semantics of the attention variants: which keys a query sees, and its score terms.

For batch element b, Lq and Lk are its query and key lengths (q_lens, kv_lens; the full
sequence when unset) and off = Lk − Lq (bottom-right alignment, as causal), or off = 0 with the
mask causal_top_left (PyTorch's is_causal, top-left aligned: they differ only when Lq ≠ Lk).
Query row i sees key j iff i < Lq, j < Lk and, where set: causal (either) j <= i + off; window
i + off − left <= j <= i + off + right; documents doc(i) == doc(j). So every row sees one
contiguous interval of keys, [lo_i, hi_i] (empty when lo_i > hi_i): key_ranges() gives it, and
the visibility matrix, the empty rows and the exact work model all derive from it. A mask
function (mask_mod, attnbench/mask_mod.py) narrows that interval to the keys where it is True
too: then a row may see any set of keys, and visibility() is the definition (key_ranges() still
gives the interval the function narrows).

Scores: s = (q·k)·scale; softcap: s = cap·tanh(s / cap); then + ALiBi −slope_h·|i + off − j|
+ bias[b, h, i, j]; masked scores are −inf; a row that sees no key outputs zeros.

Sinks (gpt-oss): a logit σ_h per query head joins every row's softmax denominator and brings no
value: o_i = Σ_j e^(s_ij − m) v_j / (e^(σ_h − m) + Σ_j e^(s_ij − m)), m = max(σ_h, max_j s_ij);
a row that sees no key still outputs zeros. It is the attention over one more key, visible to
every row, whose score is σ_h and whose value is 0.

Log-sum-exp (lse = true, forward, padded and paged layouts): the backend returns, beside the
output, each row's lse_i = ln(Σ_j e^(s_ij)) over the keys the row sees, the scores s as above
(scale, softcap, ALiBi and bias in them), with sinks ln(e^σ_h + Σ_j e^(s_ij)): the natural log of
the softmax denominator, what split-KV and ring attention merge partial outputs with. The sum is
empty for a row that sees no key: its lse is −inf (σ_h with sinks).

Quantized k and v (kv_quant): k and v are codes of a float8 or int8 format times power-of-two
scales (attnbench/verify/kv_quant.py); everything above reads their exact dequantized values.
"""

from __future__ import annotations

import functools
import zlib
from typing import TYPE_CHECKING

import numpy as np

from attnbench import mask_eval, mask_mod
from attnbench.case import BIAS_KINDS, LAYOUTS, VARIANTS  # noqa: F401 (names plugins read here)

if TYPE_CHECKING:  # pragma: no cover
    from attnbench.case import Case


def lengths(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Per batch element query and key lengths (int64), the full sequences when unset."""
    q = np.array(case.q_lens if case.q_lens is not None else [case.seq_q] * case.batch)
    k = np.array(case.kv_lens if case.kv_lens is not None else [case.seq_kv] * case.batch)
    return q.astype(np.int64), k.astype(np.int64)


def doc_ids(case: Case) -> np.ndarray | None:
    """The document of each position of the packed sequence (int32), or None without documents."""
    if case.doc_lens is None:
        return None
    return np.repeat(np.arange(len(case.doc_lens), dtype=np.int32), case.doc_lens)


CAUSAL = ("causal", "causal_top_left")


def offsets(case: Case) -> np.ndarray:
    """off per batch element (int64): Lk − Lq (bottom-right), 0 for causal_top_left."""
    q_lens, kv_lens = lengths(case)
    return np.zeros_like(q_lens) if case.mask == "causal_top_left" else kv_lens - q_lens


def key_ranges(case: Case, b: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per query row of batch element b: row i sees exactly the keys lo_i..hi_i."""
    q_lens, kv_lens = lengths(case)
    lq, lk = int(q_lens[b]), int(kv_lens[b])
    i = np.arange(case.seq_q, dtype=np.int64)
    diag = i + int(offsets(case)[b])
    lo = np.zeros(case.seq_q, dtype=np.int64)
    hi = np.full(case.seq_q, lk - 1, dtype=np.int64)
    if case.mask in CAUSAL:
        hi = np.minimum(hi, diag)
    if case.window_right is not None:
        hi = np.minimum(hi, diag + case.window_right)
    if case.window_left is not None:
        lo = np.maximum(lo, diag - case.window_left)
    if case.doc_lens is not None:  # seq_q == seq_kv: the row's own document bounds it
        ends = np.cumsum(case.doc_lens)
        doc = doc_ids(case)
        lo = np.maximum(lo, ends[doc] - np.asarray(case.doc_lens)[doc])
        hi = np.minimum(hi, ends[doc] - 1)
    hi = np.where(i < lq, hi, -1)
    lo = np.where(i < lq, lo, 0)
    return lo, hi


def visibility(case: Case, b: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Boolean (len(rows), seq_kv): True where query row i of batch element b sees key j."""
    lo, hi = key_ranges(case, b)
    if rows is not None:
        lo, hi = lo[rows], hi[rows]
    j = np.arange(case.seq_kv)[None, :]
    vis = (j >= lo[:, None]) & (j <= hi[:, None])
    if case.mask_mod is not None:
        picked = np.arange(case.seq_q) if rows is None else np.asarray(rows)
        vis &= mask_eval.evaluate(case, b, picked)
    return vis


def empty_rows(case: Case) -> np.ndarray:
    """Boolean (batch, seq_q): True for the rows that see no key (they output zeros)."""
    if case.mask_mod is not None:
        return _mask_mod_counts(case)[0] == 0
    out = np.zeros((case.batch, case.seq_q), dtype=bool)
    for b in range(case.batch):
        lo, hi = key_ranges(case, b)
        out[b] = lo > hi
    return out


def visible_pairs_per_batch(case: Case) -> np.ndarray:
    """Exact number of visible (query, key) pairs of each batch element (per head)."""
    if case.mask_mod is not None:
        return _mask_mod_counts(case)[0].sum(axis=1)
    out = np.empty(case.batch, dtype=np.int64)
    for b in range(case.batch):
        lo, hi = key_ranges(case, b)
        out[b] = np.maximum(hi - lo + 1, 0).sum()
    return out


def row_counts(case: Case, b: int) -> np.ndarray:
    """How many keys each query row of batch element b sees (int64, seq_q)."""
    if case.mask_mod is not None:
        return _mask_mod_counts(case)[0][b].copy()
    lo, hi = key_ranges(case, b)
    return np.maximum(hi - lo + 1, 0)


def key_counts(case: Case, b: int) -> np.ndarray:
    """How many query rows of batch element b see each key (int64, seq_kv)."""
    if case.mask_mod is not None:
        return _mask_mod_counts(case)[1][b].copy()
    lo, hi = key_ranges(case, b)
    keep = hi >= lo
    diff = np.zeros(case.seq_kv + 1, dtype=np.int64)
    np.add.at(diff, lo[keep], 1)
    np.add.at(diff, hi[keep] + 1, -1)
    return np.cumsum(diff)[:-1]


@functools.lru_cache(maxsize=16)
def _mask_mod_counts(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """(keys each row sees (batch, seq_q), rows seeing each key (batch, seq_kv)) of a case with
    a mask function, counted in chunks of rows; pairs and empty rows derive from the first."""
    per_row = np.zeros((case.batch, case.seq_q), dtype=np.int64)
    per_key = np.zeros((case.batch, case.seq_kv), dtype=np.int64)
    for b in range(case.batch):
        for rows in mask_mod.row_chunks(case):
            vis = visibility(case, b, rows)
            per_row[b, rows] = vis.sum(axis=1)
            per_key[b] += vis.sum(axis=0)
    return per_row, per_key


def mask_picture(case: Case, b: int = 0) -> np.ndarray:
    """(rows, cols) in [0, 1]: the fraction of visible pairs in each block of batch element b,
    at most mask_mod.PICTURE_PIXELS a side (what a record with a mask function carries)."""
    return mask_mod.picture(case, lambda rows: visibility(case, b, rows))


def alibi_slopes(n_heads: int) -> np.ndarray:
    """The ALiBi slope of each of n heads: 2^(−8(h+1)/n) for n a power of two; otherwise those
    of the nearest lower power of two followed by every other slope of the next one."""
    def geometric(n: int) -> np.ndarray:
        return 2.0 ** (-8.0 * np.arange(1, n + 1) / n)

    p = 1 << (n_heads.bit_length() - 1)
    if p == n_heads:
        return geometric(n_heads)
    return np.concatenate([geometric(p), geometric(2 * p)[0::2][: n_heads - p]])


def score_terms(case: Case, b: int, heads: np.ndarray, rows: np.ndarray,
                bias: np.ndarray | None) -> np.ndarray | None:
    """The additive terms (ALiBi + bias) of batch element b on query heads and rows, float64
    (len(heads) or 1, len(rows), seq_kv); None when the case has neither."""
    out = None
    if case.alibi:
        diag = rows + offsets(case)[b]
        dist = np.abs(diag[:, None] - np.arange(case.seq_kv)[None, :]).astype(np.float64)
        out = -alibi_slopes(case.heads_q)[heads][:, None, None] * dist[None]
    if bias is not None:
        bb = bias[b if bias.shape[0] > 1 else 0]
        bh = bb[heads] if bb.shape[0] > 1 else bb[:1]
        term = bh[:, rows, :]
        out = term if out is None else out + term
    return out


def apply_softcap(s: np.ndarray, cap: float | None) -> np.ndarray:
    """s ← cap·tanh(s / cap) in place (no-op without a cap)."""
    if cap is not None:
        np.divide(s, cap, out=s)
        np.tanh(s, out=s)
        np.multiply(s, cap, out=s)
    return s


def bias_shape(case: Case) -> tuple[int, int, int, int] | None:
    """Shape of the case's bias tensor (broadcast over batch and/or heads), or None."""
    if case.bias == "none":
        return None
    b = case.batch if case.bias == "batch_head" else 1
    h = case.heads_q if case.bias in ("head", "batch_head") else 1
    return (b, h, case.seq_q, case.seq_kv)


def random_lengths(key: str, count: int, top: int) -> tuple[int, ...]:
    """count lengths in 1..top drawn from a seed fixed by (key, count, top): the same case
    always gets the same lengths."""
    rng = np.random.default_rng(zlib.crc32(f"{key}:{count}:{top}".encode()))
    return tuple(int(x) for x in rng.integers(1, top + 1, size=count))


def random_documents(n_docs: int, total: int) -> tuple[int, ...]:
    """n_docs document lengths (each >= 1) summing to total, from a seed fixed by both."""
    rng = np.random.default_rng(zlib.crc32(f"docs:{n_docs}:{total}".encode()))
    # an int population: O(n_docs) memory, not an arange of the whole sequence
    cuts = np.sort(rng.choice(total - 1, size=n_docs - 1, replace=False) + 1)
    return tuple(int(x) for x in np.diff(np.concatenate([[0], cuts, [total]])))


def log_sum_exp(s: np.ndarray) -> np.ndarray:
    """ln Σ e^s over the last axis (the lse of each row of scores, −inf where masked), shifted by
    the row's largest score so nothing overflows; −inf for a row whose scores are all −inf."""
    m = s.max(axis=-1)
    safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):  # ln 0 = −inf: the row sees no key
        return safe + np.log(np.exp(s - safe[..., None]).sum(axis=-1))
