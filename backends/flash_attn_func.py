"""flash-attn: FlashAttention-2's three entry points (layout B, S, H, D), CUDA only.

flash_attn_func for padded cases, flash_attn_varlen_func (cu_seqlens) for packed sequences,
per-sequence query lengths and documents, flash_attn_with_kvcache for per-sequence cache
lengths and the paged KV cache (block_table). Window, ALiBi and soft-capping are native
arguments of all three. flash-attn-4 (flash_attn.cute) is in backends/flash_attn_cute.py and
registers through this module's hook.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from attnbench import Backend, Capabilities, Inputs, Unsupported, hookimpl

MIN_VERSIONS = {"flash_attn": "2.1"}  # causal became bottom-right aligned in flash-attn 2.1
HALF_DTYPES = ("float16", "bfloat16")
MODES = ("fwd", "bwd", "fwd_bwd")
FA2_VARIANTS = ("window", "lengths", "packed", "paged", "documents", "alibi", "softcap")
FA2_WHY = {
    "bias": "flash-attn takes no additive bias tensor (ALiBi slopes only)",
    "dv": "FlashAttention-2 needs v's head dim equal to q's",
    "sinks": "FlashAttention-2 has no sink term in its softmax",
    "lse": "not wired yet: flash_attn_func(..., return_attn_probs=True) gives softmax_lse, but "
           "this adapter asks for the output only (untested without a GPU)",
    "kv_quant": "FlashAttention-2 takes one dtype for q, k and v (FlashAttention-3's FP8 "
                "path with descale factors is not wired: no GPU to verify it)",
    "mask_mod": "flash-attn takes causal, windows and lengths only, no mask of arbitrary keys",
}
PAGE_MULTIPLE = 256  # FlashAttention-2's paged KV cache needs page_block_size % 256 == 0


def variant_kwargs(inputs: Inputs) -> dict[str, Any]:
    """The keyword arguments every entry point shares; a variant's only when the case uses it
    (window_size (left, right) with -1 unbounded, alibi_slopes float32 (heads_q,), softcap)."""
    import torch

    case = inputs.case
    kw: dict[str, Any] = {"softmax_scale": inputs.scale, "causal": case.mask == "causal"}
    if "window" in case.variants:
        kw["window_size"] = inputs.window
    if case.alibi:
        kw["alibi_slopes"] = torch.from_numpy(inputs.alibi_slopes).to(
            device=inputs.q.device, dtype=torch.float32)
    if case.softcap is not None:
        kw["softcap"] = float(case.softcap)
    return kw


def int32(x: Any, like: Any) -> Any:
    """A NumPy int array as an int32 tensor on like's device."""
    import torch

    return torch.from_numpy(x).to(device=like.device, dtype=torch.int32)


def bshd(x: Any) -> Any:
    """(B, H, S, D) → contiguous (B, S, H, D)."""
    return x.transpose(1, 2).contiguous()


def route(inputs: Inputs) -> str:
    """Which entry point a case needs: 'func', 'varlen' or 'kvcache'."""
    case = inputs.case
    if case.layout == "paged":
        if case.q_lens is not None:
            raise Unsupported("flash-attn: flash_attn_with_kvcache takes one query length for "
                              "every sequence, not q_lens, with a paged cache")
        if case.page_size % PAGE_MULTIPLE:
            raise Unsupported(f"flash-attn: FlashAttention-2's paged KV cache needs page_size "
                              f"a multiple of {PAGE_MULTIPLE}, not {case.page_size}")
        return "kvcache"
    if case.layout == "packed" or case.q_lens is not None or case.doc_lens is not None:
        return "varlen"
    if case.kv_lens is not None and case.mode == "fwd":
        return "kvcache"  # flash_attn_with_kvcache has no backward: gradients go varlen
    return "varlen" if case.kv_lens is not None else "func"


Call = tuple[Callable[[], tuple], dict, Callable[[Any], Any]]  # (args, kwargs, output → ours)


def constant(args: tuple) -> Callable[[], tuple]:
    return lambda: args


def func_call(inputs: Inputs) -> Call:
    """flash_attn_func(q, k, v) on (B, S, H, D): (args, extra kwargs, output → ours); args is
    a function, as a padded case packed for varlen must gather again for each backward."""
    args = (bshd(inputs.q), bshd(inputs.k), bshd(inputs.v))
    return constant(args), {}, lambda out: out.transpose(1, 2)


def kvcache_call(inputs: Inputs) -> Call:
    """flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=[, block_table=]): the cache
    is the padded k/v (B, S, H, D), or the page pools (pages, page_size, H, D) as they are."""
    q = bshd(inputs.q)
    extra = {"cache_seqlens": int32(inputs.kv_lens, q)}
    if inputs.case.layout == "paged":
        extra["block_table"] = int32(inputs.block_table, q)
        k, v = inputs.k, inputs.v
    else:
        k, v = bshd(inputs.k), bshd(inputs.v)
    return constant((q, k, v)), extra, lambda out: out.transpose(1, 2)


def segments(inputs: Inputs) -> tuple[Any, Any, int, int]:
    """cu_seqlens_q/k (NumPy int32) and max lengths of the sequences flash-attn sees: the
    case's sequences, or with documents each document of each sequence."""
    import numpy as np

    from attnbench.verify.layouts import cu_seqlens

    case = inputs.case
    if case.doc_lens is not None:
        docs = np.tile(np.asarray(case.doc_lens), case.batch)
        cu = cu_seqlens(docs)
        return cu, cu, int(docs.max()), int(docs.max())
    cu_q, cu_k = cu_seqlens(inputs.q_lens), cu_seqlens(inputs.kv_lens)
    return cu_q, cu_k, inputs.max_seqlen_q, inputs.max_seqlen_k


def varlen_call(inputs: Inputs) -> Call:
    """flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    on (total, H, D): packed inputs as they are; padded ones packed here (documents: the batch
    as one run of documents), the output put back in the padded layout in the call."""
    case = inputs.case
    cu_q, cu_k, max_q, max_k = segments(inputs)
    extra = (int32(cu_q, inputs.q), int32(cu_k, inputs.q), max_q, max_k)
    if case.layout == "packed":
        return constant((inputs.q, inputs.k, inputs.v, *extra)), {}, lambda out: out
    if case.doc_lens is not None:  # every sequence full: (B, S, H, D) is already packed
        qkv = tuple(bshd(x).flatten(0, 1) for x in (inputs.q, inputs.k, inputs.v))

        def back(out: Any) -> Any:
            return out.unflatten(0, (case.batch, case.seq_q)).transpose(1, 2)
        return constant((*qkv, *extra)), {}, back
    gather, back = pack_padded(inputs)
    return lambda: (*gather(), *extra), {}, back


def pack_padded(inputs: Inputs) -> tuple[Callable[[], tuple], Callable[[Any], Any]]:
    """The gather packing padded q/k/v by their lengths (indices computed once, here), and the
    function scattering the packed output back into zeros (B, Hq, Sq, Dv)."""
    import numpy as np
    import torch

    case = inputs.case

    def rows(lens: Any, seq: int) -> Any:
        idx = np.concatenate([b * seq + np.arange(n) for b, n in enumerate(lens)])
        return torch.from_numpy(idx.astype(np.int64)).to(inputs.q.device)

    rq, rk = rows(inputs.q_lens, case.seq_q), rows(inputs.kv_lens, case.seq_kv)

    def gather() -> tuple:
        return (bshd(inputs.q).flatten(0, 1)[rq],
                *(bshd(x).flatten(0, 1)[rk] for x in (inputs.k, inputs.v)))

    def back(out: Any) -> Any:
        full = out.new_zeros(case.batch * case.seq_q, *out.shape[1:])
        full[rq] = out
        return full.unflatten(0, (case.batch, case.seq_q)).transpose(1, 2)

    return gather, back


ENTRY = {"func": ("flash_attn_func", func_call),
         "varlen": ("flash_attn_varlen_func", varlen_call),
         "kvcache": ("flash_attn_with_kvcache", kvcache_call)}


class FlashAttnFunc(Backend):
    """FlashAttention through one module's entry points; GQA is native."""

    framework = "torch"

    def __init__(self, name: str, module: str, caps: Capabilities, note: str):
        self.name, self.module = name, module
        self.requires = (module,)
        self.capabilities = caps
        self.description = note

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        attr, build = ENTRY[route(inputs)]
        func = getattr(importlib.import_module(self.module), attr)
        make_args, extra, back = build(inputs)
        args = make_args()
        kwargs = {**variant_kwargs(inputs), **extra}
        inputs.empty_rows()  # built now, not in the first call
        # fwd_bwd: each call's backward frees what a packing gather saved, so it gathers anew
        fresh = inputs.case.mode == "fwd_bwd"

        def run() -> Any:
            try:
                out = func(*(make_args() if fresh else args), **kwargs)
            except RuntimeError as exc:  # e.g. "FlashAttention only supports Ampere GPUs or newer"
                if "only support" in str(exc):
                    raise Unsupported(f"{self.name}: {exc}") from exc
                raise
            except TypeError as exc:  # an older flash-attn lacks a variant's argument
                if "unexpected keyword" in str(exc):
                    raise Unsupported(f"{self.name}: this flash-attn version has no such "
                                      f"argument: {exc}") from exc
                raise
            if isinstance(out, tuple):  # some versions return (out, softmax_lse)
                out = out[0]
            # rows that see no key must be zeros, whatever the kernel leaves there
            return inputs.zero_empty_rows(back(out))

        return run


def flash_backends() -> list[Backend]:
    """flash-attn (FlashAttention-2) and flash-attn-4 (CuTe DSL, backends/flash_attn_cute.py)."""
    from attnbench.backends.flash_attn_cute import FlashAttn4

    caps = Capabilities(devices=("cuda",), dtypes=HALF_DTYPES, modes=MODES,
                        head_dim_min=8, head_dim_max=256, head_dim_multiple=8,
                        variants=FA2_VARIANTS, why_not=FA2_WHY, min_versions=MIN_VERSIONS)
    return [
        FlashAttnFunc("flash-attn", "flash_attn", caps,
                      "FlashAttention-2: flash_attn_func / _varlen_func / _with_kvcache, "
                      "bottom-right causal (>= 2.1)"),
        FlashAttn4(),
    ]


@hookimpl
def attnbench_backends() -> list[Backend]:
    return flash_backends()
