"""flex-attention: torch.nn.attention.flex_attention under torch.compile; variants as mods."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from attnbench import Backend, Capabilities, Case, Inputs, hookimpl
from attnbench.variants import VARIANTS

MODULE = "torch.nn.attention.flex_attention"
RECOMPILE_LIMIT = 256  # one graph per dtype/mask/heads family: never fall back to eager


@cache
def compiled_flex() -> Callable[..., Any]:
    """flex_attention wrapped in torch.compile once per process; graphs compile on first call.

    dynamic=True: one graph serves every sequence length of a (dtype, mask, grouping) family,
    so a sweep pays a few compiles, not one per shape. Each compile lands in the first call of
    the case that triggers it (the harness's first_call_ms), never in the timed median.
    """
    import torch
    import torch._dynamo
    import torch.fx.experimental._config as fx_config
    from torch.nn.attention.flex_attention import flex_attention

    fx_config.use_duck_shape = False  # seq_q == seq_kv in one case must not force a recompile later
    cfg = torch._dynamo.config
    for knob in ("recompile_limit", "cache_size_limit"):  # renamed across torch versions
        if hasattr(cfg, knob) and getattr(cfg, knob) < RECOMPILE_LIMIT:
            setattr(cfg, knob, RECOMPILE_LIMIT)
    return torch.compile(flex_attention, dynamic=True)


def causal_block_mask(case: Case, device: str) -> Any:
    """A BlockMask for bottom-right causal: query i sees key j iff j <= i + (seq_kv - seq_q)."""
    import torch
    from torch.nn.attention.flex_attention import create_block_mask

    # a tensor, not a Python int, so that a new offset does not force a recompile
    offset = torch.tensor(case.seq_kv - case.seq_q, device=device)

    def bottom_right(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        return kv_idx <= q_idx + offset

    return create_block_mask(bottom_right, None, None, case.seq_q, case.seq_kv, device=device)


VISIBILITY = ("window", "lengths", "packed", "paged", "documents")  # through mask_mod


def scalar(x: int | float, device: Any) -> Any:
    """A 0-d tensor (int32 for an int, as flex's indices): a captured tensor is a graph input,
    so a new value forces no recompile."""
    import torch

    return torch.tensor(x, device=device, dtype=torch.int32 if isinstance(x, int) else None)


def index(x: Any, device: Any) -> Any:
    """A NumPy int array as an int32 tensor on a device, flex's index dtype, of static size.

    torch 2.13's CPU inductor emits C++ that does not compile for a mod reading an int64
    tensor, or one whose size is a symbol (its name gets mangled into `cur_kvSplitSize4`)."""
    import torch

    return static(torch.from_numpy(np.ascontiguousarray(x)).to(device=device,
                                                                dtype=torch.int32))


def static(t: Any) -> Any:
    """t with its sizes marked static for torch.compile (see index)."""
    import torch._dynamo

    torch._dynamo.mark_static(t)
    return t


def packed_positions(inputs: Inputs, device: Any) -> Callable[..., Any]:
    """For the packed layout, run as one sequence of sequences: (b, q_idx, kv_idx) → (seq,
    qpos, kpos, same), each query and key located in its own sequence."""
    cu_q, cu_k = inputs.cu_seqlens_q, inputs.cu_seqlens_k
    sid_q = index(np.repeat(np.arange(len(cu_q) - 1), np.diff(cu_q)), device)
    sid_k = index(np.repeat(np.arange(len(cu_k) - 1), np.diff(cu_k)), device)
    start_q, start_k = index(cu_q[:-1], device), index(cu_k[:-1], device)

    def where(b: Any, q_idx: Any, kv_idx: Any) -> tuple[Any, Any, Any, Any]:
        sq, sk = sid_q[q_idx], sid_k[kv_idx]
        return sq, q_idx - start_q[sq], kv_idx - start_k[sk], sq == sk

    return where


def padded_positions(b: Any, q_idx: Any, kv_idx: Any) -> tuple[Any, Any, Any, Any]:
    """Padded (and paged, once gathered): batch element b, positions as they are."""
    return b, q_idx, kv_idx, None


def visibility_mod(inputs: Inputs, where: Callable[..., Any], device: Any) -> Callable[..., Any]:
    """mask_mod: query i of sequence s sees key j iff both are within its lengths and
    diag − left <= j <= diag + right, diag = i + (Lk − Lq) (causal: right <= 0), and, with
    documents, both lie in one document."""
    case = inputs.case
    big = case.seq_q + case.seq_kv + 1  # an unbounded side
    left, right = (big if w < 0 else w for w in inputs.window)
    if case.mask == "causal":
        right = min(right, 0)
    lq, lk = index(inputs.q_lens, device), index(inputs.kv_lens, device)
    off = index(inputs.kv_lens - inputs.q_lens, device)
    lo, hi = scalar(left, device), scalar(right, device)
    doc = index(inputs.doc_ids, device) if inputs.doc_ids is not None else None

    def visible(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        s, qp, kp, same = where(b, q_idx, kv_idx)
        diag = qp + off[s]
        ok = (qp < lq[s]) & (kp < lk[s]) & (kp >= diag - lo) & (kp <= diag + hi)
        if same is not None:
            ok = ok & same
        if doc is not None:
            ok = ok & (doc[qp] == doc[kp])
        return ok

    return visible


def score_mod(inputs: Inputs, where: Callable[..., Any], device: Any) -> Callable[..., Any] | None:
    """score_mod: s → cap·tanh(s / cap), − slope_h·|i + off − j| (ALiBi), + bias[b, h, i, j];
    only the terms the case has (None without any). flex hands it the scaled score."""
    import torch

    case = inputs.case
    if not (case.softcap or case.alibi or inputs.bias is not None):
        return None
    cap = scalar(float(case.softcap), device) if case.softcap else None
    slopes = (static(torch.from_numpy(inputs.alibi_slopes).to(device=device,
                                                              dtype=torch.float32))
              if case.alibi else None)
    off = index(inputs.kv_lens - inputs.q_lens, device)
    bias = inputs.bias
    if bias is not None:  # broadcast over batch/heads as a view: bias[s, h, i, j] everywhere
        bias = static(bias.expand(case.batch, case.heads_q, case.seq_q, case.seq_kv))

    def modified(score: Any, b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        if cap is not None:
            score = cap * torch.tanh(score / cap)
        if slopes is None and bias is None:
            return score
        s, qp, kp, _ = where(b, q_idx, kv_idx)
        if slopes is not None:
            score = score - slopes[h] * (qp + off[s] - kp).abs()
        if bias is not None:
            score = score + bias[s, h, qp, kp]
        return score

    return modified


def block_mask_for(inputs: Inputs, where: Callable[..., Any], q_len: int, kv_len: int,
                   device: Any) -> Any:
    """The BlockMask of a case: None (no mask), bottom-right causal, or the visibility mod."""
    from torch.nn.attention.flex_attention import create_block_mask

    case = inputs.case
    if not set(case.variants) & set(VISIBILITY):
        return causal_block_mask(case, device) if case.mask == "causal" else None
    batch = case.batch if case.layout != "packed" else None
    return create_block_mask(visibility_mod(inputs, where, device), batch, None, q_len, kv_len,
                             device=device)


def to_bhsd(x: Any) -> Any:
    """Packed (total, heads, d) → one sequence (1, heads, total, d), a view."""
    return x.transpose(0, 1).unsqueeze(0)


def paged_gather(inputs: Inputs) -> Callable[[Any], Any]:
    """A function pool → (batch, heads_kv, seq_kv, d): each sequence's pages read through the
    block table (in the timed call: that read is what paged attention costs)."""
    import torch

    case = inputs.case
    table = torch.from_numpy(inputs.block_table).to(device=inputs.q.device, dtype=torch.int64)
    rows = table.shape[1] * case.page_size

    def gather(pool: Any) -> Any:
        x = pool[table].reshape(case.batch, rows, *pool.shape[2:])
        return x[:, :case.seq_kv].transpose(1, 2)

    return gather


class FlexAttention(Backend):
    name = "flex-attention"
    framework = "torch"
    requires = (MODULE,)
    description = ("flex_attention compiled with torch.compile; masks as BlockMasks, ALiBi, bias "
                   "and soft-capping as a score_mod, packed as one sequence, paged gathered")
    capabilities = Capabilities(
        devices=("cpu", "cuda"), dtypes=("float32", "float16", "bfloat16"),
        modes=("fwd", "bwd", "fwd_bwd"), variants=VARIANTS,
        per_device={"cpu": {"modes": ("fwd",)}},  # no backward on the CPU: NotImplementedError
    )

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        case = inputs.case
        flex = compiled_flex()
        device = inputs.q.device
        packed = case.layout == "packed"
        if packed and (inputs.q.shape[0] == 0 or inputs.k.shape[0] == 0):
            # no query, or no key in any sequence: flex cannot index an empty sequence
            shape = (inputs.q.shape[0], case.heads_q, case.dv)
            return lambda: inputs.q.new_zeros(shape)
        where = packed_positions(inputs, device) if packed else padded_positions
        q, k, v = (to_bhsd(x) for x in (inputs.q, inputs.k, inputs.v)) if packed else (
            inputs.q, inputs.k, inputs.v)
        kwargs = {"block_mask": block_mask_for(inputs, where, q.shape[2],
                                               case.seq_kv if not packed else k.shape[2], device),
                  "score_mod": score_mod(inputs, where, device), "scale": inputs.scale,
                  "enable_gqa": case.heads_q != case.heads_kv}
        gather = paged_gather(inputs) if case.layout == "paged" else None
        inputs.empty_rows()  # built now, not in the first call

        def run() -> Any:
            kk, vv = (gather(k), gather(v)) if gather else (k, v)
            out = flex(q, kk, vv, **kwargs)
            if packed:
                out = out[0].transpose(0, 1)  # (total_q, heads_q, dv), a view
            # rows that see no key must be zeros, whatever the kernel leaves there
            return inputs.zero_empty_rows(out)

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [FlexAttention()]
