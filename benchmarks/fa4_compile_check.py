"""flash-attn-4's SM90 kernels compiled without a GPU: the adapter's calls under fake tensors.

Usage: python benchmarks/fa4_compile_check.py [--arch sm_90] [--site DIR] [--cases NAMES]

Each case goes through the real adapter (backends/flash_attn_cute.py: prepare, then its call)
with q/k/v as fake CUDA tensors (torch's FakeTensorMode): flash-attn-4 runs every check of its
interface and CuTe DSL compiles the kernel for the arch (FLASH_ATTENTION_ARCH, CUTE_DSL_ARCH,
FLASH_ATTENTION_NUM_SMS, as its interface.py documents for CPU-only compilation); nothing is
launched, so the outputs are not checked here (the GPU session does that). A case passes when
the kernel compiled and the output has the case's shape; one the library refuses says why.
--site adds a folder of wheels installed with `pip --target` (site.addsitedir: its .pth run).
"""

from __future__ import annotations

import argparse
import os
import site
import sys
import time
from dataclasses import replace
from typing import Any

from attnbench.case import Case

G = {"batch": 2, "heads_q": 8, "heads_kv": 2, "seq_q": 128, "seq_kv": 256, "dtype": "bfloat16",
     "device": "cuda"}
CASES = {
    "causal-d64": Case(**G, head_dim=64, mask="causal"),
    "none-d128-fp16": Case(**{**G, "dtype": "float16"}, head_dim=128),
    "causal-d16-smoke": Case(2, 8, 2, 24, 24, 16, dtype="bfloat16", device="cuda",
                             mask="causal"),
    "causal-d256": Case(**G, head_dim=256, mask="causal"),
    "window-softcap-d64": Case(**G, head_dim=64, mask="causal", window_left=32, softcap=5.0),
    "dv-d64-v128": Case(**G, head_dim=64, head_dim_v=128),
    "kv-lens-d64": Case(**G, head_dim=64, mask="causal", kv_lens=(256, 100)),
    "packed-d64": Case(**G, head_dim=64, mask="causal", layout="packed", q_lens=(128, 40),
                       kv_lens=(256, 90)),
    "paged-d64": Case(**{**G, "seq_q": 1}, head_dim=64, mask="causal", layout="paged",
                      page_size=64, kv_lens=(256, 100)),
    "causal-d64-fwd-bwd": Case(**G, head_dim=64, mask="causal", mode="fwd_bwd"),
    "dv512-refused": Case(**G, head_dim=64, head_dim_v=512),  # SM90: head_dim_v <= 256
}


def fake_inputs(case: Case, mode: Any) -> Any:
    """The case's Inputs with q, k, v (and the empty-row mask) as fake CUDA tensors shaped as
    attnbench hands them (made in the fake mode); the index arrays (NumPy) as they are."""

    from attnbench.verify.inputs import make_inputs, reference_arrays

    cpu = make_inputs(replace(case, device="cpu", dtype="float32"),
                      reference_arrays(replace(case, device="cpu"), 0), "torch")
    real = cpu.empty_rows()
    with mode:
        return faked(cpu, case, real)


def faked(cpu: Any, case: Case, real: Any) -> Any:
    import torch
    dtype = getattr(torch, case.dtype)

    def fake(x: Any, kind: Any = None) -> Any:
        return torch.empty(tuple(x.shape), dtype=kind or dtype, device="cuda")

    inputs = replace(cpu, case=case, q=fake(cpu.q), k=fake(cpu.k), v=fake(cpu.v))
    if real is not None:
        inputs._empty = fake(real, torch.bool)
    return inputs


def compile_backward(inputs: Any) -> None:
    """The backward kernel FlashAttnFunc.backward calls, compiled through flash-attn-4's own
    _flash_attn_bwd with the adapter's keywords (autograd itself cannot run on fake CUDA
    tensors in a CPU-only torch: it aborts the process), padded cases only."""
    import torch
    from attnbench.backends.flash_attn_cute import variant_kwargs
    from flash_attn.cute.interface import _flash_attn_bwd

    c = inputs.case
    kw = variant_kwargs(inputs)
    left, right = kw.pop("window_size", (None, None))
    dt = getattr(torch, c.dtype)
    q, dout = (torch.empty(c.batch, c.seq_q, c.heads_q, d, dtype=dt, device="cuda")
               for d in (c.head_dim, c.dv))
    k, v = (torch.empty(c.batch, c.seq_kv, c.heads_kv, d, dtype=dt, device="cuda")
            for d in (c.head_dim, c.dv))
    lse = torch.empty(c.batch, c.heads_q, c.seq_q, dtype=torch.float32, device="cuda")
    _flash_attn_bwd(q, k, v, torch.empty_like(dout), dout, lse, kw["softmax_scale"],
                    kw["causal"], kw.get("softcap", 0.0), window_size_left=left,
                    window_size_right=right)


def compile_case(case: Case) -> str:
    """'ok' with the compile time, or the library's refusal."""
    from attnbench.backends.flash_attn_cute import FlashAttn4
    from torch._subclasses.fake_tensor import FakeTensorMode

    from attnbench import Unsupported
    from attnbench.run.execute import expected_shape

    t0 = time.perf_counter()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    try:
        inputs = fake_inputs(case, mode)
        with mode:
            out = FlashAttn4().prepare(inputs)()
            if case.mode != "fwd":
                compile_backward(inputs)
    except (Unsupported, AssertionError, NotImplementedError) as exc:
        return f"refused: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    if tuple(out.shape) != expected_shape(case):
        return f"WRONG SHAPE {tuple(out.shape)} != {expected_shape(case)}"
    return f"ok, compiled in {time.perf_counter() - t0:.1f} s ({inputs.reported['entry']})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--site", help="a folder of wheels installed with pip --target")
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    if args.site:
        site.addsitedir(args.site)
    os.environ.setdefault("FLASH_ATTENTION_ARCH", args.arch)
    os.environ.setdefault("CUTE_DSL_ARCH", args.arch + ("a" if args.arch == "sm_90" else ""))
    os.environ.setdefault("FLASH_ATTENTION_NUM_SMS", "132")  # H100/H200 SXM
    bad = 0
    for name in args.cases.split(","):
        result = compile_case(CASES[name])
        bad += not result.startswith(("ok", "refused"))
        print(f"| {name} | {CASES[name].id} | {result} |", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
