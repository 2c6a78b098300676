"""A backend with the other causal convention: PyTorch's top-left is_causal=True for either
causal mask. Wrong for the bottom-right "causal" when Lq != Lk; right, on its own terms, for
"causal_top_left", which it declares too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attnbench import Backend, Capabilities, Inputs, hookimpl


class TopLeftCausal(Backend):
    name = "top-left-causal"
    framework = "torch"
    description = "test plugin: SDPA with is_causal=True whatever the lengths (top-left aligned)"
    capabilities = Capabilities(devices=("cpu", "cuda"), dtypes=("float32", "bfloat16"),
                                masks=("none", "causal", "causal_top_left"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        import torch.nn.functional as F

        case = inputs.case
        kwargs = {"scale": inputs.scale, "is_causal": case.mask != "none",
                  "enable_gqa": case.heads_q != case.heads_kv}

        def run() -> Any:
            return F.scaled_dot_product_attention(inputs.q, inputs.k, inputs.v, **kwargs)

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [TopLeftCausal()]
