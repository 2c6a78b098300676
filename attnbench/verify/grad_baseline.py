"""The same-dtype gradient baseline: plain torch autograd on the compared rows, in blocks.

Always from fresh copies of the pristine inputs, on the case's device. dq on the plan's query
rows (dq_i depends on row i alone, so a block of rows is an exact sub-problem); dk and dv of the
plan's groups over every query row, in blocks of rows whose per-block gradients are summed in
float64 and rounded to the dtype once, as a kernel that accumulates in higher precision would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attnbench.case import Case
from attnbench.verify.agreement import to_numpy64
from attnbench.verify.baseline import torch_attention
from attnbench.verify.grad_plan import GradPlan
from attnbench.verify.inputs import quantize, to_framework
from attnbench.verify.reference import group_slices

BASELINE_BLOCK_ENTRIES = 2**22  # score entries of one autograd block


def baseline_grads(arrays: dict[str, np.ndarray], d_out: np.ndarray, case: Case,
                   plan: GradPlan) -> dict[str, np.ndarray]:
    """Plain torch autograd gradients in case.dtype on the plan's rows, as float64: dq
    (B, Hq, len(q_rows), D); dk, dv (len(groups), len(k_rows), D | Dv)."""
    g = case.heads_q // case.heads_kv
    dq = np.empty((case.batch, case.heads_q, len(plan.q_rows), case.head_dim))
    for b in range(case.batch):
        for h in range(case.heads_kv):
            if not plan.full:
                dq[b, h * g:(h + 1) * g] = _group(arrays, d_out, case, b, h, plan.q_rows,
                                                  False)["dq"]
    dk, dv = [], []
    for b, h in plan.groups:
        got = _group(arrays, d_out, case, b, h, np.arange(case.seq_q), True)
        if plan.full:
            dq[b, h * g:(h + 1) * g] = got["dq"]
        dk.append(got["dk"][plan.k_rows])
        dv.append(got["dv"][plan.k_rows])
    return {"dq": dq, "dk": np.stack(dk), "dv": np.stack(dv)}


def _group(arrays: dict[str, np.ndarray], d_out: np.ndarray, case: Case, b: int, h: int,
           rows: np.ndarray, with_kv: bool) -> dict[str, np.ndarray]:
    """dq (G, len(rows), D) of group (b, h) on the rows; dk, dv (Skv, ·) when with_kv."""
    _, qs, ks = group_slices(case, b, h)

    def conv(x: np.ndarray) -> Any:
        return to_framework(x, "torch", case.dtype, case.device)

    heads, bias = np.arange(qs.start, qs.stop), arrays.get("bias")
    q = conv(arrays["q"][b:b + 1, qs]).requires_grad_(True)
    grad_out = d_out[b:b + 1, qs]
    dk = np.zeros((case.seq_kv, case.head_dim))
    dv = np.zeros((case.seq_kv, case.dv))
    step = max(1, BASELINE_BLOCK_ENTRIES // ((qs.stop - qs.start) * case.seq_kv))
    for i in range(0, len(rows), step):
        r = rows[i:i + step]
        k = conv(arrays["k"][b:b + 1, ks]).requires_grad_(with_kv)
        v = conv(arrays["v"][b:b + 1, ks]).requires_grad_(with_kv)
        out = torch_attention(q, k, v, case, r, b, heads, bias)
        out.backward(conv(grad_out[:, :, r]))
        if with_kv:
            dk += to_numpy64(k.grad)[0, 0]
            dv += to_numpy64(v.grad)[0, 0]
    assert q.grad is not None
    got = {"dq": to_numpy64(q.grad)[0][:, rows]}
    if with_kv:
        got["dk"], got["dv"] = quantize(dk, case.dtype), quantize(dv, case.dtype)
    return got
