"""Error metrics and the pass rule: k × same-dtype baseline error + floor, else fixed bounds."""

from __future__ import annotations

import numpy as np
import pytest

from attnbench.agreement import FIXED_ATOL, FLOOR, K_OUTPUT, compare, metrics, verdict


def test_metrics_values():
    ref = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = ref + np.array([[0.1, -0.3], [0.0, 0.2]])
    m = metrics(out, ref)
    assert m["max_abs_err"] == pytest.approx(0.3)
    assert m["mean_abs_err"] == pytest.approx(0.15)
    assert m["rel_l2_err"] == pytest.approx(np.sqrt(0.01 + 0.09 + 0.04) / np.sqrt(30))
    assert m["nonfinite"] == 0


def test_nan_always_fails_even_with_tiny_error_elsewhere():
    ref = np.zeros(4)
    out = np.array([0.0, np.nan, np.inf, 0.0])
    m = metrics(out, ref)
    assert m["nonfinite"] == 2 and m["max_abs_err"] == 0.0
    assert not verdict(m, "float32", baseline_max_err=1.0)["passed"]
    assert not verdict(m, "float32", baseline_max_err=None)["passed"]


def test_bound_is_k_times_baseline_plus_floor():
    base = 1e-4
    bound = K_OUTPUT * base + FLOOR["float32"]
    just_in = {"max_abs_err": bound * 0.999, "nonfinite": 0}
    just_out = {"max_abs_err": bound * 1.001, "nonfinite": 0}
    v = verdict(just_in, "float32", base)
    assert v["passed"] and v["bound"] == pytest.approx(bound) and "baseline" in v["rule"]
    assert not verdict(just_out, "float32", base)["passed"]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_fixed_bounds_without_baseline(dtype: str):
    v = verdict({"max_abs_err": 0.0, "nonfinite": 0}, dtype, None)
    assert v["bound"] == FIXED_ATOL[dtype] and v["rule"] == "fixed atol"
    nan_base = verdict({"max_abs_err": 0.0, "nonfinite": 0}, dtype, float("nan"))
    assert nan_base["rule"] == "fixed atol"


def test_compare_rejects_a_wrong_shape():
    ref = np.zeros((1, 1, 3, 2))
    r = compare("out", np.zeros((1, 1, 2, 3)), ref, np.arange(3), "float32", 0.0, (1, 1, 3, 2))
    assert not r["passed"] and "shape" in r["error"]


def test_compare_on_sampled_rows():
    full = np.random.default_rng(0).standard_normal((1, 2, 10, 4))
    rows = np.array([0, 4, 9])
    out = full.copy()
    out[:, :, 5] += 1.0  # an error on a row that is not checked is not seen
    r = compare("out", out, full[:, :, rows], rows, "float64", 0.0, full.shape)
    assert r["passed"] and r["max_abs_err"] == 0.0
    out[:, :, 9] += 1e-3
    r = compare("out", out, full[:, :, rows], rows, "float64", 0.0, full.shape)
    assert not r["passed"] and r["max_abs_err"] == pytest.approx(1e-3)
