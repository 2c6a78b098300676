"""Test plugin: torch backends with a correct forward and one wrong gradient each.

`halves-dq`: dq is half what it should be (an identity on q whose backward halves it).
`drops-dv`: v is detached, so the backward leaves no gradient for v at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attnbench import Backend, Capabilities, Inputs, hookimpl


def _attention(q: Any, k: Any, v: Any, inputs: Inputs) -> Any:
    import torch

    group = inputs.case.heads_q // inputs.case.heads_kv
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    s = torch.matmul(q, k.transpose(-1, -2)) * inputs.scale
    s = s.masked_fill(~inputs.visible(), float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1).nan_to_num(0.0), v)


def _halver() -> Any:
    import torch

    class HalveGrad(torch.autograd.Function):
        """The identity forward; its backward halves the gradient."""

        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            return x.view_as(x)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return grad * 0.5

    return HalveGrad


class _Base(Backend):
    framework = "torch"
    capabilities = Capabilities(dtypes=("float32", "float64", "bfloat16"),
                                modes=("fwd", "bwd", "fwd_bwd"))


class HalvesDq(_Base):
    name = "halves-dq"
    description = "test plugin: dq halved in the backward"

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        halve = _halver()
        return lambda: _attention(halve.apply(inputs.q), inputs.k, inputs.v, inputs)


class DropsDv(_Base):
    name = "drops-dv"
    description = "test plugin: no gradient for v"

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        return lambda: _attention(inputs.q, inputs.k, inputs.v.detach(), inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [HalvesDq(), DropsDv()]
