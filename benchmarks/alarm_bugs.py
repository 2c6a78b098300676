"""Planted bugs for benchmarks/false_alarms.py: mistakes real attention kernels have shipped.

Each bug is the fused-kernel emulation of alarm_impls given a wrong view of the problem (a key
too many or too few, a wrong offset, a wrong scale) or a wrong output (zeros, mean of v, noise).
`applies(case, rows)` says where a bug changes anything; `BUG_INPUTS` rewrites the float64
inputs for bugs that read the wrong memory (packed offsets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from alarm_impls import Impl, Rows, expand, finish, fused, scaled, with_case

from attnbench import variants
from attnbench.case import Case
from attnbench.verify.reference import row_visibility

EMPTY_ROW_VALUE = {"float64": 1e-15, "float32": 1e-7, "float16": 4e-4, "bfloat16": 3e-3}


@dataclass
class Seen(Rows):
    """Rows whose visibility is changed by a function of (case, b, rows, vis)."""

    change: Callable[..., np.ndarray] | None = None

    @property
    def vis(self) -> torch.Tensor:
        vis = row_visibility(self.case, self.rows, self.b)
        return torch.from_numpy(self.change(self.case, self.b, self.rows, vis))


@dataclass
class NoOffset(Rows):
    """ALiBi distances |i − j| instead of |i + Lk − Lq − j| (the cross-attention offset lost)."""

    def terms(self) -> np.ndarray | None:
        case = self.case
        dist = np.abs(self.rows[:, None] - np.arange(case.seq_kv)[None, :]).astype(np.float64)
        t = -variants.alibi_slopes(case.heads_q)[:, None, None] * dist[None]
        if self.bias is not None:
            t = t + variants.score_terms(replace(case, alibi=False), self.b,
                                         np.arange(case.heads_q), self.rows, self.bias)
        return t


def seen(change: Callable[..., np.ndarray]) -> Impl:
    return lambda q, k, v, r: fused(q, k, v, Seen(r.case, r.b, r.rows, r.bias, change))


def drop_key(which: Callable[[Case], int]) -> Impl:
    def change(case, b, rows, vis):
        vis = vis.copy()
        vis[:, which(case)] = False
        return vis

    return seen(change)


def causal_plus_one(case, b, rows, vis):
    lo, hi = variants.key_ranges(case, b)
    j = np.arange(case.seq_kv)[None, :]
    widened = (j >= lo[rows, None]) & (j <= hi[rows, None] + 1)
    return np.where(lo[rows, None] <= hi[rows, None], widened, vis)


def uniform(q, k, v, r):
    """The mean of the visible values (q·k ignored)."""
    vis = r.vis.to(torch.float64)
    p = vis / vis.sum(dim=-1, keepdim=True).clamp_min(1)
    return finish((p.to(v.dtype) @ expand(v, r.case.heads_q)).to(q.dtype), r)


def zeros(q, k, v, r):
    return torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=q.dtype)


def noise(q, k, v, r):
    out = fused(q, k, v, r)
    rms = out.double().pow(2).mean(dim=(-1, -2), keepdim=True).sqrt()
    gen = torch.Generator().manual_seed(len(r.rows) * 7919 + r.b)
    n = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    return finish((out.double() + 0.1 * rms * n).to(q.dtype), r)


def rows_from(start: int) -> Impl:
    """Rows at or after `start` ignore q·k (the mean of their visible values)."""
    def run(q, k, v, r):
        out = fused(q, k, v, r).clone()
        late = torch.from_numpy(r.rows >= start)
        return torch.where(late[:, None], uniform(q, k, v, r), out)

    return run


def one_wrong_row(q, k, v, r):
    out = fused(q, k, v, r).clone()
    out[:, :, len(r.rows) // 2] = out[:, :, 0]
    return out


def one_wrong_head(q, k, v, r):
    out = fused(q, k, v, r).clone()
    out[:, -1] = out[:, 0]
    return out


def empty_not_zero(q, k, v, r):
    out = fused(q, k, v, r)
    empty = ~r.vis.any(dim=-1)
    return out + (empty[:, None] * EMPTY_ROW_VALUE[str(q.dtype).removeprefix("torch.")]).to(
        q.dtype)


def empty_mean(q, k, v, r):
    out = fused(q, k, v, r)
    empty = ~r.vis.any(dim=-1)
    every = expand(v, r.case.heads_q).double().mean(dim=2, keepdim=True).to(q.dtype)
    return torch.where(empty[:, None], every, out)


def dv_shifted(q, k, v, r):
    out = fused(q, k, v, r)
    return torch.cat([out[..., 1:], torch.zeros_like(out[..., :1])], dim=-1)


def softcap_after_terms(q, k, v, r):
    """cap(s + terms) instead of cap(s) + terms."""
    case = r.case
    s = (q.double() @ expand(k, case.heads_q).double().transpose(-1, -2)) * case.softmax_scale
    t = r.terms()
    s = s + torch.from_numpy(t) if t is not None else s
    s = torch.tanh(s / case.softcap) * case.softcap
    p = torch.softmax(s.masked_fill(~r.vis, float("-inf")), dim=-1).nan_to_num(0.0)
    return finish((p.to(q.dtype).float() @ expand(v, case.heads_q).float()).to(q.dtype), r)


def window_plus_one(case: Case) -> Case:
    if case.window_left is not None:
        return replace(case, window_left=case.window_left + 1)
    return replace(case, window_right=(case.window_right or 0) + 1)


def _has_empty(case: Case, rows: np.ndarray) -> bool:
    return any((~row_visibility(case, rows, b).any(axis=1)).any() for b in range(case.batch))


BUGS: dict[str, tuple[Impl, Callable[[Case, np.ndarray], bool]]] = {
    "zeros": (zeros, lambda c, r: True),
    "mean of v": (uniform, lambda c, r: True),
    "output x1.01": (scaled(fused, 1.01), lambda c, r: True),
    "softmax scale x1.01": (with_case(fused, lambda c: replace(c, scale=c.softmax_scale * 1.01)),
                            lambda c, r: True),
    "output x1.1": (scaled(fused, 1.1), lambda c, r: True),
    "output x1.3": (scaled(fused, 1.3), lambda c, r: True),
    "10% noise": (noise, lambda c, r: True),
    "one key dropped": (drop_key(lambda c: c.seq_kv // 2), lambda c, r: c.seq_kv > 1),
    "last key dropped": (drop_key(lambda c: c.seq_kv - 1), lambda c, r: c.seq_kv > 1),
    "causal off by one": (seen(causal_plus_one), lambda c, r: c.mask == "causal"),
    "rows >= 512 ignore q.k": (rows_from(512), lambda c, r: bool((r >= 512).any())),
    "one wrong row": (one_wrong_row, lambda c, r: len(r) > 1),
    "one head wrong": (one_wrong_head, lambda c, r: c.heads_q > 1),
    "empty row not zero": (empty_not_zero, _has_empty),
    "window off by one": (with_case(fused, window_plus_one),
                          lambda c, r: c.window_left is not None or c.window_right is not None),
    "alibi cross offset lost": (
        lambda q, k, v, r: fused(q, k, v, NoOffset(r.case, r.b, r.rows, r.bias)),
        lambda c, r: c.alibi and c.seq_q != c.seq_kv),
    "kv_lens ignored": (with_case(fused, lambda c: replace(c, kv_lens=None)),
                        lambda c, r: c.kv_lens is not None),
    "cu_seqlens off by one": (fused, lambda c, r: c.layout == "packed"),
    "dv sliced wrong": (dv_shifted, lambda c, r: c.head_dim_v is not None),
    "empty row = mean(v)": (empty_mean, _has_empty),
    "softcap after terms": (softcap_after_terms,
                            lambda c, r: c.softcap is not None and (c.alibi or c.bias != "none")),
}


def rolled_packed(arrays: dict[str, np.ndarray], case: Case) -> dict[str, np.ndarray]:
    """k and v as a kernel reading each packed sequence one key early would see them."""
    from attnbench.verify import layouts

    _, kv_lens = variants.lengths(case)
    out = dict(arrays)
    for n in ("k", "v"):
        packed = np.roll(layouts.pack(arrays[n], kv_lens), 1, axis=0)
        out[n] = layouts.unpack(packed, kv_lens, case.seq_kv)
    return out


BUG_INPUTS = {"cu_seqlens off by one": rolled_packed}
