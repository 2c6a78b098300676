"""Scaling analysis: log-log exponent fits, their warnings, frontiers from records."""

from __future__ import annotations

import math

import pytest

from attnbench.report.scaling import fit_exponent, frontier


@pytest.mark.parametrize("p", [1.0, 2.0, 0.5])
def test_exact_power_law(p: float):
    xs = [256, 512, 1024, 2048]
    fit = fit_exponent(xs, [3e-4 * x ** p for x in xs])
    assert fit.exponent == pytest.approx(p)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.warning == ""


def test_noisy_fit_is_warned():
    xs = [1, 2, 4, 8, 16]
    ys = [5.0, 1.0, 9.0, 2.0, 6.0]
    fit = fit_exponent(xs, ys)
    assert fit.r2 < 0.95 and "poor fit" in fit.warning


def test_two_points_warn_and_one_point_cannot_fit():
    two = fit_exponent([100, 200], [1.0, 4.0])
    assert two.exponent == pytest.approx(2.0) and "only 2 points" in two.warning
    one = fit_exponent([100, 100], [1.0, 1.1])
    assert one.exponent is None and "cannot fit" in one.warning


def test_fit_matches_numpy_polyfit():
    import numpy as np

    xs = [128, 256, 512, 1024, 4096]
    ys = [0.11, 0.35, 1.4, 5.1, 80.0]
    slope, _ = np.polyfit(np.log(xs), np.log(ys), 1)
    assert fit_exponent(xs, ys).exponent == pytest.approx(slope)
    assert math.isfinite(fit_exponent(xs, ys).r2)


def test_frontier_from_records():
    recs = [{"seq_kv": n, "status": s} for n, s in
            [(256, "ok"), (512, "ok"), (1024, "mismatch"), (2048, "oom"), (4096, "oom")]]
    assert frontier(recs, "seq_kv") == (1024, 2048, "oom")
    assert frontier(recs[:2], "seq_kv") == (512, None, None)
    assert frontier([{"seq_kv": 64, "status": "timeout"}], "seq_kv") == (None, 64, "timeout")
