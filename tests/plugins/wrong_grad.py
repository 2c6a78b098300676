"""Test plugin: a torch backend whose custom backward forgets the softmax scale (dq, dk wrong)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attnbench import Backend, Capabilities, Inputs, hookimpl


def _forward(q: Any, k: Any, v: Any, scale: float, hidden: Any) -> tuple[Any, Any]:
    import torch

    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if hidden is not None:
        s = s.masked_fill(hidden, float("-inf"))
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    return torch.matmul(p, v), p


def _function() -> Any:
    import torch

    class WrongScaleAttention(torch.autograd.Function):
        """Correct forward; backward omits `scale` in dS, so dq and dk are off by 1/scale."""

        @staticmethod
        def forward(ctx: Any, q: Any, k: Any, v: Any, scale: float, hidden: Any) -> Any:
            out, p = _forward(q, k, v, scale, hidden)
            ctx.save_for_backward(q, k, v, p, out)
            return out

        @staticmethod
        def backward(ctx: Any, d_out: Any) -> Any:
            q, k, v, p, out = ctx.saved_tensors
            dp = torch.matmul(d_out, v.transpose(-1, -2))
            ds = p * (dp - (d_out * out).sum(dim=-1, keepdim=True))  # the bug: no * scale
            return torch.matmul(ds, k), torch.matmul(ds.transpose(-1, -2), q), \
                torch.matmul(p.transpose(-1, -2), d_out), None, None

    return WrongScaleAttention


class WrongGrad(Backend):
    name = "wrong-grad"
    framework = "torch"
    description = "test plugin: backward without the softmax scale"
    capabilities = Capabilities(dtypes=("float32", "float64"), modes=("fwd", "bwd", "fwd_bwd"),
                                gqa=False)

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        fn = _function()
        hidden = None if inputs.mask == "none" else ~inputs.visible()
        return lambda: fn.apply(inputs.q, inputs.k, inputs.v, inputs.scale, hidden)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongGrad()]
