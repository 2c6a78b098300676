"""Backward pass: autograd runs of torch backends and the float64 oracle gradients.

What is timed. `fwd_bwd` times forward then `out.backward(dO)`. `bwd` runs the forward once
and then times `out.backward(dO, retain_graph=True)` alone: retain_graph keeps the saved
tensors, so every iteration replays exactly the backward kernels of a training step, without
the forward and without subtracting two noisy medians (fwd_bwd − fwd). Between iterations the
gradients are set to None (as `zero_grad(set_to_none=True)` does), so each backward allocates
and writes fresh gradients instead of accumulating. dO is a fixed, seeded standard normal in
the case's dtype.

What is checked. dq, dk and dv against the analytic float64 backward of softmax attention
(with the padded-layout variants: visibility, ALiBi, bias, softcap and dv), on
whole (batch, kv-head) groups: dk and dv need every query row of a group, so rows cannot be
sampled as for the output. Up to GRAD_ORACLE_LIMIT score entries every group is checked;
above it the first, the last and evenly spaced groups that fit the limit; a case whose single
group exceeds GRAD_SKIP_LIMIT is not gradient-checked, and the record says so. The bound of
each gradient is K_GRAD × the error of plain torch autograd in the case dtype on the same
groups, computed from fresh copies of the pristine inputs (baseline.baseline_grads).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnbench.case import Case
from attnbench.verify import agreement
from attnbench.verify.baseline import baseline_grads
from attnbench.verify.inputs import case_seed, quantize
from attnbench.verify.reference import expand_kv, group_slices, probabilities

GRAD_ORACLE_LIMIT = 2**22  # score entries of all checked groups together
GRAD_SKIP_LIMIT = 2**24  # one group larger than this: gradients are not checked
GRAD_NAMES = ("dq", "dk", "dv")


@dataclass
class GradRun:
    """A prepared autograd run: the callable to time and what its first call produced."""

    step: Callable[[], Any]
    out: Any
    grads: dict[str, Any]
    first_call_ms: float


def upstream_grad(case: Case, seed: int) -> np.ndarray:
    """The fixed upstream gradient dO: seeded standard normal, representable in case.dtype."""
    rng = np.random.default_rng(case_seed(case, seed) ^ zlib.crc32(b"dO"))
    shape = (case.batch, case.heads_q, case.seq_q, case.dv)
    return quantize(rng.standard_normal(shape), case.dtype)


def prepare_grad(
    fn_factory: Callable[[], Callable[[], Any]], inputs: Any, d_out: Any,
    mode: str, sync: Callable[[], None],
) -> GradRun:
    """Make q, k, v require grad, prepare the backend, run its first call in the given mode."""
    leaves = [inputs.q.requires_grad_(True), inputs.k.requires_grad_(True),
              inputs.v.requires_grad_(True)]
    fn = fn_factory()

    def reset() -> None:
        for t in leaves:
            t.grad = None

    if mode == "fwd_bwd":
        def step() -> Any:
            reset()
            out = fn()
            out.backward(d_out)
            return out
    elif mode == "bwd":
        held = fn()

        def step() -> Any:
            reset()
            held.backward(d_out, retain_graph=True)
            return held
    else:
        raise ValueError(f"no backward in mode {mode!r}")
    sync()
    t0 = time.perf_counter_ns()
    out = step()
    sync()
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    grads = {n: t.grad for n, t in zip(GRAD_NAMES, leaves, strict=True)}
    return GradRun(step, out, grads, first_ms)


def grad_groups(case: Case) -> list[tuple[int, int]] | None:
    """(batch, kv head) groups whose gradients are checked; None when even one is too large."""
    group = case.heads_q // case.heads_kv
    per = group * case.seq_q * case.seq_kv
    if per > GRAD_SKIP_LIMIT:
        return None
    every = [(b, h) for b in range(case.batch) for h in range(case.heads_kv)]
    fit = max(1, GRAD_ORACLE_LIMIT // per)
    if fit >= len(every):
        return every
    if fit == 1:
        return [every[0]]
    idx = np.unique(np.linspace(0, len(every) - 1, fit).round().astype(int))  # first and last
    return [every[i] for i in idx]


def attention_grads(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, d_out: np.ndarray, case: Case, b: int = 0,
    heads: np.ndarray | None = None, bias: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Analytic backward of softmax(cap(q kᵀ·scale) + ALiBi + bias + mask) v, in the arrays'
    dtype, for batch element b (heads: the indices of q's heads; bias: the case's array).

    dP = dO Vᵀ, dS = P ∘ (dP − rowsum(dO ∘ O)); with a softcap, dS ∘= 1 − tanh²(s / cap) on
    the uncapped scores s (ALiBi and bias are constants: they pass dS through). dQ = scale·dS K,
    dK = scale·dSᵀ Q (summed over the query heads of a group), dV = Pᵀ dO (summed likewise).
    q: (1, Hq', Sq, D).
    """
    hq, hkv = q.shape[1], k.shape[1]
    scale = case.softmax_scale
    kx, vx = expand_kv(k, hq), expand_kv(v, hq)
    p = probabilities(q, k, case, np.arange(case.seq_q), b, heads, bias)
    o = np.matmul(p, vx)
    dp = np.matmul(d_out, np.swapaxes(vx, -1, -2))
    ds = p * (dp - (d_out * o).sum(axis=-1, keepdims=True))
    if case.softcap is not None:
        t = np.tanh(np.matmul(q, np.swapaxes(kx, -1, -2)) * (scale / case.softcap))
        ds *= 1.0 - t * t
    dq = scale * np.matmul(ds, kx)
    dkx = scale * np.matmul(np.swapaxes(ds, -1, -2), q)
    dvx = np.matmul(np.swapaxes(p, -1, -2), d_out)

    def fold(x: np.ndarray) -> np.ndarray:
        return x.reshape(q.shape[0], hkv, hq // hkv, case.seq_kv, x.shape[-1]).sum(axis=2)

    return {"dq": dq, "dk": fold(dkx), "dv": fold(dvx)}


def pick(arr: Any, case: Case, groups: list[tuple[int, int]], name: str) -> np.ndarray:
    """Concatenate the checked groups of a gradient (query heads for dq, kv heads for dk/dv)."""
    parts = []
    for b, h in groups:
        b, qs, ks = group_slices(case, b, h)
        parts.append(agreement.to_numpy64(arr[b:b + 1, qs if name == "dq" else ks]))
    return np.concatenate(parts, axis=1)


def oracle_grads(
    arrays: dict[str, np.ndarray], d_out: np.ndarray, case: Case, groups: list[tuple[int, int]]
) -> dict[str, np.ndarray]:
    """float64 oracle gradients on the checked groups, concatenated along the head axis."""
    parts: dict[str, list[np.ndarray]] = {n: [] for n in GRAD_NAMES}
    for b, h in groups:
        b, qs, ks = group_slices(case, b, h)
        g = attention_grads(arrays["q"][b:b + 1, qs], arrays["k"][b:b + 1, ks],
                            arrays["v"][b:b + 1, ks], d_out[b:b + 1, qs], case, b,
                            np.arange(qs.start, qs.stop), arrays.get("bias"))
        for n in GRAD_NAMES:
            parts[n].append(g[n])
    return {n: np.concatenate(p, axis=1) for n, p in parts.items()}


@dataclass
class GradData:
    """What checking one case's gradients needs, built once per case: dO, groups, oracle."""

    d_out: np.ndarray  # float64, representable in case.dtype
    groups: list[tuple[int, int]] | None  # None: a single group is too large to check
    ref: dict[str, np.ndarray] | None = None  # oracle gradients on the groups
    rules: dict[str, agreement.Rule] | None = None  # per gradient, from the torch baseline


def grad_data(case: Case, arrays: dict[str, np.ndarray], seed: int) -> GradData:
    """dO, the checked groups and their float64 oracle gradients (from pristine arrays)."""
    data = GradData(upstream_grad(case, seed), grad_groups(case))
    if data.groups is not None:
        data.ref = oracle_grads(arrays, data.d_out, case, data.groups)
    return data


def grad_rules(case: Case, arrays: dict[str, np.ndarray], data: GradData
               ) -> dict[str, agreement.Rule]:
    """The pass rule of each gradient: k = K_GRAD × the torch baseline's error (or why none)."""
    assert data.groups is not None and data.ref is not None
    try:
        base = baseline_grads(arrays, data.d_out, case, data.groups)
        errs: dict[str, float | None] = {
            n: agreement.metrics(base[n], data.ref[n])["max_abs_err"] for n in GRAD_NAMES}
        why = None
    except Exception as exc:  # no baseline: fixed bounds, and the record says why
        errs, why = dict.fromkeys(GRAD_NAMES), f"gradient baseline raised {exc!r}"[:300]
    return {n: agreement.Rule(case.dtype, errs[n], agreement.K_GRAD, why) for n in GRAD_NAMES}


def check_grads(case: Case, arrays: dict[str, np.ndarray], data: GradData,
                grads: dict[str, Any], dtypes: dict[str, str] | None = None) -> dict[str, Any]:
    """Agreement entries for dq, dk, dv and a note on which groups were checked (dtypes: what
    the backend returned, when the arrays are host copies in another dtype)."""
    if data.groups is None or data.ref is None:
        return {"entries": [], "note": f"gradients not checked: one (batch, kv head) group "
                f"has more than {GRAD_SKIP_LIMIT} score entries"}
    if data.rules is None:
        data.rules = grad_rules(case, arrays, data)
    shapes = {"dq": (case.batch, case.heads_q, case.seq_q, case.head_dim),
              "dk": (case.batch, case.heads_kv, case.seq_kv, case.head_dim)}
    shapes["dv"] = (case.batch, case.heads_kv, case.seq_kv, case.dv)
    entries, groups = [], data.groups
    for n in GRAD_NAMES:
        g = grads.get(n)
        if g is None:
            entries.append({"name": n, "passed": False, "shape": [], "error": "no gradient"})
            continue
        entries.append(agreement.compare(n, g, shapes[n], lambda x, n=n: pick(x, case, groups, n),
                                         data.ref[n], data.rules[n], (dtypes or {}).get(n)))
    n_all = case.batch * case.heads_kv
    note = "all groups" if len(data.groups) == n_all else f"{len(data.groups)} of {n_all} groups"
    return {"entries": entries, "note": note}
