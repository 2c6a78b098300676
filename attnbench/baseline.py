"""The same-dtype naive baseline: a plain implementation whose error sets the pass bound."""

from __future__ import annotations

from typing import Any

import numpy as np

from attnbench.backend import Inputs
from attnbench.reference import attention_rows, row_visibility


def baseline_rows(inputs: Inputs, rows: np.ndarray, framework: str) -> Any:
    """Naive attention on the given rows, in the inputs' dtype, framework and device."""
    if framework == "numpy":
        return attention_rows(inputs.q, inputs.k, inputs.v, inputs.case, rows)
    if framework == "torch":
        return _torch_rows(inputs, rows)
    raise ValueError(f"no naive baseline for framework {framework!r}")


def _torch_rows(inputs: Inputs, rows: np.ndarray) -> Any:
    import torch

    case, q = inputs.case, inputs.q
    group = case.heads_q // case.heads_kv
    k = inputs.k.repeat_interleave(group, dim=1)
    v = inputs.v.repeat_interleave(group, dim=1)
    idx = torch.from_numpy(rows).to(q.device)
    s = torch.matmul(q[:, :, idx, :], k.transpose(-1, -2)) * inputs.scale
    vis = torch.from_numpy(row_visibility(case, rows)).to(q.device)
    s = s.masked_fill(~vis, float("-inf"))
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    return torch.matmul(p, v)
