"""torch-naive: matmul, mask, softmax, matmul in PyTorch; any float dtype, CPU and CUDA."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attnbench import Backend, Capabilities, Inputs, hookimpl
from attnbench.case import MASKS, VARIANTS

FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")


def _terms(inputs: Inputs) -> Any:
    """The additive −inf/ALiBi/bias tensor when the case has ALiBi or a bias, else None; in
    float32 for the half types, where the scores are upcast to add it (as fused kernels do)."""
    case = inputs.case
    if not (case.alibi or case.bias != "none"):
        return None
    import torch

    half = case.dtype in ("float16", "bfloat16")
    return inputs.additive_mask(torch.float32 if half else None)


def _masking(inputs: Inputs) -> tuple[Any, Any]:
    """(hidden, terms): the boolean mask of unseen keys (None when every key is seen), and the
    additive terms (_terms). With terms, hidden is kept only where some row sees no key: its
    masked_fill keeps that row's NaN out of the gradients."""
    terms = _terms(inputs)
    if terms is not None and not inputs.has_empty_rows():
        return None, terms
    hidden = ~inputs.visible()
    return (hidden if bool(hidden.any()) else None), terms


def _scores(s: Any, hidden: Any, terms: Any, cap: float | None, sink: Any = None) -> Any:
    """cap(s) + terms, masked: the scores the softmax takes, in the terms' dtype when they have
    one (float32 for the half types); sink: logits (broadcast over rows) that join each row's
    denominator as one more key (a last column), or None."""
    import torch

    if cap is not None:
        s = torch.tanh(s / cap) * cap
    if terms is not None:
        s = s.to(terms.dtype) + terms
    if hidden is not None:
        s = s.masked_fill(hidden, float("-inf"))
    if sink is None:
        return s
    return torch.cat([s, sink.to(s.dtype).expand(*s.shape[:-1], 1)], dim=-1)


def _probs(s: Any, hidden: Any, terms: Any, cap: float | None, sink: Any = None) -> Any:
    """softmax over keys of _scores (rows that see no key come out NaN), rounded back to s's
    dtype; the sink's column dropped."""
    import torch

    p = torch.softmax(_scores(s, hidden, terms, cap, sink), dim=-1)
    return (p if sink is None else p[..., :-1]).to(s.dtype)


def _lse(s: Any, hidden: Any, terms: Any, cap: float | None, sink: Any = None) -> Any:
    """Each row's log-sum-exp of _scores, in float32 (float64 for float64); −inf for a row
    that sees no key."""
    import torch

    wide = torch.float64 if s.dtype == torch.float64 else torch.float32
    return torch.logsumexp(_scores(s, hidden, terms, cap, sink).to(wide), dim=-1)


class TorchNaive(Backend):
    name = "torch-naive"
    framework = "torch"
    description = "PyTorch eager: q kᵀ, masked_fill, softmax and p v, score matrix in memory"
    capabilities = Capabilities(
        devices=("cpu", "cuda"), dtypes=FLOAT_DTYPES, modes=("fwd", "bwd", "fwd_bwd"),
        masks=MASKS, variants=VARIANTS,
    )

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        import torch

        if inputs.case.layout == "packed":
            return _packed(inputs)
        case, q = inputs.case, inputs.q
        hidden, terms = _masking(inputs)
        inputs.empty_rows()  # built now, not in the first call
        fetch = _kv_source(inputs)
        sink = None if inputs.sinks is None else inputs.sinks[None, :, None, None]

        def run() -> Any:
            k, v = fetch()
            s = torch.matmul(q, k.transpose(-1, -2)) * inputs.scale
            p = inputs.zero_empty_rows(_probs(s, hidden, terms, case.softcap, sink))  # no key
            if case.lse:
                return torch.matmul(p, v), _lse(s, hidden, terms, case.softcap, sink)
            return torch.matmul(p, v)

        return run


def _kv_source(inputs: Inputs) -> Callable[[], tuple[Any, Any]]:
    """A callable giving (k, v) with the kv heads expanded to the query heads. Padded: expanded
    once here, unless autograd needs the expansion in the graph of every call (a graph built
    in prepare() is freed by the first backward). Paged: each call gathers every sequence's
    pages through the block table (inside the timed call, as a paged kernel must)."""
    import torch

    case, k, v = inputs.case, inputs.k, inputs.v
    group = case.heads_q // case.heads_kv

    def expand(x: Any) -> Any:
        return x.repeat_interleave(group, dim=1) if group > 1 else x

    if case.layout == "paged":
        table = torch.from_numpy(inputs.block_table).to(device=k.device, dtype=torch.long)

        def gather(pool: Any) -> Any:
            g = pool[table]  # (batch, pages_per_seq, page_size, heads_kv, d)
            g = g.reshape(case.batch, -1, pool.shape[2], pool.shape[3])[:, :case.seq_kv]
            return expand(g.transpose(1, 2))

        return lambda: (gather(k), gather(v))
    if inputs.k_scale is not None:  # kv_quant: dequantized and expanded in every call
        def dequantize() -> tuple[Any, Any]:
            kd, vd = inputs.dequantized_kv()
            return expand(kd), expand(vd)

        return dequantize
    if k.requires_grad:
        return lambda: (expand(k), expand(v))
    k, v = expand(k), expand(v)
    return lambda: (k, v)


def _packed(inputs: Inputs) -> Callable[[], Any]:
    """The packed (varlen) layout: one sequence at a time, each with its own score matrix."""
    import torch

    case, q, k, v = inputs.case, inputs.q, inputs.k, inputs.v
    group = case.heads_q // case.heads_kv
    cq, ck = inputs.cu_seqlens_q.tolist(), inputs.cu_seqlens_k.tolist()
    terms = _terms(inputs)
    inputs.empty_rows()
    sink = None if inputs.sinks is None else inputs.sinks[:, None, None]
    seqs = []  # (q rows, k rows, hidden, terms) of each sequence with queries
    for b in range(case.batch):
        lq, lk = cq[b + 1] - cq[b], ck[b + 1] - ck[b]
        t = None if terms is None else terms[min(b, terms.shape[0] - 1), :, :lq, :lk]
        h = None if t is not None else ~inputs.visible(b)[:lq, :lk]
        if lq:
            seqs.append((slice(cq[b], cq[b + 1]), slice(ck[b], ck[b + 1]), h, t))

    def run() -> Any:
        parts = []
        for qs, ks, h, t in seqs:
            qb = q[qs].transpose(0, 1)  # (heads_q, lq, d)
            kb = k[ks].repeat_interleave(group, dim=1).transpose(0, 1)
            vb = v[ks].repeat_interleave(group, dim=1).transpose(0, 1)
            s = torch.matmul(qb, kb.transpose(-1, -2)) * inputs.scale
            parts.append(torch.matmul(_probs(s, h, t, case.softcap, sink), vb).transpose(0, 1))
        if not parts:
            return q.new_zeros((q.shape[0], case.heads_q, case.dv))
        return inputs.zero_empty_rows(torch.cat(parts))  # rows that see no key: 0, not NaN

    return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [TorchNaive()]
