"""The same-dtype naive baseline: a plain implementation in the case's dtype.

For outputs it calibrates the rounding model live (its own verdict goes in every record); for
gradients its error sets the bound. It always runs on its own copy of the pristine inputs
(never on the tensors a backend was given, which the backend may have changed), block by block,
on the oracle's rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attnbench import variants
from attnbench.case import Case
from attnbench.verify import bound
from attnbench.verify.agreement import Rule, to_numpy64
from attnbench.verify.inputs import to_framework
from attnbench.verify.reference import attention_rows, blocks, row_visibility, scores
from attnbench.verify.rounding import Model

FRAMEWORKS = ("numpy", "torch")
HALF = ("float16", "bfloat16")


def torch_attention(q: Any, k: Any, v: Any, case: Case, rows: np.ndarray, b: int = 0,
                    heads: np.ndarray | None = None, bias: np.ndarray | None = None,
                    terms_dtype: Any = None, sinks: np.ndarray | None = None) -> Any:
    """Plain torch attention on the given query rows of batch element b (differentiable);
    rows that see no key are 0.

    q: (1, Hq', Sq, D), k and v: (1, Hkv', Skv, D | Dv) with Hq' a multiple of Hkv'; heads:
    the indices of q's heads (all by default); bias: the case's float64 bias array or None;
    terms_dtype: the dtype ALiBi and bias are added and the softmax computed in (q's dtype by
    default; float32, as fused kernels do, for the forward baseline), p rounded back to q's;
    sinks: the case's (heads_q,) sink logits or None (one more key of value 0, variants.py).
    """
    import torch

    s = torch_scores(q, k, case, rows, b, heads, bias, terms_dtype, sinks)
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    if sinks is not None:
        p = p[..., :-1]
    group = q.shape[1] // v.shape[1]
    return torch.matmul(p.to(q.dtype), v.repeat_interleave(group, dim=1))


def torch_scores(q: Any, k: Any, case: Case, rows: np.ndarray, b: int = 0,
                 heads: np.ndarray | None = None, bias: np.ndarray | None = None,
                 terms_dtype: Any = None, sinks: np.ndarray | None = None) -> Any:
    """The scores torch_attention takes the softmax of: −inf where masked, with sinks a last
    column of sink logits (see torch_attention for the arguments)."""
    import torch

    heads = np.arange(q.shape[1]) if heads is None else heads
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    if len(rows) != q.shape[2]:
        q = q[:, :, torch.from_numpy(rows).to(q.device), :]
    s = torch.matmul(q, k.transpose(-1, -2)) * case.softmax_scale
    if case.softcap is not None:
        s = torch.tanh(s / case.softcap) * case.softcap
    terms = variants.score_terms(case, b, heads, rows, bias)
    if terms is not None:
        s = s.to(terms_dtype or q.dtype)
        s = s + torch.from_numpy(terms).to(device=q.device, dtype=s.dtype)
    vis = torch.from_numpy(row_visibility(case, rows, b)).to(q.device)
    s = s.masked_fill(~vis, float("-inf"))
    if sinks is not None:
        sink = torch.from_numpy(sinks[heads]).to(device=q.device, dtype=s.dtype)
        s = torch.cat([s, sink[None, :, None, None].expand(*s.shape[:-1], 1)], dim=-1)
    return s


def _block_rows(arrays: dict[str, np.ndarray], case: Case, block: tuple[Any, ...],
                framework: str, lse: bool = False) -> Any:
    """The baseline's output (lse: its log-sum-exp, in float32 or float64) on one block, from
    fresh copies of the block's pristine inputs."""
    b, qs, ks, rows, _ = block
    conv = {n: to_framework(arrays[n][b:b + 1, s], framework, case.dtype, case.device)
            for n, s in (("q", qs), ("k", ks), ("v", ks))}
    heads, bias = np.arange(qs.start, qs.stop), arrays.get("bias")  # bias: already rounded
    sinks = arrays.get("sinks")  # rounded to the dtype too
    wide = "float64" if case.dtype == "float64" else "float32"  # an lse's own precision
    if framework == "numpy" and lse:
        s = scores(conv["q"], conv["k"], case, rows, b, heads, bias, None, sinks)
        return variants.log_sum_exp(s.astype(wide))
    if framework == "numpy":
        return attention_rows(conv["q"], conv["k"], conv["v"], case, rows, b, heads, bias,
                              sinks=sinks)
    import torch

    half = torch.float32 if case.dtype in HALF else None
    with torch.no_grad():  # the baseline needs no autograd graph
        if lse:
            s = torch_scores(conv["q"], conv["k"], case, rows, b, heads, bias, half, sinks)
            return torch.logsumexp(s.to(getattr(torch, wide)), dim=-1)
        return torch_attention(conv["q"], conv["k"], conv["v"], case, rows, b, heads, bias,
                               half, sinks)


def baseline_output(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray,
                    framework: str) -> np.ndarray:
    """Naive attention in case.dtype and framework on the given rows, (B, Hq, R, Dv) float64."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"no naive baseline for framework {framework!r}")
    out = np.empty((case.batch, case.heads_q, len(rows), case.dv))
    for block in blocks(case, rows):
        b, qs, _, _, at = block
        out[b:b + 1, qs, at] = to_numpy64(_block_rows(arrays, case, block, framework))
    return out


def baseline_lse(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray,
                 framework: str) -> np.ndarray:
    """The same-dtype baseline's log-sum-exp on the given rows, (B, Hq, R) float64: its scores
    in case.dtype, their lse in float32 (float64 for float64), as the naive backends do."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"no naive baseline for framework {framework!r}")
    out = np.empty((case.batch, case.heads_q, len(rows)))
    for block in blocks(case, rows):
        b, qs, _, _, at = block
        out[b:b + 1, qs, at] = to_numpy64(_block_rows(arrays, case, block, framework, True))
    return out


def baseline_error(
    arrays: dict[str, np.ndarray], case: Case, ref: np.ndarray, rows: np.ndarray, framework: str
) -> float:
    """Max abs error against the oracle ref of naive attention in case.dtype and framework
    (NaN when the baseline gives NaN or Inf)."""
    diff = np.abs(baseline_output(arrays, case, rows, framework) - ref)
    return float(diff.max(initial=0.0)) if np.isfinite(diff).all() else float("nan")


def output_rule(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray, model: Model,
                framework: str) -> Rule:
    """The output's pass rule in a framework: the rounding model, with the same-dtype baseline
    judged by it on the same rows as a live calibration (its ratio goes in every record). A
    baseline that exceeds the model adds k × its own per-row errors to the bounds, and the
    record says so; one that cannot be computed leaves the model alone, with the reason."""
    try:
        base = baseline_output(arrays, case, rows, framework)
    except Exception as exc:  # no calibration: the model still judges, the record says why
        why = f"baseline raised {exc!r}"[:300]
        return Rule(case.dtype, None, fallback_reason=why, model=model, rows=rows,
                    calibration={"baseline_missing": why})
    bad = int(np.size(base) - np.isfinite(base).sum())
    if bad:
        why = f"the same-dtype baseline gave {bad} NaN/Inf values"
        return Rule(case.dtype, None, fallback_reason=why, model=model, rows=rows,
                    calibration={"baseline_missing": why})
    err = float(np.abs(base - model.ref).max(initial=0.0))
    own = bound.judge(base, 0, model, rows=rows)
    calibration = {"baseline_over_bound": own["error_over_bound"]}
    allowance = None
    if not own["passed"]:
        ratio = own["error_over_bound"]
        reason = (f"the same-dtype baseline exceeds the rounding model ({ratio:.3g}x, "
                  f"{own['worst']}): {bound.K_BASELINE:g}x its own per-row errors are allowed")
        allowance = bound.allowance_from(base, model, reason)
    return Rule(case.dtype, err, model=model, allowance=allowance, calibration=calibration,
                rows=rows)
