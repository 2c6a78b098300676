"""Backward pass: oracle gradients, torch backends pass bwd/fwd_bwd, a wrong backward fails."""

from __future__ import annotations

import numpy as np
import pytest

from attnbench import variants
from attnbench.case import Case
from attnbench.plugin.registry import build_registry
from attnbench.run.execute import CaseData, Options, execute
from attnbench.verify.grad import GRAD_ORACLE_LIMIT, attention_grads, grad_groups
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
    ours = attention_grads(a["q"], a["k"], a["v"], d_out, case)
    for name, t in zip(("dq", "dk", "dv"), (q, k, v), strict=True):
        np.testing.assert_allclose(ours[name], t.grad.numpy(), atol=1e-12)


def test_large_cases_check_a_subset_of_groups_and_huge_ones_skip():
    small = Case(2, 4, 4, 64, 64, 16)
    assert grad_groups(small) == [(b, h) for b in range(2) for h in range(4)]
    big = Case(4, 16, 16, 1024, 1024, 64)
    groups = grad_groups(big)
    assert groups[0] == (0, 0) and groups[-1] == (3, 15)
    assert len(groups) * 1024 * 1024 <= GRAD_ORACLE_LIMIT
    assert grad_groups(Case(1, 1, 1, 8192, 8192, 64)) is None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize(
    "name", ["torch-naive", "torch-sdpa", "torch-sdpa-math", "torch-sdpa-flash"])
def test_torch_backends_backward_agrees(registry, name, case):
    data = CaseData(case, 0)
    rec = execute(registry.get(name), "t", case, lambda: data, OPTS)
    assert rec["status"] == "ok", (rec.get("error"), rec.get("agreement"))
    names = [o["name"] for o in rec["agreement"]["outputs"]]
    assert names == ["out", "dq", "dk", "dv"]
    assert rec["agreement"]["grads_checked"] == "all groups"


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
    def bound_parts(r):  # the output's bound is per row: compare what it is made of
        return [(o["name"], o.get("bound_max", o["bound"]), o["baseline_max_abs_err"])
                for o in r["agreement"]["outputs"]]

    assert bound_parts(rec) == bound_parts(honest)


VARIANT_CASES = [  # the padded-layout variants the gradient oracle covers
    Case(2, 4, 2, 10, 14, 8, mask="causal", window_left=3, kv_lens=(14, 5), q_lens=(10, 7)),
    Case(1, 2, 2, 12, 12, 8, mask="causal", doc_lens=(5, 4, 3)),
    Case(2, 4, 2, 9, 11, 8, alibi=True, bias="batch_head", mask="causal"),
    Case(1, 2, 1, 9, 9, 8, softcap=0.8, window_left=2, window_right=1),
    Case(2, 4, 2, 7, 9, 12, head_dim_v=5, mask="causal", kv_lens=(9, 0)),  # a length of 0
]


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
        ours = attention_grads(a["q"][b:b + 1], a["k"][b:b + 1], a["v"][b:b + 1],
                               d_out[b:b + 1], case, b, np.arange(case.heads_q), a.get("bias"))
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
