"""Backward implementations for benchmarks/grad_study.py: correct ones, and planted bugs.

Each takes (case, arrays, dO, dtype) and returns dq, dk, dv as torch tensors in `dtype`, from
copies of the pristine float64 arrays. Correct ones differ only in rounding: plain autograd in
the dtype, float64 then cast, a backward that recomputes P from a stored log-sum-exp taken with an
exp accurate to 8 units in the last place of its accumulator (2⁻²⁰ in float32, as PyTorch's CPU
flash kernel's vectorised exp) and one that rounds P and dS to the dtype before the matmuls that
use them (as fused GPU kernels do in half precision). The bugs are the wrong backward passes a
kernel could ship; each also runs in float64, so the study can say whether its effect exceeds
the dtype's rounding at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from attnbench import variants
from attnbench.case import Case

Grads = dict[str, torch.Tensor]
Impl = Callable[[Case, dict[str, np.ndarray], np.ndarray, str], Grads]
ACC = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float32,
       "bfloat16": torch.float32}


def tensor(x: np.ndarray, dtype: str, grad: bool = False) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)).to(getattr(torch, dtype))
    return t.requires_grad_(grad)


def terms_of(case: Case, arrays: dict[str, np.ndarray], b: int, dtype: Any) -> Any:
    """ALiBi + bias of batch element b rounded to the dtype (as a backend is given them)."""
    t = variants.score_terms(case, b, np.arange(case.heads_q), np.arange(case.seq_q),
                             arrays.get("bias"))
    return None if t is None else torch.from_numpy(t).to(dtype)


def forward(case: Case, arrays: dict[str, np.ndarray], b: int, q: Any, k: Any, v: Any,
            vis: np.ndarray | None = None, straight_cap: bool = False) -> Any:
    """Plain attention of batch element b; q, k, v: (Hq, S, ·) with the kv heads expanded.
    vis: another visibility (a bug); straight_cap: the softcap's derivative taken as 1."""
    s = torch.matmul(q, k.transpose(-1, -2)) * case.softmax_scale
    if case.softcap is not None:
        capped = torch.tanh(s / case.softcap) * case.softcap
        s = s + (capped - s).detach() if straight_cap else capped
    t = terms_of(case, arrays, b, q.dtype)
    if t is not None:
        s = s + t
    seen = torch.from_numpy(variants.visibility(case, b) if vis is None else vis)
    return torch.softmax(s.masked_fill(~seen, float("-inf")), dim=-1).nan_to_num(0.0) @ v


def autograd(case: Case, arrays: dict[str, np.ndarray], d_out: np.ndarray, dtype: str,
             vis: Callable[[int], np.ndarray] | None = None, straight_cap: bool = False,
             per_head_k: bool = False) -> Grads:
    """Plain autograd in dtype. per_head_k: the leaves are k and v expanded to the query heads
    (their per-head gradients are returned, not yet summed over the group)."""
    g = case.heads_q // case.heads_kv
    q = tensor(arrays["q"], dtype, True)
    k0, v0 = tensor(arrays["k"], dtype), tensor(arrays["v"], dtype)
    if per_head_k:
        k = k0.repeat_interleave(g, 1).requires_grad_(True)
        v = v0.repeat_interleave(g, 1).requires_grad_(True)
    else:
        k, v = k0.requires_grad_(True), v0.requires_grad_(True)
    for b in range(case.batch):
        kb, vb = (k[b], v[b]) if per_head_k else (k[b].repeat_interleave(g, 0),
                                                   v[b].repeat_interleave(g, 0))
        out = forward(case, arrays, b, q[b], kb, vb, None if vis is None else vis(b),
                      straight_cap)
        out.backward(tensor(d_out[b], dtype))
    assert q.grad is not None and k.grad is not None and v.grad is not None
    return {"dq": q.grad, "dk": k.grad, "dv": v.grad}


def float64_cast(case: Case, arrays: dict[str, np.ndarray], d_out: np.ndarray,
                 dtype: str) -> Grads:
    return {n: x.to(getattr(torch, dtype))
            for n, x in autograd(case, arrays, d_out, "float64").items()}


def approx_exp(x: Any) -> Any:
    """exp with its 3 lowest mantissa bits cleared: off by up to 8 units in the last place
    (2⁻²⁰ relative in float32), always downwards (a biased error, the worst for sums)."""
    e = torch.exp(x)
    ints = {torch.float32: torch.int32, torch.float64: torch.int64}[e.dtype]
    return (e.view(ints) & ~7).view(e.dtype)


def manual(approx: bool, round_p: bool) -> Impl:
    """A fused-style backward: scores and sums in the accumulator's precision, P recomputed
    from the stored log-sum-exp, D = rowsum(dO ∘ O) from the output stored in the dtype;
    round_p: P and dS rounded to the dtype before the matmuls that use them."""
    def run(case: Case, arrays: dict[str, np.ndarray], d_out: np.ndarray, dtype: str) -> Grads:
        acc, low = ACC[dtype], getattr(torch, dtype)
        exp = approx_exp if approx else torch.exp
        g, scale = case.heads_q // case.heads_kv, case.softmax_scale
        grads = {n: torch.zeros(arrays[n[1]].shape, dtype=acc) for n in ("dq", "dk", "dv")}
        for b in range(case.batch):
            q, d_o = tensor(arrays["q"][b], dtype).to(acc), tensor(d_out[b], dtype).to(acc)
            k = tensor(arrays["k"][b], dtype).to(acc).repeat_interleave(g, 0)
            v = tensor(arrays["v"][b], dtype).to(acc).repeat_interleave(g, 0)
            s = torch.matmul(q, k.transpose(-1, -2)) * scale
            sig = None
            if case.softcap is not None:
                t = torch.tanh(s / case.softcap)
                s, sig = t * case.softcap, 1 - t * t
            terms = terms_of(case, arrays, b, low)
            if terms is not None:
                s = s + terms.to(acc)
            s = s.masked_fill(~torch.from_numpy(variants.visibility(case, b)), float("-inf"))
            m = s.amax(-1, keepdim=True).nan_to_num(0.0, neginf=0.0)
            lse = m + torch.log(exp(s - m).sum(-1, keepdim=True))
            p = exp(s - lse).nan_to_num(0.0)
            pr = p.to(low).to(acc) if round_p else p
            o = torch.matmul(pr, v).to(low).to(acc)  # the forward's stored output
            ds = p * (torch.matmul(d_o, v.transpose(-1, -2)) - (d_o * o).sum(-1, keepdim=True))
            ds = ds if sig is None else ds * sig
            ds = ds.to(low).to(acc) if round_p else ds
            grads["dq"][b] = scale * torch.matmul(ds, k)
            grads["dk"][b] = (scale * torch.matmul(ds.transpose(-1, -2), q)).unflatten(
                0, (case.heads_kv, g)).sum(1)
            grads["dv"][b] = torch.matmul(pr.transpose(-1, -2), d_o).unflatten(
                0, (case.heads_kv, g)).sum(1)
        return {n: x.to(low) for n, x in grads.items()}

    return run


CORRECT: dict[str, Impl] = {
    "autograd": autograd, "float64-cast": float64_cast,
    "lse-approx-exp": manual(approx=True, round_p=False),
    "fused-round-p": manual(approx=False, round_p=True),
}


# ---- planted bugs: (applies to the case?, gradients with the bug) ----

def _edit(fn: Callable[[Case, Grads], None]) -> Impl:
    def run(case: Case, arrays: dict[str, np.ndarray], d_out: np.ndarray, dtype: str) -> Grads:
        grads = {n: x.clone() for n, x in autograd(case, arrays, d_out, dtype).items()}
        fn(case, grads)
        return grads

    return run


def _halve_dq(case: Case, g: Grads) -> None:
    g["dq"] *= 0.5


def _dq_no_scale(case: Case, g: Grads) -> None:
    g["dq"] /= case.softmax_scale


def _zero_dk_head(case: Case, g: Grads) -> None:
    g["dk"][:, -1] = 0.0


def _drop_last_key_dv(case: Case, g: Grads) -> None:
    _, kv_lens = variants.lengths(case)
    for b, n in enumerate(kv_lens):
        if n > 0:
            g["dv"][b, :, int(n) - 1] = 0.0


def _no_softcap_derivative(case: Case, arrays: dict[str, np.ndarray], d_out: np.ndarray,
                           dtype: str) -> Grads:
    return autograd(case, arrays, d_out, dtype, straight_cap=True)


def _dk_not_summed(case: Case, arrays: dict[str, np.ndarray], d_out: np.ndarray,
                   dtype: str) -> Grads:
    g = case.heads_q // case.heads_kv
    grads = autograd(case, arrays, d_out, dtype, per_head_k=True)
    return {"dq": grads["dq"], "dk": grads["dk"][:, ::g],
            "dv": grads["dv"].unflatten(1, (case.heads_kv, g)).sum(2)}


def _causal_off_by_one(case: Case, arrays: dict[str, np.ndarray], d_out: np.ndarray,
                       dtype: str) -> Grads:
    """The backward's mask lets each row see one key past its last (the forward is right)."""
    def vis(b: int) -> np.ndarray:
        lo, hi = variants.key_ranges(case, b)
        hi = np.where(hi >= lo, np.minimum(hi + 1, case.seq_kv - 1), hi)
        j = np.arange(case.seq_kv)[None, :]
        return (j >= lo[:, None]) & (j <= hi[:, None])

    return autograd(case, arrays, d_out, dtype, vis=vis)


def _causal_applies(case: Case) -> bool:
    return case.mask == "causal" and case.seq_kv > 1


BUGS: dict[str, tuple[Callable[[Case], bool], Impl]] = {
    "dq halved": (lambda c: True, _edit(_halve_dq)),
    "dq without scale": (lambda c: c.softmax_scale != 1.0, _edit(_dq_no_scale)),
    "dk of one head zero": (lambda c: True, _edit(_zero_dk_head)),
    "dv of the last key dropped": (lambda c: True, _edit(_drop_last_key_dv)),
    "softcap derivative missing": (lambda c: c.softcap is not None, _no_softcap_derivative),
    "dk not summed over the group": (lambda c: c.heads_q > c.heads_kv, _dk_not_summed),
    "causal off by one in the backward": (_causal_applies, _causal_off_by_one),
}
