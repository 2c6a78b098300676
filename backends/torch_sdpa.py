"""torch-sdpa: F.scaled_dot_product_attention, default dispatch and each kernel forced."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from attnbench import Backend, Capabilities, Inputs, Unsupported, hookimpl

ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")
HALF = ("float16", "bfloat16")
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
        inputs.empty_rows()  # built now, not in the first call
        forced = getattr(SDPBackend, self.kernel) if self.kernel else None

        def call() -> Any:
            # rows that see no key must be zeros; some kernels leave NaN there
            return inputs.zero_empty_rows(F.scaled_dot_product_attention(q, k, v, **kwargs))

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
    half_on_cuda = Capabilities(devices=("cpu", "cuda"), dtypes=ALL_DTYPES, modes=MODES,
                                per_device={"cuda": {"dtypes": HALF}})
    return [
        TorchSDPA("torch-sdpa", None, every,
                  "F.scaled_dot_product_attention with PyTorch's own kernel choice"),
        TorchSDPA("torch-sdpa-math", "MATH", every,
                  "SDPA forced to the math kernel (the composite reference path)"),
        TorchSDPA("torch-sdpa-flash", "FLASH_ATTENTION", half_on_cuda,
                  "SDPA forced to the FlashAttention kernel"),
        TorchSDPA("torch-sdpa-efficient", "EFFICIENT_ATTENTION",
                  Capabilities(devices=("cuda",), dtypes=("float32", *HALF), modes=MODES),
                  "SDPA forced to the memory-efficient (xformers-derived) kernel; CUDA only"),
        TorchSDPA("torch-sdpa-cudnn", "CUDNN_ATTENTION",
                  Capabilities(devices=("cuda",), dtypes=HALF, modes=MODES),
                  "SDPA forced to the cuDNN fused kernel; CUDA only"),
    ]


@hookimpl
def attnbench_backends() -> list[Backend]:
    return sdpa_backends()
