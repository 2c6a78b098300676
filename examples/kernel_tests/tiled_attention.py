"""A sample external kernel: blockwise attention in NumPy with an online softmax.

It stands for a kernel author's own code, which knows nothing of attnbench: q, k, v are
(batch, heads, seq, dim) arrays, causal is bottom-right aligned, grouped heads are allowed.
"""

from __future__ import annotations

import numpy as np

BLOCK = 16  # keys per block


def tiled_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float,
                    causal: bool = False) -> np.ndarray:
    """softmax(q kᵀ · scale [causal]) v, one block of keys at a time."""
    b, hq, lq, _ = q.shape
    group = hq // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    lk = k.shape[2]
    top = np.full((b, hq, lq, 1), -np.inf, dtype=q.dtype)
    total = np.zeros((b, hq, lq, 1), dtype=q.dtype)
    acc = np.zeros((b, hq, lq, v.shape[3]), dtype=q.dtype)
    rows = np.arange(lq)[:, None] + (lk - lq)  # the last key each row may see, when causal
    for start in range(0, lk, BLOCK):
        s = np.matmul(q, np.swapaxes(k[:, :, start:start + BLOCK], -1, -2)) * q.dtype.type(scale)
        if causal:
            keys = np.arange(start, min(start + BLOCK, lk))[None, :]
            s = np.where(keys <= rows, s, -np.inf)
        new_top = np.maximum(top, s.max(axis=-1, keepdims=True))
        safe = np.where(np.isfinite(new_top), new_top, 0)
        keep = np.exp(np.where(np.isfinite(top), top - safe, -np.inf))
        p = np.exp(s - safe)
        total = total * keep + p.sum(axis=-1, keepdims=True)
        acc = acc * keep + np.matmul(p, v[:, :, start:start + BLOCK])
        top = new_top
    return np.where(total > 0, acc / np.where(total > 0, total, 1), 0).astype(q.dtype)
