"""Test backends returning torch.Tensor subclasses that lie when read through torch functions.

test-lazy-tensor: its timed calls do no work and return zeros wrapped in a subclass whose
__torch_function__ computes the right output when `detach` is called (as a copy does), so the
output looks right only once the clock has stopped. test-dtype-tensor: computes in float64 and
returns a subclass whose __torch_function__ says float32 when its dtype is read.
test-mode-lazy: plain tensors of zeros, with a TorchFunctionMode left entered in its worker that
computes the right output when such a tensor's `detach` is called. test-dispatch-lazy: the same
with a TorchDispatchMode (aten.detach), its calls spinning 0.2 ms to stay under the roof.
"""

from __future__ import annotations

import time

import torch
from attnbench.backends.torch_naive import TorchNaive
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from attnbench import Backend, Capabilities, hookimpl


class Lazy(torch.Tensor):
    compute = None

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        this = args[0] if args else None
        if isinstance(this, Lazy) and getattr(func, "__name__", "") == "detach":
            return this.compute().detach()  # the work, done only when it is read
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


class SaysFloat32(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "__get__" and \
                getattr(getattr(func, "__self__", None), "__name__", "") == "dtype":
            return torch.float32
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


class LazyTensor(TorchNaive):
    name = "test-lazy-tensor"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32",))

    def prepare(self, inputs):
        run = super().prepare(inputs)
        blank = torch.zeros_like(run())

        def call():
            out = torch.Tensor._make_subclass(Lazy, blank)
            out.compute = run
            return out

        return call


class DtypeTensor(TorchNaive):
    name = "test-dtype-tensor"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32",))

    def prepare(self, inputs):
        q, k, v = (x.double() for x in (inputs.q, inputs.k, inputs.v))
        keep = torch.as_tensor(inputs.visible())

        def call():
            s = (q @ k.transpose(-1, -2) * inputs.scale).masked_fill(~keep, float("-inf"))
            group = q.shape[1] // v.shape[1]
            out = torch.softmax(s, -1) @ v.repeat_interleave(group, dim=1)
            return torch.Tensor._make_subclass(SaysFloat32, out)

        return call


class ComputesOnDetach(TorchFunctionMode):
    pending: dict[int, object] = {}  # id of a returned tensor -> what computes its values

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "detach" and args and id(args[0]) in self.pending:
            return self.pending[id(args[0])]().detach()
        return func(*args, **(kwargs or {}))


class ModeLazy(TorchNaive):
    name = "test-mode-lazy"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32",))

    def prepare(self, inputs):
        run = super().prepare(inputs)
        blank = torch.zeros_like(run())
        ComputesOnDetach().__enter__()  # left entered: every later torch call goes through it

        def call():
            out = blank.clone()
            ComputesOnDetach.pending[id(out)] = run
            return out

        return call


class DetachComputes(TorchDispatchMode):
    pending: dict[int, object] = {}  # data_ptr of a returned tensor -> what computes its values

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.detach.default and args and \
                args[0].data_ptr() in self.pending:
            with _disable_current_modes():
                return self.pending[args[0].data_ptr()]()
        return func(*args, **(kwargs or {}))


class DispatchLazy(TorchNaive):
    name = "test-dispatch-lazy"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32",))

    def prepare(self, inputs):
        run = super().prepare(inputs)
        blank = torch.zeros_like(run())
        DetachComputes().__enter__()  # left entered

        def call():
            end = time.perf_counter() + 2e-4
            while time.perf_counter() < end:
                pass
            DetachComputes.pending[blank.data_ptr()] = run
            return blank

        return call


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [LazyTensor(), DtypeTensor(), ModeLazy(), DispatchLazy()]
