"""The float64 oracle: every row within its budget, rows drawn per run beyond it, in blocks."""

from __future__ import annotations

import numpy as np

from attnbench.case import Case
from attnbench.verify import reference
from attnbench.verify.reference import (
    MIN_SAMPLED_ROWS,
    ORACLE_FLOP_BUDGET,
    attention_rows,
    check_rows,
    expand_kv,
    oracle,
    oracle_flops,
)


def test_cases_within_the_budget_check_every_row():
    c = Case(1, 2, 2, 100, 100, 8)
    assert np.array_equal(check_rows(c, 0), np.arange(100))
    big = Case(1, 8, 8, 8192, 8192, 16)  # 4·8·8192²·16 = 2³⁵ FLOPs: just within
    assert oracle_flops(big, big.seq_q) <= ORACLE_FLOP_BUDGET
    assert np.array_equal(check_rows(big, 0), np.arange(8192))


def test_beyond_the_budget_rows_come_from_the_run_seed():
    n = 8192
    c = Case(1, 8, 8, n, n, 64)  # 137 GFLOP: over the budget
    assert oracle_flops(c, n) > ORACLE_FLOP_BUDGET
    rows = check_rows(c, check_seed=11)
    assert MIN_SAMPLED_ROWS <= len(rows) < n and rows[0] == 0 and rows[-1] == n - 1
    assert oracle_flops(c, len(rows)) <= ORACLE_FLOP_BUDGET  # as many rows as the budget allows
    assert np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, check_rows(c, check_seed=11))  # the same run: the same rows
    other = check_rows(c, check_seed=12)
    assert len(np.intersect1d(rows, other)) < len(rows) // 2  # another run: other rows


def test_a_huge_case_still_checks_the_minimum_of_rows():
    c = Case(8, 32, 8, 65536, 65536, 128)
    rows = check_rows(c, 0)
    assert len(rows) == MIN_SAMPLED_ROWS and rows[0] == 0 and rows[-1] == 65535


def test_expand_kv_maps_query_head_to_kv_head():
    k = np.arange(3).reshape(1, 3, 1, 1).astype(float)  # kv head g holds g
    got = expand_kv(k, 12)[0, :, 0, 0]
    assert list(got) == [h // 4 for h in range(12)]


def test_oracle_on_rows_equals_full_oracle_rows():
    c = Case(1, 2, 1, 12, 9, 4, mask="causal", dtype="float64")
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal(s) for s in [(1, 2, 12, 4), (1, 1, 9, 4), (1, 1, 9, 4)])
    full = attention_rows(q, k, v, c, np.arange(12))
    rows = np.array([0, 3, 11])
    # not bitwise: BLAS may block a 3-row product differently from a 12-row one (it did, on an
    # AVX-512 host); a wrong row would be off by O(1), far beyond this
    np.testing.assert_allclose(attention_rows(q, k, v, c, rows), full[:, :, rows],
                               rtol=1e-13, atol=1e-15)
    assert np.all(full[:, :, :3] == 0) and np.all(np.isfinite(full))


def test_blocked_oracle_equals_one_piece(monkeypatch):
    c = Case(2, 6, 2, 40, 33, 8, mask="causal", dtype="float64")
    rng = np.random.default_rng(1)
    arrays = {"q": rng.standard_normal((2, 6, 40, 8)), "k": rng.standard_normal((2, 2, 33, 8)),
              "v": rng.standard_normal((2, 2, 33, 8))}
    whole = attention_rows(arrays["q"], arrays["k"], arrays["v"], c, np.arange(40))
    monkeypatch.setattr(reference, "BLOCK_ENTRIES", 3 * 33 * 7)  # blocks of 7 rows
    assert len(list(reference.blocks(c, np.arange(40)))) == 2 * 2 * 6
    np.testing.assert_allclose(oracle(arrays, c, np.arange(40)), whole, rtol=1e-13, atol=1e-15)
    rows = np.array([0, 5, 17, 39])
    np.testing.assert_allclose(oracle(arrays, c, rows), whole[:, :, rows], rtol=1e-13, atol=1e-15)
