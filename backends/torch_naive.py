"""torch-naive: matmul, mask, softmax, matmul in PyTorch; any float dtype, CPU and CUDA."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attnbench import Backend, Capabilities, Inputs, hookimpl

FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")


class TorchNaive(Backend):
    name = "torch-naive"
    framework = "torch"
    description = "PyTorch eager: q kᵀ, masked_fill, softmax and p v, score matrix in memory"
    capabilities = Capabilities(
        devices=("cpu", "cuda"), dtypes=FLOAT_DTYPES, modes=("fwd", "bwd", "fwd_bwd")
    )

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        import torch

        case = inputs.case
        group = case.heads_q // case.heads_kv
        q, k, v = inputs.q, inputs.k, inputs.v
        hidden = None if case.mask == "none" else ~inputs.visible()
        inputs.empty_rows()  # built now, not in the first call
        # expand kv heads once here, as numpy-naive does; with autograd the expansion must be
        # part of every call (a graph built in prepare() is freed by the first backward)
        expand_per_call = group > 1 and k.requires_grad
        if group > 1 and not expand_per_call:
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)

        def run() -> Any:
            kk = k.repeat_interleave(group, dim=1) if expand_per_call else k
            vv = v.repeat_interleave(group, dim=1) if expand_per_call else v
            s = torch.matmul(q, kk.transpose(-1, -2)) * inputs.scale
            if hidden is not None:
                s = s.masked_fill(hidden, float("-inf"))
            p = inputs.zero_empty_rows(torch.softmax(s, dim=-1))  # rows that see no key: 0
            return torch.matmul(p, vv)

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [TorchNaive()]
