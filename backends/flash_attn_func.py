"""flash-attn: flash_attn.flash_attn_func (FlashAttention-2, layout B, S, H, D), CUDA only.

Also flash-attn-4 (flash_attn.cute.flash_attn_func, the CuTe DSL kernels) the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from attnbench import Backend, Capabilities, Inputs, Unsupported, hookimpl

MIN_VERSIONS = {"flash_attn": "2.1"}  # causal became bottom-right aligned in flash-attn 2.1
HALF_DTYPES = ("float16", "bfloat16")
MODES = ("fwd", "bwd", "fwd_bwd")


class FlashAttnFunc(Backend):
    """flash_attn_func(q, k, v, softmax_scale=, causal=) from one module; GQA is native."""

    framework = "torch"

    def __init__(self, name: str, module: str, caps: Capabilities, note: str):
        self.name, self.module = name, module
        self.requires = (module,)
        self.capabilities = caps
        self.description = note

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        func = importlib.import_module(self.module).flash_attn_func
        q = inputs.q.transpose(1, 2).contiguous()  # (B, Sq, Hq, D)
        k = inputs.k.transpose(1, 2).contiguous()  # (B, Sk, Hkv, D): heads_q % heads_kv == 0
        v = inputs.v.transpose(1, 2).contiguous()
        kwargs = {"softmax_scale": inputs.scale, "causal": inputs.mask == "causal"}

        def run() -> Any:
            try:
                out = func(q, k, v, **kwargs)
            except RuntimeError as exc:  # e.g. "FlashAttention only supports Ampere GPUs or newer"
                if "only support" in str(exc):
                    raise Unsupported(f"{self.name}: {exc}") from exc
                raise
            if isinstance(out, tuple):  # some versions return (out, softmax_lse)
                out = out[0]
            return out.transpose(1, 2)  # (B, Hq, Sq, D), a view

        return run


def flash_backends() -> list[Backend]:
    """flash-attn (FlashAttention-2) and flash-attn-4 (CuTe DSL)."""
    caps = Capabilities(devices=("cuda",), dtypes=HALF_DTYPES, modes=MODES,
                        head_dim_min=8, head_dim_max=256, head_dim_multiple=8,
                        min_versions=MIN_VERSIONS)
    # FlashAttention-4 documents fewer head sizes (64, 96, 128); kept to what it states
    caps4 = Capabilities(devices=("cuda",), dtypes=HALF_DTYPES, modes=MODES,
                         head_dim_min=64, head_dim_max=128, head_dim_multiple=32)
    return [
        FlashAttnFunc("flash-attn", "flash_attn", caps,
                      "FlashAttention-2: flash_attn.flash_attn_func, bottom-right causal (>= 2.1)"),
        FlashAttnFunc("flash-attn-4", "flash_attn.cute", caps4,
                      "FlashAttention-4: flash_attn.cute.flash_attn_func (Hopper/Blackwell)"),
    ]


@hookimpl
def attnbench_backends() -> list[Backend]:
    return flash_backends()
