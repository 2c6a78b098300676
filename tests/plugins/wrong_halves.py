"""Test backends for the half types: a fused kernel's rounding (float32 scores, weights rounded
to the dtype for p·v accumulated in float32, output rounded once), and that kernel with one
planted bug each (zeros, mean of v, output ×1.01, softmax scale ×1.01, 10 % noise, a key
dropped, rows from 512 on ignoring q·k, rows that see no key not zero).

Padded layout, masks and lengths only (no ALiBi, bias or softcap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from attnbench import Backend, Capabilities, Inputs, hookimpl

EMPTY_ROW_VALUE = {"float64": 1e-15, "float32": 1e-7, "float16": 4e-4, "bfloat16": 3e-3}


def fused(q: Any, k: Any, v: Any, inputs: Inputs, scale: float, visible: Any) -> Any:
    """softmax(q kᵀ·scale) v the way a fused kernel rounds it; rows that see no key give 0."""
    acc = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    s = (q.to(acc) @ k.to(acc).transpose(-1, -2)) * scale
    s = s.masked_fill(~visible, float("-inf"))
    m = s.amax(dim=-1, keepdim=True)
    p = torch.exp(s - torch.where(torch.isfinite(m), m, torch.zeros_like(m)))
    out = (p.to(q.dtype).to(acc) @ v.to(acc)) / p.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    return inputs.zero_empty_rows(out.to(q.dtype))


class Fused(Backend):
    name = "test-fused"
    framework = "torch"
    description = "test plugin: a correct fused kernel's rounding, in torch on the CPU"
    capabilities = Capabilities(devices=("cpu",), variants=("lengths",),
                                dtypes=("float32", "float16", "bfloat16", "float64"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        visible = inputs.visible()
        inputs.empty_rows()

        def run() -> Any:
            return self.finish(fused(inputs.q, inputs.k, inputs.v, inputs, self.scale(inputs),
                                     self.keys(inputs, visible)), inputs)

        return run

    def scale(self, inputs: Inputs) -> float:
        return inputs.scale

    def keys(self, inputs: Inputs, visible: Any) -> Any:
        return visible

    def finish(self, out: Any, inputs: Inputs) -> Any:
        return out


class Zeros(Fused):
    name = "test-zeros"

    def finish(self, out: Any, inputs: Inputs) -> Any:
        return torch.zeros_like(out)


class MeanOfV(Fused):
    name = "test-mean-of-v"

    def scale(self, inputs: Inputs) -> float:
        return 0.0  # every visible key weighs the same


class OutputScaled(Fused):
    name = "test-output-x1.01"

    def finish(self, out: Any, inputs: Inputs) -> Any:
        return (out.double() * 1.01).to(out.dtype)


class SoftmaxScaled(Fused):
    name = "test-softmax-scale-x1.01"

    def scale(self, inputs: Inputs) -> float:
        return inputs.scale * 1.01


class Noisy(Fused):
    name = "test-noise-10pct"

    def finish(self, out: Any, inputs: Inputs) -> Any:
        x = out.double()
        rms = x.pow(2).mean(dim=(-1, -2), keepdim=True).sqrt()
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)
        return (x + 0.1 * rms * noise).to(out.dtype)


class DropsKeyZero(Fused):
    name = "test-drops-key-0"

    def keys(self, inputs: Inputs, visible: Any) -> Any:
        visible = visible.clone()
        visible[..., 0] = False
        return visible


class LateRowsIgnoreQK(Fused):
    name = "test-rows-from-512-ignore-qk"

    def finish(self, out: Any, inputs: Inputs) -> Any:
        flat = MeanOfV().prepare(inputs)()
        late = torch.arange(out.shape[2]) >= 512
        return torch.where(late[:, None], flat, out)


class EmptyRowsNotZero(Fused):
    name = "test-empty-rows-not-zero"

    def finish(self, out: Any, inputs: Inputs) -> Any:
        empty = inputs.empty_rows()
        if empty is None:
            return out
        value = EMPTY_ROW_VALUE[str(out.dtype).removeprefix("torch.")]
        return torch.where(empty, torch.full_like(out, value), out)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Fused(), Zeros(), MeanOfV(), OutputScaled(), SoftmaxScaled(), Noisy(),
            DropsKeyZero(), LateRowsIgnoreQK(), EmptyRowsNotZero()]
