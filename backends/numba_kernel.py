"""The numba-cpu kernel: FlashAttention's tiled online softmax, compiled by Numba (imports numba).

Imported only by backends/numba_cpu.py when the backend runs, so that numba stays optional.
One parallel task per (batch, query head, query tile); per key tile, s = q kᵀ and acc += p v
are BLAS matmuls (np.dot on contiguous 2-D tiles, through scipy's BLAS), the softmax is online
(running max and sum per row), exp is a vectorisable polynomial, key tiles that no row of the
query tile sees are never visited and tiles every row sees fully are not masked at all.
Variants are arguments from the start: per-batch lengths, a window, ALiBi slopes and softcap.
"""

from __future__ import annotations

import math
import types
from typing import Any

import numpy as np
from numba import njit, prange
from numpy.polynomial import chebyshev as C

FLAGS = {"reassoc", "contract", "nnan", "nsz", "arcp"}  # no "ninf": masked scores are -inf
EXP_DEGREE = 5  # float32: exp(x) = 2^n · e^r, |r| <= ln2/2, e^r by a degree-5 polynomial


def exp_constants(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(consts, ints) for row_exp in dtype: float32 gets [log2 e, ln 2 high, ln 2 low, lowest
    x, 0.5, 0, then the polynomial from x^5 down to x^0] and [mantissa bits, exponent bias];
    float64 gets empty arrays (it calls np.exp, accurate to its last bit)."""
    dtype = np.dtype(dtype)
    if dtype != np.float32:
        return np.empty(0, dtype), np.empty(0, np.int64)
    a = math.log(2) / 2  # Chebyshev fit of e^r on [-a, a]: relative error 1.0e-7
    nodes = np.cos(np.pi * (np.arange(64) + 0.5) / 64)
    coef = C.cheb2poly(C.chebfit(nodes, np.exp(nodes * a), EXP_DEGREE))
    coef = coef / a ** np.arange(EXP_DEGREE + 1)
    ln2_hi = float(np.float32(math.log(2)))
    head = [1 / math.log(2), ln2_hi, math.log(2) - ln2_hi, -87.0, 0.5, 0.0]
    return np.array(head + list(coef[::-1]), dtype), np.array([23, 127], np.int32)


@njit(cache=True, fastmath=FLAGS)
def row_exp(s, m, ib, c, ic):  # pragma: no cover - compiled
    """s[:] = exp(s - m) in place (0 where s is -inf); returns sum(s). ib: int scratch."""
    if c.shape[0] == 0:  # float64: the library exp
        total = m - m
        for j in range(s.shape[0]):
            s[j] = np.exp(s[j] - m)
            total += s[j]
        return total
    log2e, hi, lo, lowest, half, total = c[0], c[1], c[2], c[3], c[4], c[5]
    c5, c4, c3, c2, c1, c0 = c[6], c[7], c[8], c[9], c[10], c[11]
    mant, bias = ic[0], ic[1]
    for j in range(s.shape[0]):
        x = s[j] - m
        y = max(x, lowest)
        t = np.floor(y * log2e + half)
        r = (y - t * hi) - t * lo
        p = ((((c5 * r + c4) * r + c3) * r + c2) * r + c1) * r + c0
        s[j] = p if x > lowest else total  # total is still 0: exp(-inf) = 0
        ib[j] = (np.int32(t) + bias) << mant
    fb = ib.view(s.dtype)
    for j in range(s.shape[0]):
        e = s[j] * fb[j]
        total += e
        s[j] = e
    return total


@njit(cache=True)
def key_range(i, off, lk, causal, wl, wr, docs):  # pragma: no cover - compiled
    """[lo, hi] (inclusive) of the keys query row i sees; hi < lo when it sees none.

    docs: (2, seq) first and last position of each position's document, or (2, 0) without."""
    lo, hi = 0, lk - 1
    if wl >= 0:
        lo = max(lo, i + off - wl)
    if causal:
        hi = min(hi, i + off)
    if wr >= 0:
        hi = min(hi, i + off + wr)
    if docs.shape[1] > 0:
        lo, hi = max(lo, docs[0, i]), min(hi, docs[1, i])
    return lo, hi


@njit(cache=True, fastmath=FLAGS)
def adjust_scores(s, i0, j0, off, lk, causal, wl, wr, docs, slope, softcap,
                  full):  # pragma: no cover - compiled
    """Softcap, ALiBi and the mask on a (rows, keys) score tile whose corner is (i0, j0)."""
    n, w = s.shape
    for r in range(n):
        if softcap > 0:
            for j in range(w):
                s[r, j] = softcap * np.tanh(s[r, j] / softcap)
        if slope != 0:
            for j in range(w):
                s[r, j] -= slope * abs(i0 + r + off - (j0 + j))
        if not full:
            lo, hi = key_range(i0 + r, off, lk, causal, wl, wr, docs)
            for j in range(w):
                if j0 + j < lo or j0 + j > hi:
                    s[r, j] = -np.inf


@njit(cache=True, fastmath=FLAGS)
def row_max(s, lanes):  # pragma: no cover - compiled
    """max(s) over 16 lanes (lanes: 16 scratch), which vectorises where a plain loop does not."""
    w = s.shape[0]
    top = w - w % 16
    lanes[:] = -np.inf
    for j in range(0, top, 16):
        for u in range(16):
            lanes[u] = lanes[u] if lanes[u] > s[j + u] else s[j + u]
    mx = lanes[0]
    for u in range(1, 16):
        mx = max(mx, lanes[u])
    for j in range(top, w):
        mx = max(mx, s[j])
    return mx


@njit(cache=True, fastmath=FLAGS)
def online_update(s, m, den, acc, ib, pv, vt, c, ic):  # pragma: no cover - compiled
    """Fold one score tile into the running max m, sum den and output acc (rows of s)."""
    n = s.shape[0]
    lanes = np.empty(16, dtype=s.dtype)
    for r in range(n):
        new = max(m[r], row_max(s[r], lanes))
        if new == -np.inf:  # this row sees nothing yet: its probabilities are all 0
            s[r, :] = 0
            continue
        corr = np.exp(m[r] - new)
        den[r] = den[r] * corr + row_exp(s[r], new, ib, c, ic)
        if corr != 1:
            acc[r, :] *= corr
        m[r] = new
    np.dot(s, vt, pv)
    acc += pv


@njit(cache=True, fastmath=FLAGS)
def query_tile(q2, k2, v2, o2, qrow, krow, i0, n, off, lk, causal, wl, wr, docs, slope,
               softcap, scale, tk, c, ic):  # pragma: no cover - compiled
    """Attention of query rows i0..i0+n (rows qrow.. of q2) against one kv head (krow..)."""
    dv = v2.shape[1]
    qt = q2[qrow:qrow + n] * scale
    m = np.full(n, -np.inf, dtype=q2.dtype)
    den = np.zeros(n, dtype=q2.dtype)
    acc = np.zeros((n, dv), dtype=q2.dtype)
    sbuf = np.empty(n * tk, dtype=q2.dtype)
    pbuf = np.empty(n * dv, dtype=q2.dtype)
    ib = np.empty(tk, dtype=ic.dtype)
    first_lo, first_hi = key_range(i0, off, lk, causal, wl, wr, docs)
    last_lo, last_hi = key_range(i0 + n - 1, off, lk, causal, wl, wr, docs)
    plain = softcap <= 0 and slope == 0
    for j0 in range(max(first_lo, 0), min(last_hi, lk - 1) + 1, tk):
        w = min(tk, last_hi + 1 - j0)
        s = sbuf[:n * w].reshape((n, w))
        np.dot(qt, k2[krow + j0:krow + j0 + w].T, s)
        full = last_lo <= j0 and first_hi >= j0 + w - 1
        if not (full and plain):
            adjust_scores(s, i0, j0, off, lk, causal, wl, wr, docs, slope, softcap, full)
        pv = pbuf.reshape((n, dv))
        online_update(s, m, den, acc, ib, pv, v2[krow + j0:krow + j0 + w], c, ic)
    for r in range(n):
        inv = 1 / den[r] if den[r] > 0 else den[r]  # a row that saw no key: den = 0, out = 0
        o2[qrow + r, :] = acc[r] * inv


@njit(parallel=True, cache=True, fastmath=FLAGS)
def attention(q, k, v, out, scale, causal, q_lens, kv_lens, wl, wr, docs, slopes, softcap,
              tq, tk, c, ic):  # pragma: no cover - compiled
    """out = softmax(q kᵀ·scale + mask) v, one task per (batch, query head, query tile).

    q (B, Hq, Sq, D), k (B, Hkv, Skv, D), v (B, Hkv, Skv, Dv), out (B, Hq, Sq, Dv): C arrays.
    q_lens, kv_lens: per batch; wl, wr: window sides (-1 unbounded); docs: document bounds
    (see key_range); slopes: ALiBi per query head (empty: none); softcap <= 0: none. tq, tk:
    query and key tile sizes; c, ic: exp_constants. Rows that see no key get zeros.
    """
    bn, hq, sq, d = q.shape
    hk, sk, dv = k.shape[1], k.shape[2], v.shape[3]
    group = hq // hk
    q2, o2 = q.reshape((bn * hq * sq, d)), out.reshape((bn * hq * sq, dv))
    k2, v2 = k.reshape((bn * hk * sk, d)), v.reshape((bn * hk * sk, dv))
    tiles = (sq + tq - 1) // tq
    for task in prange(bn * hq * tiles):
        b, h, t = task // (hq * tiles), (task // tiles) % hq, task % tiles
        lq, lk = q_lens[b], kv_lens[b]
        i0 = t * tq
        n = max(0, min(tq, lq - i0))  # rows i >= lq see nothing
        qrow = (b * hq + h) * sq + i0
        o2[qrow + n:qrow + min(tq, sq - i0)] = 0
        if n == 0:
            continue
        slope = slopes[h] if slopes.shape[0] > 0 else softcap * 0
        query_tile(q2, k2, v2, o2, qrow, (b * hk + h // group) * sk, i0, n, lk - lq, lk,
                   causal, wl, wr, docs, slope, softcap, scale, tk, c, ic)


def renamed(fn: Any, name: str) -> Any:
    """A copy of a Python function under another name. Numba's on-disk cache files a function
    by its qualified name and source line, not by its flags: compiled twice from one function
    (parallel and not), the two versions shared one cache entry and each process loaded
    whichever was saved first, so `attention` could run serially (2 cores, 1 busy)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__,
                              fn.__closure__)
    copy.__qualname__ = name
    return copy


# The same kernel on the calling thread only: for small problems, where waking the thread pool
# costs more than the work (and, on a loaded machine, waits for a time slice).
attention_serial = njit(cache=True, fastmath=FLAGS)(renamed(attention.py_func,
                                                            "attention_serial"))


def what_ran(fn: Any, dtype: np.dtype, parallel: bool) -> dict[str, Any]:
    """Facts for Inputs.report after a call of fn (attention or attention_serial) on arrays of
    dtype: `cache_hit`, whether that compiled version came from numba's on-disk cache (False:
    compiled in this process; None: no such version found), and `threading_layer`, the layer
    numba's parallel loops ran on (None for the serial kernel)."""
    import numba

    item = numba.from_dtype(dtype)
    sigs = [s for s in fn.signatures if getattr(s[0], "dtype", None) == item]
    stats = fn.stats
    hit = (None if not sigs else True if stats.cache_hits.get(sigs[0]) else
           False if stats.cache_misses.get(sigs[0]) else None)
    return {"cache_hit": hit, "threading_layer": numba.threading_layer() if parallel else None}
