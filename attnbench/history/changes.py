"""Change points in a history: PELT (the `ruptures` library) on each series' log medians, with
a penalty learnt from that series' own noise, after the machine's run-to-run drift is divided
out.

- Drift: a shared VM runs every backend 10-30 % slower or faster from one run to the next.
  Each run's factor is the median, over the series it holds, of how far the series' log median
  sits from that series' own median; dividing it out keeps a step of one backend (most series
  did not move) and removes what moved them all. The factors are a series of their own, so a
  step of every backend at once is still found there ("every series").
- Noise: σ of a series is the robust spread of its successive differences (1.4826 MAD / √2),
  at least MIN_SIGMA; PELT's penalty per change point is PENALTY · σ² · ln(n · m) for n runs
  and m series tested side by side (a BIC-like penalty in the series' own units, plus the
  term that keeps the false steps of the whole history, not of each series, rare: with m
  series each gets m times fewer), segments at least MIN_SEGMENT runs long.
- Backends: a regression of a backend usually moves all its cases, while each case's noise
  is its own; so each backend's cases together are a series too (per run, the mean of their
  log medians, each less its own median), whose noise averages down. `bisect` names the first
  step of such a series before any single case's (on the 24-run study of docs/history.md the
  single cases of a 0.3 ms kernel stepped falsely where the backends' series did not).
- A step found is reported with the ratio of the segment medians around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attnbench.errors import UsageError
from attnbench.history.store import Point, SeriesKey, series_key

MIN_RUNS = 8  # fewer points than this: no detection (said so)
MIN_SEGMENT = 3  # runs on each side of a step, at least
PENALTY = 10.0  # × σ² ln(n·m) per change point, n runs, m series (2 would be BIC; the drift
#                 leaves heavier tails: benchmarks/history/simulate.py, docs/history.md)
MIN_SIGMA = 0.005  # log units: 0.5 %, the floor of any series' noise
EVERY = ("every series", "", "", "", "")  # the key of the run factors' own series


@dataclass(frozen=True)
class Step:
    """A change point: the first run after it, and the ratio of the medians around it."""

    key: SeriesKey
    seq: int
    label: str
    ratio: float  # after / before (> 1: slower)
    sigma: float  # the series' noise, in log units


def by_series(points: list[Point]) -> dict[SeriesKey, list[Point]]:
    """The ok points of each series, in run order."""
    out: dict[SeriesKey, list[Point]] = {}
    for p in points:
        if p.status == "ok" and p.median_ms and p.median_ms > 0:
            out.setdefault(series_key(p), []).append(p)
    return out


def run_factors(series: dict[SeriesKey, list[Point]]) -> dict[int, float]:
    """seq -> the run's drift factor: the median over its series of (log median − that
    series' own median log), as a factor."""
    offsets: dict[int, list[float]] = {}
    for pts in series.values():
        logs = np.log([p.median_ms for p in pts])
        centre = float(np.median(logs))
        for p, y in zip(pts, logs, strict=True):
            offsets.setdefault(p.seq, []).append(float(y) - centre)
    return {seq: float(np.exp(np.median(v))) for seq, v in offsets.items()}


def noise(y: np.ndarray) -> float:
    """σ of a log series from its successive differences (robust to the steps themselves)."""
    if len(y) < 3:
        return MIN_SIGMA
    d = np.diff(y)
    mad = float(np.median(np.abs(d - np.median(d))))
    return max(MIN_SIGMA, 1.4826 * mad / np.sqrt(2))


def steps_of(key: SeriesKey, seqs: list[int], labels: list[str], y: np.ndarray,
             tested: int = 1, penalty: float = PENALTY) -> list[Step]:
    """PELT's change points of one log series, with the penalty from its own noise and the
    number of series tested beside it (tested)."""
    if len(y) < MIN_RUNS:
        return []
    try:
        import ruptures
    except ImportError:
        raise UsageError("attnbench history needs the ruptures package: pip install "
                         "'attnbench[history]' (or pip install ruptures)") from None
    sigma = noise(y)
    algo = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(y.reshape(-1, 1))
    ends = algo.predict(pen=penalty * sigma * sigma * np.log(len(y) * max(1, tested)))
    out, start = [], 0
    for a, b in zip(ends[:-1], ends[1:], strict=True):
        ratio = float(np.exp(np.median(y[a:b]) - np.median(y[start:a])))
        out.append(Step(key, seqs[a], labels[a], ratio, sigma))
        start = a
    return out


ALL_CASES = "all its cases"  # the case field of a backend's own series


def backend_key(key: SeriesKey) -> SeriesKey:
    """The key of the series of a backend's cases together (per device and machine)."""
    return ("", ALL_CASES, key[2], key[3], key[4])


def is_backend_level(key: SeriesKey) -> bool:
    return key[1] == ALL_CASES


def backend_series(logs: dict[SeriesKey, tuple[list[Point], np.ndarray]]
                   ) -> dict[SeriesKey, tuple[list[int], list[str], np.ndarray]]:
    """Per backend, the mean over its cases of each case's log median less that case's own
    median, run by run: a regression of the backend moves them all, the noise of each case
    averages down (by √cases where they are independent)."""
    runs: dict[SeriesKey, dict[int, list[float]]] = {}
    labels: dict[int, str] = {}
    for key, (pts, y) in logs.items():
        centred = y - np.median(y)
        for p, v in zip(pts, centred, strict=True):
            runs.setdefault(backend_key(key), {}).setdefault(p.seq, []).append(float(v))
            labels[p.seq] = p.label
    out = {}
    for key, per_run in runs.items():
        if len(logs_of(logs, key)) > 1:  # one case: its own series says it all
            seqs = sorted(per_run)
            out[key] = (seqs, [labels[s] for s in seqs],
                        np.array([np.mean(per_run[s]) for s in seqs]))
    return out


def logs_of(logs: dict[SeriesKey, Any], key: SeriesKey) -> list[SeriesKey]:
    return [k for k in logs if backend_key(k) == key]


def detect(points: list[Point], normalize: bool = True, penalty: float | None = None
           ) -> tuple[list[Step], dict[int, float]]:
    """Every step of every series, of each backend's cases together, and (when normalizing)
    of the run factors; and the factors."""
    series = by_series(points)
    factors = run_factors(series) if normalize else {}
    logs = {key: (pts, np.log([p.median_ms / factors.get(p.seq, 1.0) for p in pts]))
            for key, pts in sorted(series.items())}
    pen = PENALTY if penalty is None else penalty
    found = []
    for key, (pts, y) in logs.items():
        found += steps_of(key, [p.seq for p in pts], [p.label for p in pts], y, len(logs), pen)
    backends = backend_series(logs)
    for key, (seqs, labels, y) in sorted(backends.items()):
        found += steps_of(key, seqs, labels, y, len(backends), pen)
    if normalize and factors:
        seqs = sorted(factors)
        names = {p.seq: p.label for p in points}
        found += steps_of(EVERY, seqs, [names[s] for s in seqs],
                          np.log([factors[s] for s in seqs]), 1, pen)
    return sorted(found, key=lambda s: (s.seq, s.key)), factors
