"""Change points in a history: PELT (the `ruptures` library) on each series' log medians, with
a penalty learnt from that series' own noise, after the machine's run-to-run drift is divided
out.

- Drift: a shared VM runs every backend 10-30 % slower or faster from one run to the next.
  Each run's factor is the median, over the series it holds, of how far the series' log median
  sits from that series' own median; dividing it out keeps a step of one backend (most series
  did not move) and removes what moved them all. The factors are a series of their own, so a
  step of every backend at once is still found there ("every series").
- Noise: σ of a series is the robust spread of its successive differences (1.4826 MAD / √2),
  at least MIN_SIGMA; PELT's penalty per change point is PENALTY · σ² · ln(n) (a BIC-like
  penalty, in the series' own units), segments at least MIN_SEGMENT runs long.
- A step found is reported with the ratio of the segment medians around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnbench.errors import UsageError
from attnbench.history.store import Point, SeriesKey, series_key

MIN_RUNS = 8  # fewer points than this: no detection (said so)
MIN_SEGMENT = 3  # runs on each side of a step, at least
PENALTY = 10.0  # × σ² ln n per change point (2 would be BIC; drift leaves heavier tails: 10 keeps
#                 false steps near 0.5 % of series over 24 runs, benchmarks/history)
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


def steps_of(key: SeriesKey, seqs: list[int], labels: list[str], y: np.ndarray) -> list[Step]:
    """PELT's change points of one log series, with the penalty from its own noise."""
    if len(y) < MIN_RUNS:
        return []
    try:
        import ruptures
    except ImportError:
        raise UsageError("attnbench history needs the ruptures package: pip install "
                         "'attnbench[history]' (or pip install ruptures)") from None
    sigma = noise(y)
    algo = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(y.reshape(-1, 1))
    ends = algo.predict(pen=PENALTY * sigma * sigma * np.log(len(y)))
    out, start = [], 0
    for a, b in zip(ends[:-1], ends[1:], strict=True):
        ratio = float(np.exp(np.median(y[a:b]) - np.median(y[start:a])))
        out.append(Step(key, seqs[a], labels[a], ratio, sigma))
        start = a
    return out


def detect(points: list[Point], normalize: bool = True) -> tuple[list[Step], dict[int, float]]:
    """Every step of every series (and of the run factors, when normalizing) and the factors."""
    series = by_series(points)
    factors = run_factors(series) if normalize else {}
    found = []
    for key, pts in sorted(series.items()):
        y = np.log([p.median_ms / factors.get(p.seq, 1.0) for p in pts])
        found += steps_of(key, [p.seq for p in pts], [p.label for p in pts], y)
    if normalize and factors:
        seqs = sorted(factors)
        labels = {p.seq: p.label for p in points}
        found += steps_of(EVERY, seqs, [labels[s] for s in seqs],
                          np.log([factors[s] for s in seqs]))
    return sorted(found, key=lambda s: (s.seq, s.key)), factors
