"""The forward pass rule (verify/rounding.py, verify/bound.py): in bfloat16 at a Llama-like head a
correct fused kernel passes and every planted bug fails; rows that see no key must be exactly 0
in every dtype; the baseline calibrates the model live and falls back per row."""

from __future__ import annotations

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.plugin.registry import build_registry
from attnbench.run.execute import CaseData, Options, execute
from attnbench.verify import bound, reference, roundoff
from attnbench.verify.inputs import reference_arrays
from attnbench.verify.rounding import oracle_and_model

OPTS = Options(time_it=False, memory=False)
LLAMA = Case(1, 1, 1, 4096, 4096, 128, dtype="bfloat16")  # one Llama-like head
BUGS = ["test-zeros", "test-mean-of-v", "test-output-x1.01", "test-softmax-scale-x1.01",
        "test-noise-10pct", "test-drops-key-0", "test-rows-from-512-ignore-qk"]


@pytest.fixture(scope="module")
def halves(plugin_path):
    return build_registry([plugin_path("wrong_halves.py")], autoload=False)


@pytest.fixture(scope="module")
def llama_data():
    """1,024 sampled rows of the Llama-like head (the oracle budget made 8 × smaller)."""
    saved = reference.ORACLE_FLOP_BUDGET
    reference.ORACLE_FLOP_BUDGET = 2**31
    try:
        data = CaseData(LLAMA, 0, check_seed=7)
        assert len(data.rows) == 1024 and data.rows.max() >= 512
        return data
    finally:
        reference.ORACLE_FLOP_BUDGET = saved


def verdict(backend, data: CaseData) -> dict:
    rec = execute(backend, "t", data.case, lambda: data, OPTS)
    assert rec["status"] in ("ok", "mismatch"), rec.get("error")
    return rec["agreement"]["outputs"][0]


def test_a_correct_bfloat16_kernel_passes_a_llama_head(halves, registry, llama_data):
    for backend in (halves.get("test-fused"), registry.get("torch-naive"),
                    registry.get("torch-sdpa-flash")):
        out = verdict(backend, llama_data)
        assert out["passed"], (backend.name, out)
        assert out["error_over_bound"] < 0.9 and out["baseline_over_bound"] < 0.9
        assert out["max_abs_err"] <= out["bound"]


@pytest.mark.parametrize("name", BUGS)
def test_each_planted_bug_fails_a_llama_head_in_bfloat16(halves, llama_data, name):
    out = verdict(halves.get(name), llama_data)
    assert not out["passed"] and out["error_over_bound"] > 1, out
    assert out["rule"].startswith("rounding model") and out["worst"]


def test_the_old_bound_was_blind_where_the_model_is_not(halves, llama_data):
    """The old rule's bound here (0.454, with a floor of 0.549: 3 × the largest |out|) let
    zeros pass; the model's largest element bound is a tenth of the largest |out|."""
    out = verdict(halves.get("test-zeros"), llama_data)
    assert out["bound_max"] < 0.1 * out["magnitudes"]["out_max"]
    assert out["max_abs_err"] == pytest.approx(out["magnitudes"]["out_max"])
    assert out["error_over_bound"] > 10


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_rows_that_see_no_key_must_be_exactly_zero(halves, dtype):
    case = Case(2, 2, 2, 40, 24, 32, dtype=dtype, mask="causal", kv_lens=(24, 0))
    data = CaseData(case, 0)
    model = data.model
    assert model.empty[0, 0, :16].all() and model.empty[1].all()
    assert not model.empty[0, 0, 16:].any()
    assert (bound.element_bounds(model)[np.broadcast_to(model.empty, model.ref.shape)] == 0).all()
    assert verdict(halves.get("test-fused"), data)["passed"]
    out = verdict(halves.get("test-empty-rows-not-zero"), data)
    assert not out["passed"] and "it sees no key: it must be exactly 0" in out["worst"]


def test_the_oracle_is_the_reference_in_any_block_size(monkeypatch):
    case = Case(2, 4, 2, 9, 13, 8, mask="causal", alibi=True, bias="head", softcap=3.0)
    arrays, rows = reference_arrays(case, 1), np.arange(case.seq_q)
    want = reference.oracle(arrays, case, rows)
    for entries in (1, 26, 1 << 20):  # one row of a group per block, a few, all at once
        monkeypatch.setattr(roundoff, "MODEL_BLOCK_ENTRIES", entries)
        got = oracle_and_model(arrays, case, rows)
        np.testing.assert_allclose(got.ref, want, rtol=1e-12, atol=1e-15)
        assert (got.sigma > 0).all() and (got.det > 0).all()


def test_the_model_sums_match_a_sum_over_keys():
    """sigma² is Σ_j over the keys (the weights' and the scores' roundings): the matmul
    form, with each row's heaviest key taken out, equals the plain sum."""
    case = Case(1, 2, 1, 5, 11, 4, dtype="bfloat16", scale=3.0)
    arrays, rows = reference_arrays(case, 2), np.arange(case.seq_q)
    coef = roundoff.DEFAULTS["bfloat16"]
    blk = roundoff.Block(arrays, case, rows, 0, 0, np.arange(2))
    s1, s, shifted = blk.scores()
    u, ua = (np.sqrt(roundoff.RNE_VARIANCE) * roundoff.UNIT_ROUNDOFF[x]
             for x in ("bfloat16", "float32"))
    var_s = blk._score_variance(s1.copy(), s, shifted, coef, u, ua)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    v = blk.v
    o = p @ v
    w1 = p * p * var_s * roundoff._exp_factor(var_s)
    wk = p * p * (coef.weight * u * u + coef.sums * ua * ua * case.seq_kv / 2)
    want = np.einsum("grj,grjt->grt", w1, (v[None, None] - o[:, :, None]) ** 2)
    want += np.einsum("grj,jt->grt", wk, v * v)
    want += coef.sums * ua * ua * case.seq_kv / 3 * o * o
    got = oracle_and_model(arrays, case, rows).sigma[0] ** 2
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_a_baseline_over_the_model_is_said_and_allowed_per_row(registry, monkeypatch):
    """A model too small for its own baseline (all roundings but the output's removed): the
    record says the baseline exceeds it and adds 2 × the baseline's own per-row errors."""
    none = roundoff.Coefficients(**{f: 0.0 for f in roundoff.Coefficients.__dataclass_fields__})
    monkeypatch.setitem(roundoff.DEFAULTS, "bfloat16", none)
    case = Case(1, 2, 2, 64, 64, 64, dtype="bfloat16", scale=2.0)
    out = verdict(registry.get("torch-naive"), CaseData(case, 0))
    assert out["baseline_over_bound"] > 1
    assert "the same-dtype baseline exceeds the rounding model" in out["baseline_fallback"]
    assert out["rule"].endswith("+ 2x baseline per row") and out["passed"]
