"""Backward pass: oracle gradients, torch backends pass bwd/fwd_bwd, a wrong backward fails,
gradients past any size are compared on drawn rows, and what is not compared never passes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnbench import variants
from attnbench.case import Case
from attnbench.plugin.registry import build_registry
from attnbench.run.execute import CaseData, Options, execute
from attnbench.verify import grad_plan as plan_mod
from attnbench.verify.grad import check_grads, grad_arrays, grad_data
from attnbench.verify.grad_oracle import group_grads
from attnbench.verify.grad_plan import MIN_ROWS, full_cost, grad_plan
from attnbench.verify.inputs import reference_arrays

torch = pytest.importorskip("torch")
OPTS = Options(time_it=False, memory=False)
CASES = [
    Case(2, 4, 2, 24, 40, 16, mask="causal", mode="fwd_bwd"),  # GQA, Lq < Lk
    Case(1, 4, 4, 40, 24, 16, mask="causal", mode="bwd"),  # Lq > Lk: rows that see nothing
    Case(1, 6, 2, 32, 32, 16, mask="none", mode="bwd"),  # GQA, no mask
]


def test_oracle_gradients_match_torch_autograd_in_float64():
    case = Case(1, 4, 2, 12, 20, 8, mask="causal", dtype="float64")
    a = reference_arrays(case, 3)
    d_out = np.random.default_rng(1).standard_normal((1, 4, 12, 8))
    q, k, v = (torch.from_numpy(a[n]).requires_grad_(True) for n in "qkv")
    kk, vv = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    vis = torch.from_numpy(np.arange(20)[None, :] <= np.arange(12)[:, None] + 8)
    s = (q @ kk.transpose(-1, -2) * case.softmax_scale).masked_fill(~vis, -torch.inf)
    (torch.softmax(s, -1) @ vv).backward(torch.from_numpy(d_out))
    ours = oracle(a, d_out, case, 0)
    for name, t in zip(("dq", "dk", "dv"), (q, k, v), strict=True):
        np.testing.assert_allclose(ours[name], t.grad.numpy(), atol=1e-12)


def oracle(a: dict, d_out: np.ndarray, case: Case, b: int) -> dict[str, np.ndarray]:
    """grad_oracle's gradients of batch element b, (1, H, S, ·) like torch's, in row blocks of
    one group (so the blocks' sums are exercised)."""
    rows = np.arange(case.seq_q)
    parts = [group_grads(a, d_out, case, b, h, rows, None, True) for h in range(case.heads_kv)]
    return {"dq": np.concatenate([p["dq"] for p in parts])[None],
            "dk": np.stack([p["dk"] for p in parts])[None],
            "dv": np.stack([p["dv"] for p in parts])[None]}


def test_oracle_on_drawn_keys_and_rows_equals_the_whole(monkeypatch):
    case = Case(1, 4, 2, 30, 26, 8, mask="causal", dtype="float64")
    a = reference_arrays(case, 3)
    d_out = np.random.default_rng(1).standard_normal((1, 4, 30, 8))
    monkeypatch.setattr("attnbench.verify.grad_oracle.GRAD_BLOCK_ENTRIES", 2 * 26 * 4)
    whole = group_grads(a, d_out, case, 0, 1, np.arange(30), None, True)
    keys, rows = np.array([0, 7, 25]), np.array([0, 13, 29])
    some = group_grads(a, d_out, case, 0, 1, np.arange(30), keys, False)
    few = group_grads(a, d_out, case, 0, 1, rows, None, True)
    for n in ("dk", "dv", "dk_floor", "dv_floor"):
        np.testing.assert_allclose(some[n], whole[n][keys], rtol=1e-12, atol=1e-15)
    for n in ("dq", "dq_floor"):
        np.testing.assert_allclose(few[n], whole[n][:, rows], rtol=1e-12, atol=1e-15)
    empty = variants.empty_rows(case)[0]  # 4 rows see no key: their dq must be exactly 0
    assert (whole["dq_floor"][:, empty] == 0).all() and (whole["dq_floor"][:, ~empty] > 0).all()
    assert (whole["dk_floor"] > 0).all()


def test_plan_compares_every_row_within_the_budget_and_draws_beyond_it():
    small = Case(2, 4, 4, 64, 64, 16)
    assert grad_plan(small, 7).full and len(grad_plan(small, 7).groups) == 8
    big = Case(2, 8, 2, 2100, 2100, 64, mask="causal")
    assert full_cost(big) > plan_mod.GRAD_FLOP_BUDGET
    plan = grad_plan(big, 7)
    assert not plan.full and plan.seed == 7
    assert MIN_ROWS <= len(plan.q_rows) < 2100 and {0, 2099} <= set(plan.q_rows.tolist())
    assert {0, 2099} <= set(plan.k_rows.tolist()) and 1 <= len(plan.groups) < 4
    other = grad_plan(big, 8)  # another seed, other rows: the caller's draw decides
    assert not np.array_equal(plan.q_rows, other.q_rows)
    tiny = grad_plan(big, 7, budget=0)  # never skipped: at least a group and MIN_ROWS rows
    assert len(tiny.groups) == 1 and len(tiny.q_rows) == len(tiny.k_rows) == MIN_ROWS


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize(
    "name", ["torch-naive", "torch-sdpa", "torch-sdpa-math", "torch-sdpa-flash"])
def test_torch_backends_backward_agrees(registry, name, case):
    data = CaseData(case, 0)
    rec = execute(registry.get(name), "t", case, lambda: data, OPTS)
    assert rec["status"] == "ok", (rec.get("error"), rec.get("agreement"))
    names = [o["name"] for o in rec["agreement"]["outputs"]]
    assert names == ["out", "dq", "dk", "dv"]
    assert rec["agreement"]["grads_checked"] == "every row of dq, dk and dv"
    assert rec["agreement"]["grad_seed"] is None
    assert all(o["rows_checked"] == "all" for o in rec["agreement"]["outputs"][1:])


@pytest.mark.parametrize("mode", ["bwd", "fwd_bwd"])
def test_wrong_backward_is_a_mismatch(plugin_path, mode):
    reg = build_registry([plugin_path("wrong_grad.py")], autoload=False)
    case = Case(1, 2, 2, 16, 24, 16, mask="causal", mode=mode)
    data = CaseData(case, 0)
    rec = execute(reg.get("wrong-grad"), "t", case, lambda: data, OPTS)
    assert rec["status"] == "mismatch"
    verdicts = {o["name"]: o["passed"] for o in rec["agreement"]["outputs"]}
    assert verdicts == {"out": True, "dq": False, "dk": False, "dv": True}


def test_bwd_mode_is_timed_and_counts_backward_flops(registry):
    case = Case(1, 2, 2, 64, 64, 16, mode="bwd")
    data = CaseData(case, 0)
    opts = Options(time_it=True, memory=True)
    opts.timer.budget_s, opts.timer.min_time_s, opts.timer.warmup_s = 0.2, 0.05, 0.02
    rec = execute(registry.get("torch-naive"), "t", case, lambda: data, opts)
    assert rec["status"] == "ok" and rec["timing"]["median_ms"] > 0
    assert rec["flops"] == 2.5 * 4 * 2 * 64 * 64 * 16
    mem = rec["memory"]  # measured in bwd mode too: a resident-set base and a named method
    assert mem["base_bytes"] > 2**20 and mem["method"].startswith(("VmHWM", "ru_maxrss"))


def test_numpy_backends_refuse_backward(registry):
    case = Case(1, 2, 2, 16, 16, 16, mode="bwd")
    rec = execute(registry.get("numpy-naive"), "t", case, lambda: CaseData(case, 0), OPTS)
    assert rec["status"] == "unsupported" and "no bwd mode" in rec["reasons"][0]


def test_torch_backend_that_changes_k_through_data_is_a_mismatch(plugin_path):
    """.data.mul_ escapes autograd's in-place check; the record names it and the gradient
    bounds come from pristine inputs (the same as for an honest backend)."""
    reg = build_registry([plugin_path("mutates_inputs.py")], autoload=False)
    case = Case(1, 2, 2, 16, 24, 16, mask="causal", mode="fwd_bwd")
    data = CaseData(case, 0)
    rec = execute(reg.get("test-torch-scales-k"), "t", case, lambda: data, OPTS)
    honest = execute(reg.get("torch-naive"), "t", case, lambda: CaseData(case, 0), OPTS)
    assert rec["status"] == "mismatch" and honest["status"] == "ok"
    assert "overwrote k in place" in rec["agreement"]["problems"][0]
    def bound_parts(r):  # bounds are per element: compare their largest (output, gradients)
        return [(o["name"], o.get("bound_max", o.get("floor_max")), o["baseline_max_abs_err"])
                for o in r["agreement"]["outputs"]]

    assert bound_parts(rec) == bound_parts(honest)


VARIANT_CASES = [  # the padded-layout variants the gradient oracle covers
    Case(2, 4, 2, 10, 14, 8, mask="causal", window_left=3, kv_lens=(14, 5), q_lens=(10, 7)),
    Case(1, 2, 2, 12, 12, 8, mask="causal", doc_lens=(5, 4, 3)),
    Case(2, 4, 2, 9, 11, 8, alibi=True, bias="batch_head", mask="causal"),
    Case(1, 2, 1, 9, 9, 8, softcap=0.8, window_left=2, window_right=1),
    Case(2, 4, 2, 7, 9, 12, head_dim_v=5, mask="causal", kv_lens=(9, 0)),  # a length of 0
    Case(2, 2, 1, 10, 8, 8, mask_mod="attnbench.mask_functions:random_blocks(2, 40)",
         alibi=True),  # a mask function: keys and rows no one sees, per batch element
]


# a mask function is evaluated in a child process (attnbench/mask_eval.py)
VARIANT_CASES = [pytest.param(c, marks=pytest.mark.process) if c.mask_mod else c
                 for c in VARIANT_CASES]


def literal_torch(a: dict, case: Case, b: int) -> tuple:
    """softmax(cap(q kᵀ·scale) + ALiBi + bias, masked) v of batch element b in float64 torch,
    its leaves q, k, v (written out here: the autograd side of the comparison)."""
    q, k, v = (torch.from_numpy(a[n][b:b + 1].copy()).requires_grad_(True) for n in "qkv")
    g = case.heads_q // case.heads_kv
    s = q @ k.repeat_interleave(g, 1).transpose(-1, -2) * case.softmax_scale
    if case.softcap is not None:
        s = case.softcap * torch.tanh(s / case.softcap)
    q_lens, kv_lens = variants.lengths(case)
    if case.alibi:
        i = np.arange(case.seq_q)[:, None] + kv_lens[b] - q_lens[b]
        dist = np.abs(i - np.arange(case.seq_kv)[None, :])
        s = s - torch.from_numpy(variants.alibi_slopes(case.heads_q)[:, None, None] * dist)
    if "bias" in a:
        s = s + torch.from_numpy(a["bias"][b if a["bias"].shape[0] > 1 else 0])
    vis = torch.from_numpy(variants.visibility(case, b))
    p = torch.softmax(s.masked_fill(~vis, -torch.inf), -1).nan_to_num(0.0)
    return p @ v.repeat_interleave(g, 1), (q, k, v)


@pytest.mark.parametrize("case", VARIANT_CASES, ids=lambda c: c.id)
def test_oracle_gradients_with_variants_match_torch_autograd(case):
    case = Case(**{**case.to_dict(), "dtype": "float64"})
    a = reference_arrays(case, 3)
    d_out = np.random.default_rng(1).standard_normal((case.batch, case.heads_q, case.seq_q,
                                                      case.dv))
    for b in range(case.batch):
        out, leaves = literal_torch(a, case, b)
        out.backward(torch.from_numpy(d_out[b:b + 1]))
        ours = oracle(a, d_out, case, b)
        for name, t in zip(("dq", "dk", "dv"), leaves, strict=True):
            np.testing.assert_allclose(ours[name], t.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("mode", ["bwd", "fwd_bwd"])
@pytest.mark.parametrize("case", VARIANT_CASES, ids=lambda c: c.id)
def test_torch_naive_backward_with_variants_agrees(registry, case, mode):
    case = Case(**{**case.to_dict(), "mode": mode})
    rec = execute(registry.get("torch-naive"), "t", case, lambda: CaseData(case, 0), OPTS)
    assert rec["status"] == "ok", (rec.get("error"), rec.get("agreement"))
    assert [o["name"] for o in rec["agreement"]["outputs"]] == ["out", "dq", "dk", "dv"]
    assert all(np.isfinite(o["max_abs_err"]) for o in rec["agreement"]["outputs"])


def test_halved_dq_past_the_old_skip_limit_is_caught(plugin_path, monkeypatch):
    """4 query heads × 2100² = 17.6M score entries per group (the old limit skipped > 2²⁴):
    dq is compared on drawn rows, dk and dv on drawn keys, and the halved dq fails."""
    monkeypatch.setattr(plan_mod, "GRAD_FLOP_BUDGET", 2**29)  # fewer rows: a faster test
    reg = build_registry([plugin_path("wrong_grads.py")], autoload=False)
    case = Case(1, 8, 2, 2100, 2100, 32, mask="causal", mode="bwd")
    rec = execute(reg.get("halves-dq"), "t", case, lambda: CaseData(case, 0), OPTS)
    assert rec["status"] == "mismatch"
    agree = rec["agreement"]
    grads = {o["name"]: o for o in agree["outputs"][1:]}
    assert {n: o["passed"] for n, o in grads.items()} == {"dq": False, "dk": True, "dv": True}
    assert isinstance(grads["dq"]["rows_checked"], int) and grads["dq"]["rows_total"] == 2100
    assert grads["dk"]["groups_checked"] == 1 and "drawn" in grads["dk"]["rows_chosen"]
    assert isinstance(agree["grad_seed"], int) and "dq:" in agree["grads_checked"]


XFORMERS_BACKWARD = [  # xformers' test_backward shapes: inputs ×3, i.e. scale 9/√32 on N(0, 1)
    Case(1, 1, 1, 256, 128, 32, scale=9 / math.sqrt(32), mode="fwd_bwd"),
    Case(3, 1, 1, 256, 256, 32, scale=9 / math.sqrt(32), mode="fwd_bwd"),
    Case(3, 1, 1, 32, 256, 32, scale=9 / math.sqrt(32), mode="fwd_bwd"),
    Case(1, 1, 1, 136, 128, 32, scale=9 / math.sqrt(32), mode="fwd_bwd"),
    Case(1, 5, 5, 256, 128, 32, scale=9 / math.sqrt(32), mode="fwd_bwd"),
]


@pytest.mark.parametrize("case", XFORMERS_BACKWARD, ids=lambda c: c.id)
@pytest.mark.parametrize("name", ["torch-sdpa", "torch-sdpa-flash"])
def test_xformers_backward_shapes_pass_for_sdpa(registry, name, case):
    """PyTorch's CPU flash backward reuses a log-sum-exp taken with an approximate exp: a
    correct kernel, which the element floor must not fail."""
    rec = execute(registry.get(name), "t", case, lambda: CaseData(case, 0), OPTS)
    assert rec["status"] == "ok", rec["agreement"]["outputs"]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
@pytest.mark.parametrize("name", ["torch-naive", "torch-sdpa-math", "torch-sdpa-flash"])
def test_torch_backends_backward_agrees_in_every_dtype(registry, name, dtype):
    case = Case(1, 4, 2, 48, 64, 32, dtype=dtype, mask="causal", mode="fwd_bwd")
    rec = execute(registry.get(name), "t", case, lambda: CaseData(case, 0), OPTS)
    assert rec["status"] == "ok", rec["agreement"]["outputs"]


def test_a_missing_gradient_is_a_mismatch(plugin_path):
    reg = build_registry([plugin_path("wrong_grads.py")], autoload=False)
    case = Case(1, 2, 2, 16, 24, 16, mask="causal", mode="fwd_bwd")
    rec = execute(reg.get("drops-dv"), "t", case, lambda: CaseData(case, 0), OPTS)
    assert rec["status"] == "mismatch"
    dv = next(o for o in rec["agreement"]["outputs"] if o["name"] == "dv")
    assert not dv["passed"] and dv["error"] == "no gradient"


def test_no_compared_row_never_passes():
    """An entry whose gradient had no row compared (none drawn) fails, with the reason."""
    case = Case(1, 2, 2, 16, 24, 16, mask="causal", mode="bwd")
    arrays = reference_arrays(case, 0)
    data = grad_data(case, arrays, 0)
    torch_grads = {n: torch.zeros(s) for n, s in
                   (("dq", (1, 2, 16, 16)), ("dk", (1, 2, 24, 16)), ("dv", (1, 2, 24, 16)))}
    grads, dtypes = grad_arrays(torch_grads)
    assert dtypes == {"dq": "float32", "dk": "float32", "dv": "float32"}
    full = check_grads(case, arrays, data, grads, dtypes, seed=3)
    assert full["seed"] is None and not any(e["passed"] for e in full["entries"])  # zeros
    ref = data.full
    assert ref is not None
    ref.plan = plan_mod.GradPlan(ref.plan.q_rows[:0], (), ref.plan.k_rows[:0], 3,
                                 ref.plan.n_groups, 16, 24)
    ref.values = {n: v[..., :0, :] if n == "dq" else v[:0, :0] for n, v in ref.values.items()}
    ref.floors = {n: v[..., :0, :] if n == "dq" else v[:0, :0] for n, v in ref.floors.items()}
    from attnbench.verify.grad import grad_entries

    for e in grad_entries(case, ref, {n: np.asarray(ref_zero) for n, ref_zero in grads.items()}):
        assert not e["passed"] and e["error"] == "no row of this gradient was compared"
