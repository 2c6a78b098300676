"""The log-sum-exp: its oracle against a literal formula, its bound and verdict (verify/lse.py).

The literal lse is written here from the README's rule, one row at a time with Python loops,
math and scipy's logsumexp; it shares no code with attnbench.variants or the oracle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from attnbench.backends.numpy_naive import NumpyNaive
from scipy.special import logsumexp

from attnbench.case import Case
from attnbench.testing import check_output
from attnbench.verify.inputs import reference_arrays
from attnbench.verify.reference import oracle_lse
from tests.verify.test_variant_oracle import sees, slopes


def literal_lse(arrays: dict[str, np.ndarray], case: Case) -> np.ndarray:
    """ln Σ_j e^(s_ij) (+ e^σ_h with sinks) per row, the README's scores; −inf when empty."""
    q, k, bias = arrays["q"], arrays["k"], arrays.get("bias")
    out = np.full((case.batch, case.heads_q, case.seq_q), -np.inf)
    group = case.heads_q // case.heads_kv
    for b in range(case.batch):
        lq = case.q_lens[b] if case.q_lens is not None else case.seq_q
        lk = case.kv_lens[b] if case.kv_lens is not None else case.seq_kv
        off = 0 if case.mask == "causal_top_left" else lk - lq
        for h in range(case.heads_q):
            for i in range(case.seq_q):
                terms = [float(arrays["sinks"][h])] if "sinks" in arrays else []
                for j in range(case.seq_kv):
                    if not sees(case, b, i, j):
                        continue
                    s = case.softmax_scale * sum(float(q[b, h, i, x] * k[b, h // group, j, x])
                                                 for x in range(case.head_dim))
                    if case.softcap is not None:
                        s = case.softcap * math.tanh(s / case.softcap)
                    if case.alibi:
                        s -= slopes(case.heads_q)[h] * abs(i + off - j)
                    if bias is not None:
                        s += bias[b if bias.shape[0] > 1 else 0, h if bias.shape[1] > 1 else 0,
                                  i, j]
                    terms.append(s)
                if terms:
                    out[b, h, i] = logsumexp(terms)
    return out


CASES = [
    Case(2, 4, 2, 7, 11, 4, mask="causal", window_left=2),
    Case(3, 2, 1, 6, 9, 4, mask="causal", q_lens=(6, 0, 2), kv_lens=(9, 3, 0), lse=True),
    Case(2, 2, 2, 9, 5, 4, mask="causal", lse=True),  # Lq > Lk: the first rows see no key
    Case(2, 4, 2, 3, 10, 4, mask="causal", kv_lens=(10, 4), layout="paged", page_size=4,
         lse=True),
    Case(2, 4, 1, 6, 8, 4, head_dim_v=5, alibi=True, bias="head", softcap=1.5, window_left=2,
         kv_lens=(8, 5), mask="causal", lse=True),
    Case(2, 4, 2, 6, 9, 4, mask="causal", sinks=True, kv_lens=(9, 0), lse=True),
    Case(2, 4, 2, 4, 9, 4, mask="causal_top_left", scale=0.7, lse=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_oracle_lse_matches_the_literal_formula(case: Case):
    arrays = reference_arrays(case, 3)
    got, want = oracle_lse(arrays, case, np.arange(case.seq_q)), literal_lse(arrays, case)
    assert np.array_equal(np.isneginf(got), np.isneginf(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], atol=1e-12,
                               rtol=0)


def _naive(transform=None):
    """numpy-naive as a testing-API function; transform(inputs, out, lse) -> what it returns."""
    def attention(inputs):
        result = NumpyNaive().prepare(inputs)()
        return result if transform is None else transform(inputs, *result)
    return attention


def _lse_entry(agreement: dict) -> dict:
    return next(o for o in agreement["outputs"] if o["name"] == "lse")


LSE_CASE = Case(2, 4, 2, 20, 16, 16, mask="causal", kv_lens=(16, 7), lse=True)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_numpy_naive_lse_is_well_inside_its_bound(dtype: str):
    case = Case(**{**LSE_CASE.__dict__, "dtype": dtype})
    agreement = check_output(_naive(), case)
    entry = _lse_entry(agreement)
    assert agreement["passed"], entry
    assert entry["error_over_bound"] < 0.5 and entry["nonfinite"] == 0
    assert entry["shape"] == [2, 4, 20] and entry["dtype"] == ("float64" if dtype == "float64"
                                                                else "float32")


@pytest.mark.parametrize("wrong", [
    lambda inputs, out, lse: (out, lse / np.float32(math.log(2))),  # base 2
    lambda inputs, out, lse: (out, lse * 2),
], ids=["base-2", "doubled"])
def test_a_wrong_lse_fails_clearly(wrong):
    agreement = check_output(_naive(wrong), LSE_CASE)
    entry = _lse_entry(agreement)
    assert not agreement["passed"] and not entry["passed"]
    assert entry["error_over_bound"] > 100, entry
    assert "lse of batch" in entry["worst"]


def test_an_lse_without_the_scale_fails():
    """The lse of the unscaled scores q·k (a kernel that applies the scale after the sum)."""
    def unscaled(inputs, out, lse):
        import dataclasses

        plain = dataclasses.replace(inputs, scale=1.0)
        return out, NumpyNaive().prepare(plain)()[1]
    entry = _lse_entry(check_output(_naive(unscaled), LSE_CASE))
    assert not entry["passed"] and entry["error_over_bound"] > 100


@pytest.mark.parametrize("wrong, words", [
    (lambda inputs, out, lse: out, "returned a bare ndarray, not (out, lse)"),
    (lambda inputs, out, lse: (out, lse, lse), "a tuple of 3"),
    (lambda inputs, out, lse: (out, lse[:, :1]), "not (2, 4, 20)"),
    (lambda inputs, out, lse: (out, lse.astype(np.float16)), "lse dtype float16"),
])
def test_a_result_breaking_the_contract_says_so(wrong, words):
    agreement = check_output(_naive(wrong), LSE_CASE)
    entry = _lse_entry(agreement)
    assert not agreement["passed"] and not entry["passed"]
    assert words in entry["error"] and "natural log" in entry["error"]
    assert agreement["outputs"][0]["passed"]  # the output itself is still judged, and right


def test_minus_inf_only_on_rows_that_see_no_key():
    """Rows 0..3 of this case see no key (Lq 20 > Lk 16): their lse is −inf, no other's."""
    def no_key_finite(inputs, out, lse):
        lse = lse.copy()
        lse[:, :, 0] = 0.0
        return out, lse

    def inf_elsewhere(inputs, out, lse):
        lse = lse.copy()
        lse[0, 0, 10] = -np.inf
        return out, lse
    assert _lse_entry(check_output(_naive(), LSE_CASE))["passed"]
    first = _lse_entry(check_output(_naive(no_key_finite), LSE_CASE))
    assert not first["passed"] and "(it sees no key" in first["worst"]
    second = _lse_entry(check_output(_naive(inf_elsewhere), LSE_CASE))
    assert not second["passed"] and second["nonfinite"] == 1


def test_lse_with_sinks_is_the_sink_logit_on_empty_rows():
    case = Case(2, 4, 2, 6, 9, 8, mask="causal", sinks=True, kv_lens=(9, 0), lse=True)
    agreement = check_output(_naive(), case)
    assert agreement["passed"], _lse_entry(agreement)


def test_sinks_with_alibi_have_a_rounding_model():
    """The sink's column has no ALiBi term: the output's rounding model builds (it once failed
    to broadcast the terms against the visibility with the sink's column) and numpy-naive
    passes, its output and its lse."""
    case = Case(2, 4, 2, 12, 12, 8, mask="causal", sinks=True, alibi=True, softcap=5.0,
                window_left=5, lse=True)
    for dtype in ("float32", "float16"):
        agreement = check_output(_naive(), Case(**{**case.__dict__, "dtype": dtype}))
        assert agreement["passed"], agreement["outputs"]
