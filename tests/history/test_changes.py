"""Change points: a planted step in one series among many is found at its run, while a shared
run-to-run drift as large as this VM's (lognormal, 15 % per run) and each series' own noise
raise none elsewhere; the drift alone is found as a step of every series only when it steps."""

from __future__ import annotations

import numpy as np

from attnbench.history.changes import EVERY, detect, noise
from attnbench.history.store import Point


def _points(rng: np.random.Generator, runs: int = 24, series: int = 12, step_at: int = 13,
            step: float = 1.15, drift: float = 0.15, own: float = 0.02,
            machine_step: float = 1.0) -> list[Point]:
    shared = np.exp(rng.normal(0, drift, runs)) * np.where(
        np.arange(1, runs + 1) >= step_at, machine_step, 1.0)
    out = []
    for s in range(series):
        base = 0.5 + s
        for r in range(runs):
            slow = step if (s == 0 and r + 1 >= step_at) else 1.0
            med = base * shared[r] * slow * np.exp(rng.normal(0, own))
            out.append(Point(f"run{r}", r + 1, f"commit-{r + 1:02d}", "s", f"case{s}",
                             "planted" if s == 0 else f"b{s}", "cpu", "m", "ok", med, med * 0.98,
                             med * 1.02, 50))
    return out


SEEDS = range(40)


def _found(steps):
    return [(s.key[2], s.label) for s in steps if s.key != EVERY]


def test_a_planted_step_is_found_at_its_run_and_false_steps_are_rare():
    """Over 40 simulated histories (24 runs, 12 series, 15 % drift per run, 2 % own noise):
    the 15 % step is found at its run every time with its ratio, and the 11 unchanged series
    raise at most 2 % false steps between them (the penalty's design point is ~0.5 %)."""
    false = 0
    for seed in SEEDS:
        steps, factors = detect(_points(np.random.default_rng(seed)))
        assert len(factors) == 24
        found = _found(steps)
        assert ("planted", "commit-13") in found, (seed, found)
        (planted,) = [s for s in steps if s.key[2] == "planted" and s.label == "commit-13"]
        assert 1.10 < planted.ratio < 1.21, (seed, planted)
        false += sum(1 for f in found if f != ("planted", "commit-13"))
    assert false <= 0.02 * 11 * len(SEEDS), false


def test_without_a_step_false_steps_are_rare_and_drift_is_not_a_step():
    false = every = 0
    for seed in SEEDS:
        steps, _ = detect(_points(np.random.default_rng(100 + seed), step=1.0))
        false += len(_found(steps))
        every += sum(1 for s in steps if s.key == EVERY)
    assert false <= 0.02 * 12 * len(SEEDS), false
    assert every <= 0.05 * len(SEEDS), every


def test_a_step_of_every_series_is_the_run_factors_step():
    steps, _ = detect(_points(np.random.default_rng(7), step=1.0, drift=0.03,
                              machine_step=1.3))
    assert [(s.key, s.label) for s in steps] == [(EVERY, "commit-13")]


def test_the_raw_series_sees_the_machine_step_everywhere():
    steps, _ = detect(_points(np.random.default_rng(7), step=1.0, drift=0.03,
                              machine_step=1.3), normalize=False)
    assert len({s.key for s in steps}) == 12 and {s.label for s in steps} == {"commit-13"}


def test_noise_is_robust_to_the_step_itself():
    y = np.r_[np.zeros(12), np.full(12, 0.5)] + np.random.default_rng(0).normal(0, 0.02, 24)
    assert 0.01 < noise(y) < 0.04  # the 0.5 jump is one difference of 23: not the noise


def test_a_backends_cases_together_find_a_step_their_noise_hides_one_by_one():
    """Four backends of three cases, each case's own noise 4 % (as small kernels on this VM):
    the planted backend's three cases stepping 15 % together are found as its series' step at
    the right run in most histories, more often than one case finds it, and bisect names that
    first."""
    from attnbench.history.changes import is_backend_level
    from attnbench.history.view import bisect_steps, first_step

    hits = false = case_hits = 0
    for seed in range(20):
        rng = np.random.default_rng(500 + seed)
        shared = np.exp(rng.normal(0, 0.15, 24))
        pts = []
        for b in range(4):
            for c in range(3):
                for r in range(24):
                    slow = 1.15 if b == 0 and r + 1 >= 13 else 1.0
                    med = (1 + b + c / 3) * shared[r] * slow * np.exp(rng.normal(0, 0.04))
                    pts.append(Point(f"run{r}", r + 1, f"commit-{r + 1:02d}", "s", f"case{c}",
                                     "planted" if b == 0 else f"b{b}", "cpu", "m", "ok", med,
                                     med, med, 50))
        steps, _ = detect(pts)
        backend_steps = [(s.key[2], s.label) for s in steps if is_backend_level(s.key)]
        hits += ("planted", "commit-13") in backend_steps
        case_hits += sum(1 for s in steps if s.key[2] == "planted" and s.label == "commit-13"
                         and not is_backend_level(s.key)) / 3
        false += sum(1 for name, _ in backend_steps if name != "planted")
        if ("planted", "commit-13") in backend_steps and backend_steps[0][0] == "planted":
            assert first_step(bisect_steps(steps, False)).startswith(
                "first step at commit-13: planted, all its cases")
    # measured over 40 such histories: 38 at the exact run (40 within one run), 3 false steps
    # over 120 unchanged backend series; a single case found it at the exact run 10 times
    assert hits >= 17 and false <= 3 and case_hits < hits / 2, (hits, false, case_hits)
