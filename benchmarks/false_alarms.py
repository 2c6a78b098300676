"""False-alarm study of the pass rule: correct, differently rounded implementations must all pass,
planted bugs must still be caught.

    .venv/bin/python benchmarks/false_alarms.py [--quick] [--out FILE.json]

Every implementation below is a correct attention in the case's dtype; each orders or rounds the
same operations differently (float64 then cast, online softmax in blocks of 1, 7 and 64 keys,
scale on q before the matmul, keys in reverse order, torch SDPA's math and flash kernels). Each
is checked exactly as `attnbench check` checks a backend: the max error over the output against
the float64 oracle, against the bound `k × (error of the same-dtype naive baseline) + floor`.
A correct implementation that fails is a false alarm. The planted bugs are the wrong versions of
the same computation that a real backend could ship; their detection rate is reported per dtype,
and a bug whose effect is below the dtype's rounding is named as such.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnbench.case import Case
from attnbench.verify import agreement
from attnbench.verify.floor import row_floor, row_magnitudes
from attnbench.verify.inputs import reference_arrays
from attnbench.verify.reference import attention_rows, row_visibility

Impl = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Case], torch.Tensor]


def visible(case: Case) -> torch.Tensor:
    return torch.from_numpy(row_visibility(case, np.arange(case.seq_q)))


def expand(x: torch.Tensor, heads_q: int) -> torch.Tensor:
    return x.repeat_interleave(heads_q // x.shape[1], dim=1)


def finish(out: torch.Tensor, case: Case) -> torch.Tensor:
    """Zeros for rows that see no key, as the semantics ask."""
    empty = ~visible(case).any(dim=-1)
    return out.masked_fill(empty[:, None], 0.0) if bool(empty.any()) else out


def softmax_pv(s: torch.Tensor, v: torch.Tensor, case: Case) -> torch.Tensor:
    s = s.masked_fill(~visible(case), float("-inf"))
    return finish(torch.softmax(s, dim=-1).nan_to_num(0.0) @ v, case)


def naive(q, k, v, case):
    return softmax_pv((q @ expand(k, case.heads_q).transpose(-1, -2)) * case.softmax_scale,
                      expand(v, case.heads_q), case)


def scale_q_first(q, k, v, case):
    return softmax_pv((q * case.softmax_scale) @ expand(k, case.heads_q).transpose(-1, -2),
                      expand(v, case.heads_q), case)


def reversed_keys(q, k, v, case):
    kx, vx = expand(k, case.heads_q).flip(2), expand(v, case.heads_q).flip(2)
    s = (q @ kx.transpose(-1, -2)) * case.softmax_scale
    s = s.masked_fill(~visible(case).flip(1), float("-inf"))
    return finish(torch.softmax(s, dim=-1).nan_to_num(0.0) @ vx, case)


def float64_cast(q, k, v, case):
    return naive(q.double(), k.double(), v.double(), case).to(q.dtype)


def online(block: int) -> Impl:
    """Online softmax over key blocks; accumulators in float32 for half types (as kernels do)."""
    def run(q, k, v, case):
        acc_t = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        kx, vx = expand(k, case.heads_q), expand(v, case.heads_q)
        vis = visible(case)
        m = torch.full(q.shape[:-1] + (1,), float("-inf"), dtype=acc_t)
        den = torch.zeros_like(m)
        acc = torch.zeros(q.shape, dtype=acc_t)
        for j0 in range(0, case.seq_kv, block):
            s = (q @ kx[:, :, j0:j0 + block].transpose(-1, -2)).to(acc_t) * case.softmax_scale
            s = s.masked_fill(~vis[:, j0:j0 + block], float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
            alpha = torch.exp(m - safe)
            p = torch.exp(s - safe)
            den = den * alpha + p.sum(dim=-1, keepdim=True)
            acc = acc * alpha + (p.to(q.dtype) @ vx[:, :, j0:j0 + block]).to(acc_t)
            m = m_new
        out = acc / torch.where(den == 0, torch.ones_like(den), den)
        return finish(out.to(q.dtype), case)

    return run


def sdpa(kernel: str) -> Impl:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def run(q, k, v, case):
        mask = visible(case) if case.mask == "causal" else None
        with sdpa_kernel(getattr(SDPBackend, kernel)):
            out = torch.nn.functional.scaled_dot_product_attention(
                q, expand(k, case.heads_q), expand(v, case.heads_q), attn_mask=mask,
                scale=case.softmax_scale)
        return finish(out.nan_to_num(0.0), case)

    return run


CORRECT: dict[str, Impl] = {
    "float64-cast": float64_cast, "online-b1": online(1), "online-b7": online(7),
    "online-b64": online(64), "scale-q-first": scale_q_first, "reversed-keys": reversed_keys,
    "sdpa-math": sdpa("MATH"), "sdpa-flash": sdpa("FLASH_ATTENTION"),
}


def _with_case(fn: Callable[[Case], Case]) -> Callable[[Impl], Impl]:
    return lambda impl: lambda q, k, v, case: impl(q, k, v, fn(case))


def off_by_one(q, k, v, case):
    kx, vx = expand(k, case.heads_q), expand(v, case.heads_q)
    s = (q @ kx.transpose(-1, -2)) * case.softmax_scale
    vis = visible(case)
    if case.mask == "causal":  # one key too many per row
        vis = torch.from_numpy(np.arange(case.seq_kv)[None, :] <= (
            np.arange(case.seq_q)[:, None] + case.seq_kv - case.seq_q + 1))
    s = s.masked_fill(~vis, float("-inf"))
    return finish(torch.softmax(s, dim=-1).nan_to_num(0.0) @ vx, case)


def last_key_dropped(q, k, v, case):
    if case.seq_kv < 2:
        return naive(q, k, v, case)
    kx, vx = expand(k, case.heads_q)[:, :, :-1], expand(v, case.heads_q)[:, :, :-1]
    s = (q @ kx.transpose(-1, -2)) * case.softmax_scale
    s = s.masked_fill(~visible(case)[:, :-1], float("-inf"))
    return finish(torch.softmax(s, dim=-1).nan_to_num(0.0) @ vx, case)


def gqa_modulo(q, k, v, case):
    idx = torch.arange(case.heads_q) % case.heads_kv  # h % kv instead of h // group
    return softmax_pv((q @ k[:, idx].transpose(-1, -2)) * case.softmax_scale, v[:, idx], case)


def softmax_bf16(q, k, v, case):
    s = ((q @ expand(k, case.heads_q).transpose(-1, -2)) * case.softmax_scale)
    s = s.masked_fill(~visible(case), float("-inf")).to(torch.bfloat16)
    p = torch.softmax(s, dim=-1).nan_to_num(0.0).to(q.dtype)
    return finish(p @ expand(v, case.heads_q), case)


def one_wrong_row(q, k, v, case):
    out = naive(q, k, v, case).clone()
    if case.seq_q > 1:
        out[:, :, case.seq_q // 2] = out[:, :, case.seq_q // 2 - 1]
    else:
        out[:, :, 0] *= 1.01
    return out


BUGS: dict[str, Impl] = {
    "output x (1+1e-3)": lambda q, k, v, case: naive(q, k, v, case) * (1 + 1e-3),
    "scale 1/sqrt(d+1)": lambda q, k, v, case: softmax_pv(
        (q @ expand(k, case.heads_q).transpose(-1, -2)) / math.sqrt(case.head_dim + 1),
        expand(v, case.heads_q), case),
    "causal off by one": off_by_one,
    "last key dropped": last_key_dropped,
    "gqa h % kv": gqa_modulo,
    "softmax in bfloat16": softmax_bf16,
    "one wrong row": one_wrong_row,
}
BUG_APPLIES = {"causal off by one": lambda c: c.mask == "causal",
               "gqa h % kv": lambda c: c.heads_q != c.heads_kv,
               "softmax in bfloat16": lambda c: c.dtype == "float32",
               "last key dropped": lambda c: c.seq_kv > 1,
               "one wrong row": lambda c: c.seq_q > 1}

SHAPES = [(1, 1), (1, 4096), (13, 16), (16, 13), (64, 64), (257, 257), (7, 1000), (1024, 1024)]
HEAD_DIMS = [16, 32, 64, 128, 256]
SCALE_FACTORS = [0.05, 0.1, 0.5, 1.0, 2.0, 9.0]  # 9: a peer suite's scale of 9/sqrt(d)
DTYPES = ["float32", "float16", "bfloat16", "float64"]
MASKS = ["none", "causal"]


def cases(quick: bool) -> list[Case]:
    out = []
    dims = [16, 128] if quick else HEAD_DIMS
    shapes = SHAPES[:6] if quick else SHAPES
    for (sq, sk), d, f, dt, mask in itertools.product(shapes, dims, SCALE_FACTORS, DTYPES, MASKS):
        heads = (4, 2) if (sq + d) % 3 == 0 else (2, 2)  # a third of the cases grouped
        out.append(Case(1, heads[0], heads[1], sq, sk, d, dtype=dt, mask=mask,
                        scale=f / math.sqrt(d)))
    return out


def to_torch(a: np.ndarray, dtype: str) -> torch.Tensor:
    return torch.from_numpy(a).to(getattr(torch, dtype))


def shipped(name: str) -> Impl | None:
    """A built-in backend as an implementation (None when it cannot run here)."""
    from attnbench.backends import numba_cpu, numpy_naive, torch_naive, torch_sdpa

    from attnbench.verify.inputs import make_inputs

    backends = {b.name: b for b in [numpy_naive.NumpyNaive(), numba_cpu.NumbaCPU(),
                                    torch_naive.TorchNaive(), *torch_sdpa.sdpa_backends()]}
    backend = backends[name]

    def run(arrays, case):
        if backend.unsupported(case):
            return None
        return backend.prepare(make_inputs(case, arrays, backend.framework))()

    return run


SHIPPED = ["numpy-naive", "numba-cpu", "torch-naive", "torch-sdpa", "torch-sdpa-math",
           "torch-sdpa-flash"]
OLD_FLOOR = {"float64": 1e-12, "float32": 2e-6, "float16": 2e-3, "bfloat16": 1.6e-2}


def baselines(arrays: dict[str, np.ndarray], case: Case, ref: np.ndarray) -> dict[str, float]:
    """Max error of attnbench's same-dtype baseline, per framework (as `check` computes it)."""
    from attnbench.verify.baseline import baseline_error

    rows = np.arange(case.seq_q)
    return {fw: baseline_error(arrays, case, ref, rows, fw) for fw in ("numpy", "torch")
            if not (fw == "numpy" and case.dtype == "bfloat16")}


def evaluate(case: Case, seed: int, impls: dict[str, Impl], applies: dict,
             with_shipped: bool = False) -> list[dict]:
    """Errors of every implementation against the oracle, with the old and the new bound."""
    arrays = reference_arrays(case, seed)
    rows = np.arange(case.seq_q)
    ref = attention_rows(arrays["q"], arrays["k"], arrays["v"], case, rows)
    base = baselines(arrays, case, ref)
    mags = row_magnitudes(arrays, case, rows)
    floor = row_floor(mags, case.dtype)
    q, k, v = (to_torch(arrays[n], case.dtype) for n in "qkv")
    effect = bug_effects(impls, applies, arrays, case, ref, row_floor(mags, case.dtype, 1.0))
    outputs = {}
    for name, impl in impls.items():
        if name not in applies or applies[name](case):
            outputs[name] = ("torch", impl(q, k, v, case))
    for name in SHIPPED if with_shipped else []:
        got = shipped(name)(arrays, case)
        fw = "numpy" if name in ("numpy-naive", "numba-cpu") else "torch"
        if got is not None:
            outputs[name] = (fw, got)
    out = []
    for name, (fw, got) in outputs.items():
        got64 = agreement.to_numpy64(got)
        m = agreement.metrics(got64, ref)
        m["nonfinite"] = agreement.nonfinite_count(got)
        rule = agreement.Rule(case.dtype, base[fw], floor=floor)
        new = agreement.verdict(m, rule, agreement.row_errors(got64, ref))
        old = agreement.verdict(m, agreement.Rule(case.dtype, base[fw]))  # the constant floor
        out.append({"impl": name, "case": case.id, "dtype": case.dtype, "base": base[fw],
                    "max_err": m["max_abs_err"], "passed": new["passed"],
                    "passed_old_rule": old["passed"], "worst_ratio": new["error_over_bound"],
                    "floor_max": float(np.max(floor)), "below_rounding": effect.get(name)})
    return out


def bug_effects(impls: dict[str, Impl], applies: dict, arrays: dict[str, np.ndarray],
                case: Case, ref: np.ndarray, rounding: np.ndarray) -> dict[str, bool]:
    """For planted bugs: whether the bug, computed in float64, moves every output row by less
    than the dtype's rounding scale there (u·V·(1 + A) + sums): then no rule can see it."""
    if impls is not BUGS:
        return {}
    q, k, v = (torch.from_numpy(arrays[n]) for n in "qkv")
    out = {}
    for name, impl in impls.items():
        if name not in applies or applies[name](case):
            err = agreement.row_errors(impl(q, k, v, case).numpy(), ref)
            out[name] = bool((err <= rounding).all())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller grid (a minute)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the summary as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    correct, bugs = [], []
    all_cases = cases(args.quick)
    for i, case in enumerate(all_cases):
        correct += evaluate(case, args.seed, CORRECT, {}, with_shipped=True)
        bugs += evaluate(case, args.seed, BUGS, BUG_APPLIES)
        if i % 100 == 0:
            print(f"[{i}/{len(all_cases)}] {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    summary = summarise(correct, bugs, time.perf_counter() - t0)
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["false_alarms"] == 0 else 1


def summarise(correct: list[dict], bugs: list[dict], seconds: float) -> dict[str, Any]:
    alarms = [r for r in correct if not r["passed"]]
    old_alarms = [r for r in correct if not r["passed_old_rule"]]
    per_impl = Counter(r["impl"] for r in alarms)
    worst = {}
    for r in correct:
        key = f"{r['impl']} {r['dtype']}"
        worst[key] = max(worst.get(key, 0.0), r["worst_ratio"])
    detect: dict[str, dict[str, str]] = {}
    for name in BUGS:
        for dt in DTYPES:
            rs = [r for r in bugs if r["impl"] == name and r["dtype"] == dt]
            if rs:
                caught = sum(not r["passed"] for r in rs)
                below = sum(r["passed"] and r["below_rounding"] for r in rs)
                missed = len(rs) - caught - below
                detect.setdefault(name, {})[dt] = (f"{caught}/{len(rs)} caught, {below} below "
                                                   f"rounding, {missed} missed")
    return {"pairs": len(correct), "false_alarms": len(alarms), "false_alarms_by_impl": per_impl,
            "false_alarms_old_rule": len(old_alarms),
            "false_alarms_old_rule_by_impl": Counter(r["impl"] for r in old_alarms),
            "worst_error_over_bound": dict(sorted(worst.items())),
            "bugs_detected": detect, "examples": alarms[:10], "seconds": round(seconds, 1)}


if __name__ == "__main__":
    sys.exit(main())
