"""numpy-naive: materialises the full score matrix in NumPy (float64, float32, float16)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from attnbench import Backend, Capabilities, Inputs, hookimpl
from attnbench.case import MASKS, VARIANTS


def _expand(x: np.ndarray, group: int, axis: int) -> np.ndarray:
    """kv heads repeated for the query heads of their group (x itself when group is 1)."""
    return np.repeat(x, group, axis=axis) if group > 1 else x


def _masking(inputs: Inputs) -> tuple[Any, Any]:
    """(hidden, terms): the boolean mask of unseen keys, or None when every key is seen; the
    additive −inf/ALiBi/bias tensor when the case has ALiBi or a bias (it then replaces hidden)."""
    case = inputs.case
    if case.alibi or case.bias != "none":
        return None, inputs.additive_mask()
    hidden = ~inputs.visible()
    return (hidden if hidden.any() else None), None


def _softmax_v(s: np.ndarray, v: np.ndarray, hidden: Any, terms: Any,
               cap: float | None, sink: Any = None, lse: bool = False) -> Any:
    """softmax(cap(s) + terms, masked) v in place on s; a row that sees no key gives zeros;
    sink: logits (broadcast over rows) that join each row's denominator, or None; lse: return
    (out, m + ln(denominator)) instead, in float32 (float64 for float64), −inf for a row that
    sees no key."""
    if cap is not None:
        s /= cap
        np.tanh(s, out=s)
        s *= cap
    if terms is not None:
        s += terms
    if hidden is not None:
        np.copyto(s, -np.inf, where=hidden)
    m = s.max(axis=-1, keepdims=True)
    if sink is not None:
        m = np.maximum(m, sink)
    m[~np.isfinite(m)] = 0  # a row that sees no key: every exp is 0, its sum too
    np.subtract(s, m, out=s)
    np.exp(s, out=s)
    den = s.sum(axis=-1, keepdims=True)
    if sink is not None:
        den += np.exp(sink - m)
    s /= np.maximum(den, np.finfo(s.dtype).tiny)
    if not lse:
        return np.matmul(s, v)
    wide = np.float64 if s.dtype == np.float64 else np.float32
    with np.errstate(divide="ignore"):  # ln 0 = −inf: the row sees no key
        row_lse = m.astype(wide) + np.log(den.astype(wide))
    return np.matmul(s, v), row_lse[..., 0]


class NumpyNaive(Backend):
    name = "numpy-naive"
    framework = "numpy"
    description = "NumPy: q kᵀ, mask, softmax and p v, with the whole score matrix in memory"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float64", "float32", "float16"),
                                masks=MASKS, variants=VARIANTS)

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        if inputs.case.layout == "packed":
            return _packed(inputs)
        case, q = inputs.case, inputs.q
        scale, cap = q.dtype.type(inputs.scale), case.softcap
        hidden, terms = _masking(inputs)
        fetch = _kv_source(inputs)
        sink = None if inputs.sinks is None else inputs.sinks[None, :, None, None]
        lse = case.lse  # return (out, lse)

        def run() -> Any:
            kt, v = fetch()
            s = np.matmul(q, kt)
            s *= scale
            return _softmax_v(s, v, hidden, terms, cap, sink, lse)

        return run


def _kv_source(inputs: Inputs) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """A callable giving (kᵀ, v) with the kv heads expanded to the query heads: built once
    here for the padded layout; for the paged one it gathers each sequence's pages through
    the block table on every call (inside the timed call, as a paged kernel must)."""
    case = inputs.case
    group = case.heads_q // case.heads_kv
    if inputs.k_scale is not None:  # kv_quant: dequantized and expanded in every call
        def dequantize() -> tuple[np.ndarray, np.ndarray]:
            kd, vd = inputs.dequantized_kv()
            return np.swapaxes(_expand(kd, group, 1), -1, -2), _expand(vd, group, 1)

        return dequantize
    if case.layout != "paged":
        kt = np.ascontiguousarray(np.swapaxes(_expand(inputs.k, group, 1), -1, -2))
        v = _expand(inputs.v, group, 1)
        return lambda: (kt, v)
    table, k_pool, v_pool = inputs.block_table, inputs.k, inputs.v

    def gather(pool: np.ndarray) -> np.ndarray:
        g = pool[table]  # (batch, pages_per_seq, page_size, heads_kv, d)
        g = g.reshape(case.batch, -1, pool.shape[2], pool.shape[3])[:, :case.seq_kv]
        return _expand(np.swapaxes(g, 1, 2), group, 1)  # (batch, heads_q, seq_kv, d)

    return lambda: (np.swapaxes(gather(k_pool), -1, -2), gather(v_pool))


def _packed(inputs: Inputs) -> Callable[[], np.ndarray]:
    """The packed (varlen) layout: one sequence at a time, each with its own score matrix."""
    case, q, k, v = inputs.case, inputs.q, inputs.k, inputs.v
    group = case.heads_q // case.heads_kv
    scale, cap = q.dtype.type(inputs.scale), case.softcap
    cq, ck = inputs.cu_seqlens_q, inputs.cu_seqlens_k
    hidden, terms = _masking(inputs)
    sink = None if inputs.sinks is None else inputs.sinks[:, None, None]
    seqs = []  # (b, q rows, k rows, hidden, terms) of each sequence with queries
    for b in range(case.batch):
        lq, lk = int(cq[b + 1] - cq[b]), int(ck[b + 1] - ck[b])
        h = ~inputs.visible(b)[:lq, :lk] if hidden is not None or terms is not None else None
        t = None if terms is None else terms[min(b, terms.shape[0] - 1), :, :lq, :lk]
        if lq:
            seqs.append((slice(cq[b], cq[b + 1]), slice(ck[b], ck[b + 1]), h, t))

    def run() -> np.ndarray:
        out = np.zeros((q.shape[0], case.heads_q, case.dv), dtype=q.dtype)
        for qs, ks, h, t in seqs:
            if ks.stop == ks.start:
                continue  # no keys: the rows stay zero
            qb = np.swapaxes(q[qs], 0, 1)  # (heads_q, lq, d)
            kt = np.transpose(_expand(k[ks], group, 1), (1, 2, 0))  # (heads_q, d, lk)
            s = np.matmul(qb, kt)
            s *= scale
            vb = np.swapaxes(_expand(v[ks], group, 1), 0, 1)
            res = _softmax_v(s, vb, h if t is None else None, t, cap, sink)
            out[qs] = np.swapaxes(res, 0, 1)
        return out

    return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [NumpyNaive()]
