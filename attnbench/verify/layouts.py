"""The packed (varlen) and paged (KV-cache) layouts: built from the padded arrays, and back."""

from __future__ import annotations

import zlib

import numpy as np

from attnbench.case import Case
from attnbench.variants import lengths


def cu_seqlens(lens: np.ndarray) -> np.ndarray:
    """int32 (batch + 1,) offsets of each sequence in a packed tensor."""
    return np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)


def pack(x: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """(batch, heads, seq, d) → (sum(lens), heads, d): each sequence's first lens[b] rows."""
    parts = [np.swapaxes(x[b, :, :n], 0, 1) for b, n in enumerate(lens)]
    return np.ascontiguousarray(np.concatenate(parts) if parts else x[:0, :, 0])


def unpack(x: np.ndarray, lens: np.ndarray, seq: int) -> np.ndarray:
    """(sum(lens), heads, d) → (batch, heads, seq, d), zeros beyond each sequence's length."""
    out = np.zeros((len(lens), x.shape[1], seq, x.shape[2]), dtype=x.dtype)
    for b, (start, n) in enumerate(zip(cu_seqlens(lens)[:-1], lens, strict=True)):
        out[b, :, :n] = np.swapaxes(x[start:start + n], 0, 1)
    return out


def page_size(case: Case) -> int:
    """The page size of a paged case (a Case checks that a paged one has one)."""
    if case.page_size is None:
        raise ValueError(f"case {case.id} has no page size: it is not paged")
    return case.page_size


def pages_per_seq(case: Case) -> int:
    return -(-case.seq_kv // page_size(case))


def pool_pages(case: Case) -> int:
    """The pages of a case's pool: every sequence's pages, and one free page per sequence that
    no block table row names (a real cache has free pages; reading one is a bug)."""
    return case.batch * (pages_per_seq(case) + 1)


def block_table(case: Case) -> np.ndarray:
    """int32 (batch, pages_per_seq): distinct pages of the pool drawn in a fixed shuffle, one
    row per sequence; the pages left over are the free ones."""
    n = case.batch * pages_per_seq(case)
    rng = np.random.default_rng(zlib.crc32(f"pages:{case.id}".encode()))
    drawn = rng.permutation(pool_pages(case))[:n]
    return drawn.astype(np.int32).reshape(case.batch, pages_per_seq(case))


def page(x: np.ndarray, case: Case, table: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """(batch, heads, seq_kv, d) → a page pool (num_pages, page_size, heads, d) laid out by
    table; slots past seq_kv and the free pages hold fill's values (random, so reading them
    is caught; NaN when poisoned)."""
    ps = page_size(case)
    n_pages = fill.size // (ps * x.shape[1] * x.shape[3])
    pool = fill.reshape(n_pages, ps, x.shape[1], x.shape[3]).copy()
    for b in range(case.batch):
        for p, slot in enumerate(table[b]):
            rows = x[b, :, p * ps:(p + 1) * ps]  # (heads, <=ps, d)
            pool[slot, :rows.shape[1]] = np.swapaxes(rows, 0, 1)
    return pool


def padded_output(out: np.ndarray, case: Case) -> np.ndarray:
    """A backend's output in the padded (batch, heads_q, seq_q, dv) shape whatever its layout."""
    if case.layout != "packed":
        return out
    return unpack(out, lengths(case)[0], case.seq_q)
