"""The same-dtype naive baseline: a plain implementation whose error sets the pass bound.

It always runs on its own copy of the pristine inputs (never on the tensors a backend was
given, which the backend may have changed), block by block, on the oracle's rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attnbench import variants
from attnbench.case import Case
from attnbench.verify.agreement import to_numpy64
from attnbench.verify.inputs import to_framework
from attnbench.verify.reference import attention_rows, blocks, row_visibility

FRAMEWORKS = ("numpy", "torch")


def torch_attention(q: Any, k: Any, v: Any, case: Case, rows: np.ndarray, b: int = 0,
                    heads: np.ndarray | None = None, bias: np.ndarray | None = None) -> Any:
    """Plain torch attention on the given query rows of batch element b (differentiable);
    rows that see no key are 0.

    q: (1, Hq', Sq, D), k and v: (1, Hkv', Skv, D | Dv) with Hq' a multiple of Hkv'; heads:
    the indices of q's heads (all by default); bias: the case's float64 bias array or None.
    """
    import torch

    heads = np.arange(q.shape[1]) if heads is None else heads
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    if len(rows) != q.shape[2]:
        q = q[:, :, torch.from_numpy(rows).to(q.device), :]
    s = torch.matmul(q, k.transpose(-1, -2)) * case.softmax_scale
    if case.softcap is not None:
        s = torch.tanh(s / case.softcap) * case.softcap
    terms = variants.score_terms(case, b, heads, rows, bias)
    if terms is not None:  # rounded to the dtype, as a backend given them would have them
        s = s + torch.from_numpy(terms).to(device=q.device, dtype=q.dtype)
    vis = torch.from_numpy(row_visibility(case, rows, b)).to(q.device)
    p = torch.softmax(s.masked_fill(~vis, float("-inf")), dim=-1).nan_to_num(0.0)
    return torch.matmul(p, v)


def _block_rows(arrays: dict[str, np.ndarray], case: Case, block: tuple, framework: str) -> Any:
    """The baseline's output on one block, from fresh copies of the block's pristine inputs."""
    b, qs, ks, rows, _ = block
    conv = {n: to_framework(arrays[n][b:b + 1, s], framework, case.dtype, case.device)
            for n, s in (("q", qs), ("k", ks), ("v", ks))}
    heads, bias = np.arange(qs.start, qs.stop), arrays.get("bias")  # bias: already rounded
    if framework == "numpy":
        return attention_rows(conv["q"], conv["k"], conv["v"], case, rows, b, heads, bias)
    import torch

    with torch.no_grad():  # the baseline needs no autograd graph
        return torch_attention(conv["q"], conv["k"], conv["v"], case, rows, b, heads, bias)


def baseline_error(
    arrays: dict[str, np.ndarray], case: Case, ref: np.ndarray, rows: np.ndarray, framework: str
) -> float:
    """Max abs error against the oracle ref of naive attention in case.dtype and framework."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"no naive baseline for framework {framework!r}")
    worst = 0.0
    for block in blocks(case, rows):
        b, qs, _, _, at = block
        got = to_numpy64(_block_rows(arrays, case, block, framework))
        err = float(np.abs(got - ref[b:b + 1, qs, at]).max(initial=0.0))  # NaN stays NaN
        if not np.isfinite(err):
            return err
        worst = max(worst, err)
    return worst

