"""torch-sdpa: F.scaled_dot_product_attention, default dispatch and each kernel forced."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from attnbench import Backend, Capabilities, Case, Inputs, Unsupported, hookimpl

ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")
MODES = ("fwd", "bwd", "fwd_bwd")


def sdpa_mask_args(inputs: Inputs) -> dict[str, Any]:
    """Mask arguments with bottom-right causal alignment (is_causal is top-left in PyTorch)."""
    case = inputs.case
    if case.mask == "none":
        return {}
    if case.seq_q == case.seq_kv:
        return {"is_causal": True}
    from torch.nn.attention.bias import causal_lower_right

    with warnings.catch_warnings():  # torch warns of NaN rows for Lq > Lk: prepare() zeroes them
        warnings.simplefilter("ignore", UserWarning)
        return {"attn_mask": causal_lower_right(case.seq_q, case.seq_kv)}


class TorchSDPA(Backend):
    """F.scaled_dot_product_attention; `kernel` forces one SDPBackend, None lets torch pick."""

    framework = "torch"
    kernel: str | None = None

    def __init__(
        self, name: str, kernel: str | None, caps: Capabilities, cuda_dtypes: tuple, note: str
    ):
        self.name, self.kernel, self.capabilities = name, kernel, caps
        self.cuda_dtypes = cuda_dtypes
        self.description = note

    def unsupported(self, case: Case) -> list[str]:
        reasons = super().unsupported(case)
        if not reasons and case.device == "cuda" and case.dtype not in self.cuda_dtypes:
            reasons.append(f"{self.name} on CUDA supports {', '.join(self.cuda_dtypes)} only")
        return reasons

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel

        case = inputs.case
        kwargs = {"scale": inputs.scale, **sdpa_mask_args(inputs)}
        if case.heads_q != case.heads_kv:
            kwargs["enable_gqa"] = True
        q, k, v = inputs.q, inputs.k, inputs.v
        empty = inputs.empty_rows()
        forced = getattr(SDPBackend, self.kernel) if self.kernel else None

        def call() -> Any:
            out = F.scaled_dot_product_attention(q, k, v, **kwargs)
            # rows that see no key must be zeros; some kernels leave NaN there
            return out if empty is None else out.masked_fill(empty, 0.0)

        def run() -> Any:
            try:
                if forced is None:
                    return call()
                with sdpa_kernel(forced):
                    return call()
            except RuntimeError as exc:
                if "No viable backend" in str(exc):
                    raise Unsupported(f"{self.name}: torch refused the case: {exc}") from exc
                raise

        return run


def sdpa_backends() -> list[Backend]:
    """The default dispatch plus one backend per SDPA kernel."""
    every = Capabilities(devices=("cpu", "cuda"), dtypes=ALL_DTYPES, modes=MODES)
    return [
        TorchSDPA("torch-sdpa", None, every, ALL_DTYPES,
                  "F.scaled_dot_product_attention with PyTorch's own kernel choice"),
        TorchSDPA("torch-sdpa-math", "MATH", every, ALL_DTYPES,
                  "SDPA forced to the math kernel (the composite reference path)"),
        TorchSDPA("torch-sdpa-flash", "FLASH_ATTENTION",
                  Capabilities(devices=("cpu", "cuda"), dtypes=ALL_DTYPES, modes=MODES),
                  ("float16", "bfloat16"), "SDPA forced to the FlashAttention kernel"),
        TorchSDPA("torch-sdpa-efficient", "EFFICIENT_ATTENTION",
                  Capabilities(devices=("cuda",), dtypes=("float32", "float16", "bfloat16"),
                               modes=MODES),
                  ("float32", "float16", "bfloat16"),
                  "SDPA forced to the memory-efficient (xformers-derived) kernel; CUDA only"),
        TorchSDPA("torch-sdpa-cudnn", "CUDNN_ATTENTION",
                  Capabilities(devices=("cuda",), dtypes=("float16", "bfloat16"), modes=MODES),
                  ("float16", "bfloat16"), "SDPA forced to the cuDNN fused kernel; CUDA only"),
    ]


@hookimpl
def attnbench_backends() -> list[Backend]:
    return sdpa_backends()
