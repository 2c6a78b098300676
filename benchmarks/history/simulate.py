"""How the change-point detector trades false steps for missed ones, on simulated histories.

Each history: RUNS runs of SERIES series; every run shares a lognormal drift (σ = DRIFT, as
this VM's runs differ 10-30 %), every point has its own lognormal noise (σ = OWN), and series 0
steps by STEP from run STEP_AT on. For each penalty and own noise the table gives the false
steps per unchanged series and the share of histories whose planted step was not found at its
run. `attnbench history` uses PENALTY (attnbench/history/changes.py), the penalty per step
being PENALTY · σ² · ln(runs × series), here 12 series.

    .venv/bin/python benchmarks/history/simulate.py [HISTORIES=100]
"""

from __future__ import annotations

import sys

import numpy as np

from attnbench.history import changes
from attnbench.history.store import Point

RUNS, SERIES, STEP_AT, STEP, DRIFT = 24, 12, 13, 1.15, 0.15


def history(rng: np.random.Generator, own: float) -> list[Point]:
    shared = np.exp(rng.normal(0, DRIFT, RUNS))
    out = []
    for s in range(SERIES):
        for r in range(RUNS):
            slow = STEP if s == 0 and r + 1 >= STEP_AT else 1.0
            med = (0.5 + s) * shared[r] * slow * np.exp(rng.normal(0, own))
            out.append(Point(f"run{r}", r + 1, f"r{r + 1:02d}", "sim", f"case{s}", f"b{s}",
                             "cpu", "m", "ok", med, med, med, 1))
    return out


def main(histories: int) -> None:
    print(f"{histories} histories of {RUNS} runs x {SERIES} series, drift σ {DRIFT}, "
          f"step ×{STEP} at run {STEP_AT} in one series")
    print("own noise  penalty  false steps per unchanged series  planted step missed")
    for own in (0.02, 0.03, 0.05):
        for pen in (6.0, 8.0, 10.0, 12.0, 16.0):
            changes.PENALTY = pen
            false = missed = 0
            for seed in range(histories):
                steps, _ = changes.detect(history(np.random.default_rng(seed), own))
                found = {(s.key[2], s.label) for s in steps if s.key != changes.EVERY}
                missed += ("b0", f"r{STEP_AT:02d}") not in found
                false += sum(1 for b, _ in found if b != "b0")
            print(f"{own:9.2f}  {pen:7.0f}  {false / (histories * (SERIES - 1)):32.4f}  "
                  f"{missed / histories:19.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
