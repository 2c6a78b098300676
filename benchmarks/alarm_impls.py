"""Correct attention implementations and planted bugs for benchmarks/false_alarms.py.

Each works on sampled query rows of one batch element (attention rows are independent): q is
(1, Hq, R, D) in the case dtype, k and v (1, Hkv, L, D | Dv), and `Rows` carries which keys each
row sees and the ALiBi/bias terms of those rows. The correct ones round the same operations
the way real kernels do; the bugs are mistakes real kernels have shipped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from attnbench import variants
from attnbench.case import Case
from attnbench.verify.reference import row_visibility

HALF = (torch.float16, torch.bfloat16)


@dataclass
class Rows:
    """Sampled rows of batch element b: visibility (R, L) and terms (Hq|1, R, L) or None."""

    case: Case
    b: int
    rows: np.ndarray
    bias: np.ndarray | None = None

    @property
    def vis(self) -> torch.Tensor:
        return torch.from_numpy(row_visibility(self.case, self.rows, self.b))

    def terms(self) -> np.ndarray | None:
        heads = np.arange(self.case.heads_q)
        return variants.score_terms(self.case, self.b, heads, self.rows, self.bias)

    def mask(self, dtype: torch.dtype) -> torch.Tensor:
        """What attnbench's Inputs.additive_mask hands SDPA's attn_mask, on these rows: −inf
        where hidden, + ALiBi shifted so each row's largest visible term is 0, in a dtype,
        + the bias (exact in the dtype)."""
        case, vis = self.case, self.vis.numpy()
        heads = np.arange(case.heads_q)
        m = np.where(vis, 0.0, -np.inf)[None]
        if case.alibi:
            t = variants.score_terms(replace(case, bias="none"), self.b, heads, self.rows, None)
            top = np.where(vis, t, -np.inf).max(axis=-1, keepdims=True)
            m = m + t - np.where(np.isfinite(top), top, 0.0)
        out = torch.from_numpy(m)[None].to(dtype)
        if self.bias is not None:
            bias = variants.score_terms(replace(case, alibi=False), self.b, heads, self.rows,
                                        self.bias)
            out = out + torch.from_numpy(bias)[None].to(dtype)
        return out


Impl = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Rows], torch.Tensor]


def expand(x: torch.Tensor, heads_q: int) -> torch.Tensor:
    return x.repeat_interleave(heads_q // x.shape[1], dim=1)


def acc_dtype(dt: torch.dtype) -> torch.dtype:
    return torch.float32 if dt in HALF else dt


def finish(out: torch.Tensor, r: Rows) -> torch.Tensor:
    """Zeros on rows that see no key (as backends must), NaN removed there."""
    empty = ~r.vis.any(dim=-1)
    if bool(empty.any()):
        out = out.masked_fill(empty[:, None], 0.0)
    return out


def capped(s: torch.Tensor, case: Case) -> torch.Tensor:
    return s if case.softcap is None else torch.tanh(s / case.softcap) * case.softcap


def with_terms(s: torch.Tensor, r: Rows, dtype: torch.dtype | None = None) -> torch.Tensor:
    """s (upcast to dtype) plus the terms in that dtype, −inf where hidden."""
    s = s if dtype is None else s.to(dtype)
    t = r.terms()
    if t is not None:
        s = s + torch.from_numpy(t).to(s.dtype)
    return s.masked_fill(~r.vis, float("-inf"))


def naive(q, k, v, r):
    """Scores in the dtype, terms added in float32, softmax rounded to the dtype, p·v."""
    case = r.case
    s = capped((q @ expand(k, case.heads_q).transpose(-1, -2)) * case.softmax_scale, case)
    p = torch.softmax(with_terms(s, r, acc_dtype(q.dtype)), dim=-1).nan_to_num(0.0)
    return finish(p.to(q.dtype) @ expand(v, case.heads_q), r)


def naive_dtype_terms(q, k, v, r):
    """Everything in the dtype: the shifted terms rounded and added in the dtype."""
    case = r.case
    s = capped((q @ expand(k, case.heads_q).transpose(-1, -2)) * case.softmax_scale, case)
    s = s + r.mask(q.dtype)
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    return finish(p @ expand(v, case.heads_q), r)


def prescaled(q, k, v, r):
    """PyTorch's math SDPA on CUDA: q and k times sqrt(scale) in the dtype, then naive."""
    case = r.case
    root = math.sqrt(case.softmax_scale)
    s = capped((q * root) @ (expand(k, case.heads_q) * root).transpose(-1, -2), case)
    p = torch.softmax(with_terms(s, r, acc_dtype(q.dtype)), dim=-1).nan_to_num(0.0)
    return finish(p.to(q.dtype) @ expand(v, case.heads_q), r)


def fused(q, k, v, r):
    """A fused kernel: float32 scores and terms, p = exp(s − m) rounded to the dtype for the
    p·v product accumulated in float32, the sum of the unrounded p, the output rounded once."""
    case, acc = r.case, acc_dtype(q.dtype)
    s = capped((q.to(acc) @ expand(k, case.heads_q).to(acc).transpose(-1, -2))
               * case.softmax_scale, case)
    s = with_terms(s, r)
    m = s.amax(dim=-1, keepdim=True)
    pe = torch.exp(s - torch.where(torch.isfinite(m), m, torch.zeros_like(m)))
    den = pe.sum(dim=-1, keepdim=True)
    out = (pe.to(q.dtype).to(acc) @ expand(v, case.heads_q).to(acc)) / den.clamp_min(1e-300)
    return finish(out.to(q.dtype), r)


def online(block: int) -> Impl:
    """FlashAttention-2's loop: key blocks, running max and sum in float32, p rounded to the
    dtype per block, the accumulator rescaled in float32."""
    def run(q, k, v, r):
        case, acc_t = r.case, acc_dtype(q.dtype)
        kx, vx, vis = expand(k, case.heads_q), expand(v, case.heads_q), r.vis
        t = r.terms()
        m = torch.full(q.shape[:-1] + (1,), float("-inf"), dtype=acc_t)
        den = torch.zeros_like(m)
        acc = torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=acc_t)
        for j0 in range(0, kx.shape[2], block):
            js = slice(j0, j0 + block)
            s = capped((q.to(acc_t) @ kx[:, :, js].to(acc_t).transpose(-1, -2))
                       * case.softmax_scale, case)
            if t is not None:
                s = s + torch.from_numpy(t[..., js]).to(acc_t)
            s = s.masked_fill(~vis[:, js], float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
            alpha = torch.exp(m - safe)
            p = torch.exp(s - safe)
            den = den * alpha + p.sum(dim=-1, keepdim=True)
            acc = acc * alpha + p.to(q.dtype).to(acc_t) @ vx[:, :, js].to(acc_t)
            m = m_new
        out = acc / torch.where(den == 0, torch.ones_like(den), den)
        return finish(out.to(q.dtype), r)

    return run


def sdpa(kernel: str) -> Impl:
    """torch's SDPA kernel on the CPU with the mask attnbench's adapter passes."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def run(q, k, v, r):
        case = r.case
        if case.softcap is not None:
            return None  # SDPA cannot express a softcap
        mask = r.mask(q.dtype) if r.terms() is not None else r.vis
        try:
            with sdpa_kernel(getattr(SDPBackend, kernel)), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                out = torch.nn.functional.scaled_dot_product_attention(
                    q, expand(k, case.heads_q), expand(v, case.heads_q), attn_mask=mask,
                    scale=case.softmax_scale)
        except RuntimeError as exc:  # the kernel refuses the case (flash: dv != d)
            if "No available kernel" in str(exc):
                return None
            raise
        return finish(out.nan_to_num(0.0), r)

    return run


def float64_cast(q, k, v, r):
    return naive(q.double(), k.double(), v.double(), r).to(q.dtype)


CORRECT: dict[str, Impl] = {
    "naive": naive, "naive-dtype-terms": naive_dtype_terms, "prescaled": prescaled,
    "fused": fused, "online-b64": online(64), "online-b128": online(128),
    "sdpa-math": sdpa("MATH"), "sdpa-flash": sdpa("FLASH_ATTENTION"),
    "float64-cast": float64_cast,
}


def with_case(base: Impl, change: Callable[[Case], Case]) -> Impl:
    """base run as if the case were change(case): a wrong view of the problem."""
    return lambda q, k, v, r: base(q, k, v, replace(r, case=change(r.case)))


def scaled(base: Impl, factor: float) -> Impl:
    return lambda q, k, v, r: base(q, k, v, r) * factor
