"""numpy-flash: FlashAttention's tiled online softmax in vectorised NumPy, memory O(N·d).

Work is split into tasks of (batch element, kv head, query tile): the query heads that share a
kv head are stacked into one (heads·rows, d) block, so every step is one BLAS matmul or one
NumPy ufunc on a tile. The tasks run on a thread pool as wide as the BLAS thread setting of the
run (NumPy releases the GIL in ufuncs and BLAS), with BLAS single-threaded inside them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from attnbench import Backend, Capabilities, Inputs, hookimpl
from attnbench import variants as var

TILE_Q, TILE_K = 256, 2048  # rows of one query head and keys per tile: docs/cpu_kernels.md
TILE_K_MASKED = 512  # keys per tile where rows see key ranges (causal, window, documents)
SMALL = 128 * 128  # seq_q * seq_kv under which the tasks run in the calling thread
WHY_NOT = {  # the variants the tiles lack, and why (`attnbench list` and the records say so)
    "packed": "the tiles are cut from padded (batch, heads, seq, d) arrays, not from sequences "
              "packed one after another by cu_seqlens (varlen)",
    "paged": "the tiles read each sequence's keys contiguously, not pages through a block table",
    "kv_quant": "the tiles read k and v in the case dtype, not float8 or int8 codes",
    "mask_mod": "the tiles span each row's one interval of keys (causal, window, lengths, "
                "documents); a mask function's arbitrary set of keys does not fit them",
}


@cache
def pool(threads: int) -> ThreadPoolExecutor:
    """One pool per width, kept for the process (its idle threads cost nothing)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="numpy-flash")


@dataclass
class Problem:
    """One case's arrays and the per-row key ranges, ready for the tile loop."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    out: np.ndarray
    scale: Any
    lo: np.ndarray  # (batch, seq_q): row i of batch b sees keys lo[b, i]..hi[b, i]
    hi: np.ndarray
    off: np.ndarray  # (batch,) kv_len - q_len (ALiBi's diagonal)
    slopes: np.ndarray | None  # (heads_q,) in the dtype, or None
    softcap: Any
    bias: np.ndarray | None
    tk: int  # keys per tile
    sinks: np.ndarray | None = None  # (heads_q,) sink logits in the dtype, or None
    lse: np.ndarray | None = None  # (batch, heads_q, seq_q) m + ln(den) per row, when asked


def problem(inputs: Inputs, out: np.ndarray) -> Problem:
    case, dt = inputs.case, inputs.q.dtype
    ranged = case.mask in var.CAUSAL or case.window_left is not None or (
        case.window_right is not None or case.doc_lens is not None)
    ranges = [var.key_ranges(case, b) for b in range(case.batch)]
    slopes = inputs.alibi_slopes
    return Problem(
        inputs.q, inputs.k, inputs.v, out, dt.type(inputs.scale),
        np.stack([r[0] for r in ranges]), np.stack([r[1] for r in ranges]),
        var.offsets(case).astype(np.int64),
        None if slopes is None else slopes.astype(dt)[:, None, None],
        None if inputs.softcap is None else dt.type(inputs.softcap),
        None if inputs.bias is None else np.asarray(inputs.bias),
        TILE_K_MASKED if ranged else TILE_K,
        None if inputs.sinks is None else np.asarray(inputs.sinks, dtype=dt))


def tasks(case: Any, lo: np.ndarray, hi: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(b, kv head, first row, rows) of every query tile with a row that sees a key."""
    out = []
    for b in range(case.batch):
        rows = np.flatnonzero(lo[b] <= hi[b])
        if rows.size == 0:
            continue
        first, last = int(rows[0]), int(rows[-1]) + 1
        for i0 in range(first, last, TILE_Q):
            for kh in range(case.heads_kv):
                out.append((b, kh, i0, min(TILE_Q, last - i0)))
    return out


def scores(p: Problem, qs: np.ndarray, b: int, hs: slice, i0: int, n: int, j0: int,
           w: int) -> np.ndarray:
    """The (heads, n, w) score tile: softcap, ALiBi, bias and the mask applied."""
    g = qs.shape[0] // n
    kh = hs.start // g
    s = (qs @ p.k[b, kh, j0:j0 + w].T).reshape(g, n, w)
    if p.softcap is not None:
        s /= p.softcap
        np.tanh(s, out=s)
        s *= p.softcap
    j = np.arange(j0, j0 + w)
    if p.slopes is not None:
        dist = np.abs(np.arange(i0, i0 + n)[:, None] + p.off[b] - j[None, :]).astype(s.dtype)
        s -= p.slopes[hs] * dist
    if p.bias is not None:
        bb = p.bias[b if p.bias.shape[0] > 1 else 0]
        s += bb[hs if bb.shape[0] > 1 else slice(0, 1), i0:i0 + n, j0:j0 + w]
    lo, hi = p.lo[b, i0:i0 + n, None], p.hi[b, i0:i0 + n, None]
    if lo.max() > j0 or hi.min() < j0 + w - 1:  # some row does not see the whole tile
        np.copyto(s, -np.inf, where=(j < lo) | (j > hi))
    return s.reshape(g * n, w)


def run_task(p: Problem, task: tuple[int, int, int, int]) -> None:
    """One (batch, kv head, query tile): the online softmax over its key tiles."""
    b, kh, i0, n = task
    g = p.q.shape[1] // p.k.shape[1]
    hs = slice(kh * g, kh * g + g)
    qs = (p.q[b, hs, i0:i0 + n] * p.scale).reshape(g * n, -1)
    m = np.full((g * n, 1), -np.inf, dtype=qs.dtype)
    den = np.zeros((g * n, 1), dtype=qs.dtype)
    if p.sinks is not None:  # a sink is a key seen first: score σ_h, weight e^0, value 0
        m = np.repeat(p.sinks[hs], n)[:, None].astype(qs.dtype)
        den += 1
    acc = np.zeros((g * n, p.v.shape[3]), dtype=qs.dtype)
    lo, hi = p.lo[b, i0:i0 + n], p.hi[b, i0:i0 + n]
    start, stop = int(lo.min()), int(hi.max()) + 1
    for j0 in range(start, stop, p.tk):
        w = min(p.tk, stop - j0)
        s = scores(p, qs, b, hs, i0, n, j0, w)
        new = np.maximum(m, s.max(axis=1, keepdims=True))
        safe = np.where(new == -np.inf, 0, new)  # a row that sees nothing yet stays at 0
        s -= safe
        np.exp(s, out=s)
        corr = np.exp(m - safe)
        den *= corr
        den += s.sum(axis=1, keepdims=True)
        acc *= corr
        acc += s @ p.v[b, kh, j0:j0 + w]
        m = new
    if p.lse is not None:  # the online softmax's own max and sum: ln(den) + m
        with np.errstate(divide="ignore"):  # ln 0 = −inf: a row that sees no key
            p.lse[b, hs, i0:i0 + n] = (np.log(den) + np.where(den > 0, m, 0)).reshape(g, n)
    np.divide(acc, den, out=acc, where=den > 0)
    acc[den[:, 0] == 0] = 0
    p.out[b, hs, i0:i0 + n] = acc.reshape(g, n, -1)


def blas_threads(controller: Any) -> int:
    """The widest BLAS thread setting now (what the run set), at least 1."""
    counts = [lib.num_threads for lib in controller.lib_controllers if lib.user_api == "blas"]
    return max(counts + [1])


class NumpyFlash(Backend):
    name = "numpy-flash"
    framework = "numpy"
    requires = ("threadpoolctl",)
    description = ("NumPy, tiled: online softmax over key tiles (a sink as its first key), "
                   "grouped heads stacked, tasks on threads; memory O(N·d)")
    capabilities = Capabilities(devices=("cpu",), dtypes=("float64", "float32"),
                                masks=("none", *var.CAUSAL),
                                variants=("window", "lengths", "documents", "alibi", "bias",
                                          "softcap", "dv", "sinks", "lse"),
                                why_not=WHY_NOT)

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        from threadpoolctl import ThreadpoolController

        case = inputs.case
        controller = ThreadpoolController()
        threads = blas_threads(controller)
        shape = (case.batch, case.heads_q, case.seq_q, case.dv)
        base = problem(inputs, np.empty(0, dtype=inputs.q.dtype))
        work = tasks(case, base.lo, base.hi)

        inline = threads == 1 or len(work) < 2 or case.seq_q * case.seq_kv < SMALL

        def run() -> Any:
            out = np.zeros(shape, dtype=inputs.q.dtype)
            lse = None if not case.lse else np.full(shape[:3], -np.inf, dtype=inputs.q.dtype)
            if lse is not None and base.sinks is not None:  # a row with no key: ln e^σ_h
                lse[...] = base.sinks[None, :, None]
            p = Problem(**{**base.__dict__, "out": out, "lse": lse})
            if inline:  # one thread, or too little work to be worth handing to the pool
                for t in work:
                    run_task(p, t)
            else:
                with controller.limit(limits=1, user_api="blas"):
                    list(pool(threads).map(lambda t: run_task(p, t), work))
            return out if lse is None else (out, lse)

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [NumpyFlash()]
