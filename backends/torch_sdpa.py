"""torch-sdpa: F.scaled_dot_product_attention, default dispatch and each kernel forced."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from attnbench import Backend, Capabilities, Inputs, Unsupported, hookimpl
from attnbench.case import MASKS

ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")
HALF = ("float16", "bfloat16")
MODES = ("fwd", "bwd", "fwd_bwd")


MASK_VARIANTS = ("window", "lengths", "documents", "alibi", "bias", "mask_mod")  # as attn_mask
QUANT = ("kv_quant",)  # k and v dequantized in the call, then SDPA in the case dtype
NOT_SDPA = {  # the variants SDPA cannot express, and why (`attnbench list` shows them unsupported)
    "softcap": "soft-capping rewrites the scores before the mask, which attn_mask cannot express",
    "packed": "SDPA takes padded (batch, heads, seq, d) tensors, not cu_seqlens (varlen)",
    "paged": "SDPA reads contiguous k/v per sequence, not pages through a block table",
    "lse": "SDPA returns the output only; its log-sum-exp stays inside torch's private "
           "_scaled_dot_product_*_attention ops, which differ per kernel and version",
}


def sdpa_mask_args(inputs: Inputs) -> dict[str, Any]:
    """Mask arguments with bottom-right causal alignment (is_causal is top-left in PyTorch).

    Variants go through attn_mask: a boolean mask (True = attend) where only visibility
    changes (window, lengths, documents, a mask function), the additive mask (−inf, + ALiBi +
    bias) otherwise.
    """
    case = inputs.case
    if case.alibi or case.bias != "none":
        return {"attn_mask": inputs.additive_mask()}
    if set(case.variants) & {"window", "lengths", "documents", "mask_mod"}:
        return {"attn_mask": inputs.visible()}
    if case.mask == "none":
        return {}
    if case.seq_q == case.seq_kv or case.mask == "causal_top_left":
        return {"is_causal": True}  # PyTorch's own top-left alignment
    from torch.nn.attention.bias import causal_lower_right

    with warnings.catch_warnings():  # torch warns of NaN rows for Lq > Lk: prepare() zeroes them
        warnings.simplefilter("ignore", UserWarning)
        return {"attn_mask": causal_lower_right(case.seq_q, case.seq_kv)}


def with_sink_key(inputs: Inputs, kwargs: dict[str, Any], k: Any, v: Any
                  ) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Sinks through SDPA, exactly: one more key per query head whose score is σ_h and whose
    value is 0 (the definition in attnbench/variants.py).

    q gains a coordinate 1 and every key a coordinate 0, the sink key's being σ_h / scale (so
    its score is σ_h), padded by 8 so head dims stay multiples of 8 (v too where its head dim
    is q's, cut off from the output); kv heads are expanded to the query heads (σ is per query
    head); the mask gains a column every row sees (sink_column). Built in prepare(): the call
    is SDPA and a view (with kv_quant the call dequantizes k and v and joins them again,
    sink_kv). Forward only (the gradient oracle has no sinks).
    """
    import torch

    q = inputs.q
    b, h, lq, d = q.shape
    q2 = torch.cat([q, q.new_zeros(b, h, lq, PAD)], dim=-1)
    q2[..., d] = 1
    k2, v2 = sink_kv(inputs, k, v)
    from torch.nn.attention.bias import CausalBias

    mask = kwargs.get("attn_mask")
    if kwargs.get("is_causal") or isinstance(mask, CausalBias):  # as a boolean matrix
        mask = inputs.visible()
    out: dict[str, Any] = {"scale": inputs.scale}
    if mask is not None:
        column = sink_column(inputs, mask)
        lead = torch.broadcast_shapes(mask.shape[:-1], column.shape[:-1])
        out["attn_mask"] = torch.cat([mask.expand(*lead, mask.shape[-1]),
                                      column.expand(*lead, 1)], dim=-1)
    return q2, k2, v2, out


PAD = 8  # head-dim padding of the sink formulation


def sink_kv(inputs: Inputs, k: Any, v: Any) -> tuple[Any, Any]:
    """k and v (in q's dtype) with the sink key joined: kv heads expanded, one more key of
    coordinates (0.., σ_h / scale) and value 0, head dims padded (see with_sink_key)."""
    import torch

    case = inputs.case
    group = case.heads_q // case.heads_kv
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    b, h, lk, d = k.shape
    k2 = k.new_zeros(b, h, lk + 1, d + PAD)
    k2[:, :, :lk, :d] = k
    k2[:, :, lk, d] = (inputs.sinks.double() / inputs.scale).to(k.dtype)[None, :]
    dv = v.shape[-1]
    v2 = torch.cat([v, v.new_zeros(b, h, 1, dv)], dim=2)
    if dv == d:  # the fused kernels want v's head dim equal to q's: zeros, cut off after
        v2 = torch.cat([v2, v2.new_zeros(b, h, lk + 1, PAD)], dim=-1)
    return k2, v2


def sink_column(inputs: Inputs, mask: Any) -> Any:
    """The sink key's column of the mask: True in a boolean mask; in an additive one, the shift
    Inputs.additive_mask gives each row (it subtracts the row's largest visible ALiBi term to
    keep the terms exact in half precision), which the sink must share; 0 without ALiBi."""
    import numpy as np
    import torch

    from attnbench.plugin.inputs import alibi_matrix, visibility_matrix

    if mask.dtype == torch.bool:
        return mask.new_ones((*mask.shape[:-1], 1))
    if not inputs.case.alibi:
        return mask.new_zeros((*mask.shape[:-1], 1))
    top = np.where(visibility_matrix(inputs.case), alibi_matrix(inputs.case), -np.inf).max(
        axis=-1, keepdims=True)
    shift = np.where(np.isfinite(top), -top, 0.0)
    return torch.from_numpy(shift).to(device=mask.device, dtype=mask.dtype)


KERNELS = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}  # SDPBackend
OPS = {  # the aten op each kernel runs as (what the profiler names): tests check KERNELS by it
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_attention_math_for_mps": "math",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash",
    "aten::_flash_attention_forward": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_efficient_attention_forward": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}


def chosen_kernel(q: Any, k: Any, v: Any, kwargs: dict[str, Any]) -> str | None:
    """The kernel F.scaled_dot_product_attention runs for these tensors and arguments under the
    current sdpa_kernel settings, asked of torch's own dispatch (None where it refuses).

    torch's SDPA calls `_fused_sdp_choice` with its arguments and runs the kernel it names; a
    lower-right CausalBias mask (Lq != Lk) goes through torch.nn.attention.bias instead, which
    takes flash, then efficient, where `can_use_*_attention` allows, else SDPA on the
    materialised mask: asked the same way here.
    """
    import torch
    from torch.nn.attention.bias import CausalBias

    mask, gqa = kwargs.get("attn_mask"), bool(kwargs.get("enable_gqa", False))
    if isinstance(mask, CausalBias):
        from torch.backends import cuda

        params = cuda.SDPAParams(q, k, v, None, 0.0, False, gqa)
        if cuda.can_use_flash_attention(params):
            return "flash"
        if cuda.can_use_efficient_attention(params):
            return "efficient"
        mask = mask._materialize(q.device)
    try:
        choice = torch._fused_sdp_choice(q, k, v, mask, 0.0,
                                         bool(kwargs.get("is_causal", False)),
                                         scale=kwargs.get("scale"), enable_gqa=gqa)
    except TypeError:  # a torch whose choice takes other arguments: nothing to say
        return None
    except RuntimeError as exc:  # no kernel takes the case: the call raises it as Unsupported
        if refused(exc):
            return None
        raise
    return KERNELS.get(int(choice), f"SDPBackend {int(choice)}") if choice >= 0 else None


def refused(exc: Exception) -> bool:
    """True for torch's words when no SDPA kernel takes a case."""
    return "No viable backend" in str(exc) or "No available kernel" in str(exc)


def profiled_kernels(fn: Callable[[], Any]) -> list[str]:
    """The SDPA kernels one call of fn ran, as torch's profiler saw their aten ops (to check
    chosen_kernel against what really ran: tests, benchmarks/sdpa_kernels.py)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return [OPS[e.name] for e in prof.events() if e.name in OPS]


class TorchSDPA(Backend):
    """F.scaled_dot_product_attention; `kernel` forces one SDPBackend, None lets torch pick."""

    framework = "torch"
    kernel: str | None = None

    def __init__(self, name: str, kernel: str | None, caps: Capabilities, note: str):
        self.name, self.kernel, self.capabilities = name, kernel, caps
        self.description = note

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel

        case = inputs.case
        kwargs = {"scale": inputs.scale, **sdpa_mask_args(inputs)}
        if case.heads_q != case.heads_kv:
            kwargs["enable_gqa"] = True
        q, k, v = inputs.q, inputs.k, inputs.v
        quantized = inputs.k_scale is not None  # kv_quant: dequantized in every call
        if quantized:
            k, v = inputs.dequantized_kv()  # here only to ask torch which kernel it takes
        sinks = inputs.sinks is not None
        if sinks:
            q, k, v, kwargs = with_sink_key(inputs, kwargs, k, v)
            inputs.report(sinks="one more key per query head (score σ_h, value 0)")
        inputs.empty_rows()  # built now, not in the first call
        forced = getattr(SDPBackend, self.kernel) if self.kernel else None
        with sdpa_kernel(forced) if forced is not None else nullcontext():
            kernel = chosen_kernel(q, k, v, kwargs)
        if kernel is not None:  # else torch refuses: the call says so (Unsupported)
            inputs.report(kernel=kernel)

        dv = inputs.v.shape[-1]

        if quantized:
            k = v = None  # the call dequantizes its own

        def call() -> Any:
            kk, vv = inputs.dequantized_kv() if quantized else (k, v)
            if quantized and sinks:
                kk, vv = sink_kv(inputs, kk, vv)
            # rows that see no key must be zeros; some kernels leave NaN there
            out = F.scaled_dot_product_attention(q, kk, vv, **kwargs)
            return inputs.zero_empty_rows(out if out.shape[-1] == dv else out[..., :dv])

        def run() -> Any:
            try:
                if forced is None:
                    return call()
                with sdpa_kernel(forced):
                    return call()
            except RuntimeError as exc:
                if refused(exc):
                    raise Unsupported(f"{self.name}: torch refused the case: {exc}") from exc
                raise

        return run


def sdpa_backends() -> list[Backend]:
    """The default dispatch plus one backend per SDPA kernel.

    The math kernel and the default dispatch take every attn_mask and a value head dim of its
    own (dv). The flash kernel takes attn_mask on the CPU but no dv; on CUDA it takes no
    attn_mask at all. The efficient kernel takes attn_mask and dv; cuDNN's attn_mask. Where
    torch still refuses a case at run time, the record is unsupported with torch's words.
    """
    mask_dv = (*MASK_VARIANTS, "dv", "sinks", *QUANT)
    no_dv = {**NOT_SDPA, "dv": "this kernel needs v's head dim equal to q's"}
    flash_why = {**no_dv, **{v: "the flash kernel takes no attn_mask on CUDA"
                             for v in (*MASK_VARIANTS, "sinks")}}

    def caps(devices: tuple[str, ...], dtypes: tuple[str, ...], variants: tuple[str, ...],
             why: dict[str, str], **extra: Any) -> Capabilities:
        return Capabilities(devices=devices, dtypes=dtypes, masks=MASKS, modes=MODES,
                            variants=variants, why_not=why, **extra)

    both = ("cpu", "cuda")
    return [
        TorchSDPA("torch-sdpa", None, caps(both, ALL_DTYPES, mask_dv, NOT_SDPA),
                  "F.scaled_dot_product_attention with PyTorch's own kernel choice"),
        TorchSDPA("torch-sdpa-math", "MATH", caps(both, ALL_DTYPES, mask_dv, NOT_SDPA),
                  "SDPA forced to the math kernel (the composite reference path)"),
        TorchSDPA("torch-sdpa-flash", "FLASH_ATTENTION",
                  caps(both, ALL_DTYPES, (*MASK_VARIANTS, "sinks", *QUANT), flash_why,
                       per_device={"cuda": {"dtypes": HALF, "variants": QUANT}}),
                  "SDPA forced to the FlashAttention kernel"),
        TorchSDPA("torch-sdpa-efficient", "EFFICIENT_ATTENTION",
                  caps(("cuda",), ("float32", *HALF), mask_dv, NOT_SDPA),
                  "SDPA forced to the memory-efficient (xformers-derived) kernel; CUDA only"),
        TorchSDPA("torch-sdpa-cudnn", "CUDNN_ATTENTION",
                  caps(("cuda",), HALF, (*MASK_VARIANTS, "sinks", *QUANT), no_dv),
                  "SDPA forced to the cuDNN fused kernel; CUDA only"),
    ]


@hookimpl
def attnbench_backends() -> list[Backend]:
    return sdpa_backends()
