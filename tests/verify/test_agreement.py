"""Error metrics and the pass rule: k × same-dtype baseline error + floor, else fixed bounds."""

from __future__ import annotations

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.plugin.backend import Inputs
from attnbench.verify.agreement import (
    FIXED_ATOL,
    FLOOR,
    K_OUTPUT,
    Rule,
    changed_inputs,
    compare,
    metrics,
    rows_of,
    verdict,
)


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
    assert not verdict(m, Rule("float32", 1.0))["passed"]
    assert not verdict(m, Rule("float32", None))["passed"]


def test_bound_is_k_times_baseline_plus_floor():
    base = 1e-4
    bound = K_OUTPUT * base + FLOOR["float32"]
    just_in = {"max_abs_err": bound * 0.999, "nonfinite": 0}
    just_out = {"max_abs_err": bound * 1.001, "nonfinite": 0}
    v = verdict(just_in, Rule("float32", base))
    assert v["passed"] and v["bound"] == pytest.approx(bound) and "baseline" in v["rule"]
    assert "fallback_reason" not in v
    assert not verdict(just_out, Rule("float32", base))["passed"]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_fixed_bounds_without_baseline_say_why(dtype: str):
    zero = {"max_abs_err": 0.0, "nonfinite": 0}
    v = verdict(zero, Rule(dtype, None, fallback_reason="baseline raised MemoryError()"))
    assert v["bound"] == FIXED_ATOL[dtype] and v["rule"] == "fixed atol"
    assert v["fallback_reason"] == "baseline raised MemoryError()"
    nan_base = verdict(zero, Rule(dtype, float("nan")))
    assert nan_base["rule"] == "fixed atol" and "nan" in nan_base["fallback_reason"]


def test_compare_rejects_a_wrong_shape():
    ref = np.zeros((1, 1, 3, 2))
    r = compare("out", np.zeros((1, 1, 2, 3)), (1, 1, 3, 2), rows_of(np.arange(3), 3), ref,
                Rule("float32", 0.0))
    assert not r["passed"] and "shape" in r["error"]


def test_compare_rejects_a_wrong_dtype_even_when_the_values_are_right():
    ref = np.random.default_rng(0).standard_normal((1, 1, 3, 2)).astype(np.float32)
    rule = Rule("float32", 1e-7)
    good = compare("out", ref, ref.shape, rows_of(np.arange(3), 3), ref.astype(float), rule)
    assert good["passed"] and good["dtype"] == "float32"
    r = compare("out", ref.astype(np.float64), ref.shape, rows_of(np.arange(3), 3),
                ref.astype(float), rule)
    assert r["max_abs_err"] == 0.0 and not r["passed"]
    assert r["error"] == "dtype float64, expected float32 (the case's dtype)"


def test_compare_errors_on_sampled_rows_but_nan_anywhere():
    full = np.random.default_rng(0).standard_normal((1, 2, 10, 4))
    rows = np.array([0, 4, 9])
    out = full.copy()
    out[:, :, 5] += 1.0  # an error on a row that is not compared is not measured ...
    rule = Rule("float64", 0.0)
    r = compare("out", out, full.shape, rows_of(rows, 10), full[:, :, rows], rule)
    assert r["passed"] and r["max_abs_err"] == 0.0
    out[:, :, 9] += 1e-3
    r = compare("out", out, full.shape, rows_of(rows, 10), full[:, :, rows], rule)
    assert not r["passed"] and r["max_abs_err"] == pytest.approx(1e-3)
    out = full.copy()
    out[0, 1, 6, 2] = np.nan  # ... but a NaN on any row fails: the whole output is scanned
    r = compare("out", out, full.shape, rows_of(rows, 10), full[:, :, rows], rule)
    assert not r["passed"] and r["nonfinite"] == 1 and r["max_abs_err"] == 0.0


def test_changed_inputs_names_what_changed():
    case = Case(1, 2, 2, 3, 3, 4, dtype="float64")
    arrays = {n: np.random.default_rng(i).standard_normal((1, 2, 3, 4))
              for i, n in enumerate("qkv")}
    inputs = Inputs(case, *(arrays[n].copy() for n in "qkv"), scale=case.softmax_scale)
    handed = {"q": inputs.q, "k": inputs.k, "v": inputs.v}
    assert changed_inputs(inputs, handed, arrays, case.softmax_scale) == []
    inputs.q[0, 1, 2, 3] *= 2
    inputs.v = np.zeros_like(inputs.v)
    (text,) = changed_inputs(inputs, handed, arrays, case.softmax_scale)
    assert "modified its inputs (overwrote q in place, reassigned inputs.v)" in text
