"""The float64 oracle's row sampling and grouped-head expansion (its values: test_semantics.py)."""

from __future__ import annotations

import numpy as np

from attnbench.case import Case
from attnbench.reference import (
    FULL_ORACLE_LIMIT,
    SAMPLED_ROWS,
    attention_rows,
    check_rows,
    expand_kv,
)


def test_small_cases_check_every_row():
    c = Case(1, 2, 2, 100, 100, 8)
    assert np.array_equal(check_rows(c), np.arange(100))


def test_large_cases_sample_first_last_and_random_rows():
    n = 4096
    c = Case(4, 32, 8, n, n, 64)
    assert c.batch * c.heads_q * n * n > FULL_ORACLE_LIMIT
    rows = check_rows(c, seed=0)
    assert len(rows) == SAMPLED_ROWS and rows[0] == 0 and rows[-1] == n - 1
    assert np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, check_rows(c, seed=0))


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
    assert np.array_equal(attention_rows(q, k, v, c, rows), full[:, :, rows])
    assert np.all(full[:, :, :3] == 0) and np.all(np.isfinite(full))
