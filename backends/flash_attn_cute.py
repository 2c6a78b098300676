"""flash-attn-4: FlashAttention-4's CuTe DSL kernels (flash_attn.cute), CUDA only, (B, S, H, D).

What it takes, read from flash-attn-4 4.0.0b36's flash_attn/cute/interface.py: float16 and
bfloat16 (fp8 forward only on SM100); on SM90 head_dim and head_dim_v each 8..256 and a multiple
of 16 bytes (8 elements), on SM100/SM110 8..128 (or (192, 128), (256, 256)), which the library
asserts and the adapter turns into `unsupported`; heads_q a multiple of heads_kv (native grouped
heads); causal aligned bottom-right (offset seqlen_k - seqlen_q); `window_size=(left, right)`
with None for an unbounded side; `softcap`; flash_attn_varlen_func for packed sequences
(cu_seqlens), per-sequence lengths of padded tensors (seqused_q / seqused_k) and a paged cache
(page_table over page pools, with seqused_k). No ALiBi slopes and no additive bias tensor.
flash_attn_func and flash_attn_varlen_func return (out, lse).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from attnbench import Backend, Capabilities, Inputs, Unsupported

MODULE = "flash_attn.cute"
DTYPES = ("float16", "bfloat16")
MODES = ("fwd", "bwd", "fwd_bwd")
VARIANTS = ("window", "lengths", "packed", "paged", "documents", "softcap", "dv")
WHY_NOT = {
    "alibi": "flash-attn-4 takes no ALiBi slopes (its score_mod is a CuTe DSL function)",
    "bias": "flash-attn-4 takes no additive bias tensor",
    "sinks": "flash-attn-4's learnable_sink argument is not wired here yet (no GPU to verify it)",
    "lse": "not wired yet: this adapter asks flash-attn-4 for the output only (untested "
           "without a GPU)",
    "kv_quant": "not wired yet: this adapter hands flash-attn-4 one dtype for q, k and v",
    "mask_mod": "not wired yet: flash-attn-4's mask_mod is a CuTe DSL function, not a NumPy "
                "one (untested without a GPU)",
}


def int32_on(x: Any, like: Any) -> Any:
    """A NumPy int array as an int32 tensor on like's device (built on the device directly)."""
    import numpy as np
    import torch

    return torch.tensor(np.asarray(x).tolist(), dtype=torch.int32, device=like.device)


def bshd(x: Any) -> Any:
    """(B, H, S, D) → contiguous (B, S, H, D): a copy (as .contiguous() of a transpose makes;
    written as a clone, which torch's fake CUDA tensors also take on a CPU-only build)."""
    import torch

    return x.transpose(1, 2).clone(memory_format=torch.contiguous_format)


def variant_kwargs(inputs: Inputs) -> dict[str, Any]:
    """The keywords both entry points share: scale, causal, window_size (None: unbounded
    side; only with a window), softcap (only when the case has one)."""
    case = inputs.case
    kw: dict[str, Any] = {"softmax_scale": inputs.scale, "causal": case.mask == "causal"}
    if "window" in case.variants:
        kw["window_size"] = tuple(None if w < 0 else w for w in inputs.window)
    if case.softcap is not None:
        kw["softcap"] = float(case.softcap)
    return kw


def documents_call(inputs: Inputs) -> tuple[tuple, dict[str, Any], Callable[[Any], Any]]:
    """Documents: every sequence full, the batch as one run of documents (cu_seqlens)."""
    import numpy as np

    from attnbench.verify.layouts import cu_seqlens

    case = inputs.case
    docs = np.tile(np.asarray(case.doc_lens), case.batch)
    q, k, v = (bshd(x).flatten(0, 1) for x in (inputs.q, inputs.k, inputs.v))
    cu = int32_on(cu_seqlens(docs), q)
    extra = {"cu_seqlens_q": cu, "cu_seqlens_k": cu, "max_seqlen_q": int(docs.max()),
             "max_seqlen_k": int(docs.max())}
    return (q, k, v), extra, lambda out: out.unflatten(0, (case.batch, case.seq_q)).transpose(1, 2)


def plan(inputs: Inputs) -> tuple[str, tuple, dict[str, Any], Callable[[Any], Any]]:
    """(entry point, q/k/v, its layout keywords, output → ours) for a case."""
    case = inputs.case
    to_ours = lambda out: out.transpose(1, 2)  # noqa: E731  (B, Sq, Hq, Dv) → (B, Hq, Sq, Dv)
    if case.layout == "packed":
        q = inputs.q
        extra = {"cu_seqlens_q": int32_on(inputs.cu_seqlens_q, q),
                 "cu_seqlens_k": int32_on(inputs.cu_seqlens_k, q),
                 "max_seqlen_q": inputs.max_seqlen_q, "max_seqlen_k": inputs.max_seqlen_k}
        return "flash_attn_varlen_func", (q, inputs.k, inputs.v), extra, lambda out: out
    if case.doc_lens is not None:
        if case.q_lens is not None or case.kv_lens is not None:
            raise Unsupported("flash-attn-4: documents with per-sequence lengths are not mapped")
        return ("flash_attn_varlen_func", *documents_call(inputs))
    q = bshd(inputs.q)
    if case.layout == "paged":
        if case.q_lens is not None:
            raise Unsupported("flash-attn-4: a paged cache with per-sequence query lengths is "
                              "not mapped")
        extra = {"page_table": int32_on(inputs.block_table, q),
                 "seqused_k": int32_on(inputs.kv_lens, q)}
        return "flash_attn_varlen_func", (q, inputs.k, inputs.v), extra, to_ours
    k, v = bshd(inputs.k), bshd(inputs.v)
    if case.q_lens is None and case.kv_lens is None:
        return "flash_attn_func", (q, k, v), {}, to_ours
    extra = {"seqused_k": int32_on(inputs.kv_lens, q)}  # padded (B, S, H, D) as they are
    if case.q_lens is not None:
        extra["seqused_q"] = int32_on(inputs.q_lens, q)
    return "flash_attn_varlen_func", (q, k, v), extra, to_ours


class FlashAttn4(Backend):
    """FlashAttention-4 through flash_attn.cute's two entry points; GQA is native."""

    name = "flash-attn-4"
    framework = "torch"
    requires = (MODULE,)
    description = ("FlashAttention-4 (CuTe DSL): flash_attn.cute.flash_attn_func / "
                   "_varlen_func; Hopper (SM90) and Blackwell")
    capabilities = Capabilities(devices=("cuda",), dtypes=DTYPES, modes=MODES,
                                head_dim_min=8, head_dim_max=256, head_dim_multiple=8,
                                variants=VARIANTS, why_not=WHY_NOT)

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        entry, qkv, extra, to_ours = plan(inputs)
        func = getattr(importlib.import_module(MODULE), entry)
        kwargs = {**variant_kwargs(inputs), **extra}
        inputs.empty_rows()  # built now, not in the first call
        inputs.report(entry=entry)

        def run() -> Any:
            try:
                out = func(*qkv, **kwargs)
            except AssertionError as exc:  # its limits are asserts, e.g. head dims per arch
                if "not supported" in str(exc) or "Unsupported" in str(exc):
                    raise Unsupported(f"{self.name}: {exc}") from exc
                raise
            if isinstance(out, tuple):  # (out, lse)
                out = out[0]
            # rows that see no key must be zeros, whatever the kernel leaves there
            return inputs.zero_empty_rows(to_ours(out))

        return run
