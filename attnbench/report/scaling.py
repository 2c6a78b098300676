"""Scaling analysis: fitted exponents of time and memory in sequence length, and frontiers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attnbench.record import STOPPED, VERIFIED, Status, median_ms, peak_bytes
from attnbench.report.groups import Group

MIN_POINTS = 3
MIN_R2 = 0.95


@dataclass
class Fit:
    """y ≈ c · x^exponent fitted by least squares on log-log axes."""

    exponent: float | None
    r2: float | None
    n: int
    warning: str = ""

    def text(self) -> str:
        if self.exponent is None:
            return "–"
        r2 = f"{self.r2:.3f}" if self.r2 is not None else "n/a"
        return f"{self.exponent:.2f} (R² {r2}, n={self.n})"


def fit_exponent(xs: list[float], ys: list[float]) -> Fit:
    """Log-log least squares of ys on xs; warns on fewer than 3 points or R² < 0.95."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    n, distinct = len(pts), len({p[0] for p in pts})
    if distinct < 2:
        return Fit(None, None, n, f"cannot fit: {distinct} distinct size(s)")
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pts)
    slope = sxy / sxx
    ss_res = sum((p[1] - my - slope * (p[0] - mx)) ** 2 for p in pts)
    ss_tot = sum((p[1] - my) ** 2 for p in pts)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    warning = ""
    if n < MIN_POINTS:
        warning = f"only {n} points: the exponent is a slope between two sizes"
    elif r2 < MIN_R2:
        warning = f"poor fit (R² {r2:.2f} < {MIN_R2}): not a single power law"
    return Fit(slope, r2, n, warning)


@dataclass
class Scaling:
    """One (group, backend, variant): exponents of time and memory, and how far it got."""

    scenario: str
    device: str
    run: str
    backend: str
    variant: str
    axis: str
    time: Fit
    memory: Fit
    reached: int | None
    stopped_at: int | None
    stop_status: str | None


def _points(recs: list[dict[str, Any]], axis: str, value: Callable[[dict], float | None]) -> Fit:
    pts = [(float(r[axis]), value(r)) for r in recs if r.get("status") == Status.OK]
    pts = [(x, y) for x, y in pts if y is not None]
    return fit_exponent([p[0] for p in pts], [p[1] for p in pts])


def frontier(recs: list[dict[str, Any]], axis: str) -> tuple[int | None, int | None, str | None]:
    """Largest size that ran ok, and the smallest size above it that stopped (oom, timeout...)."""
    ok = [int(r[axis]) for r in recs if r.get("status") in VERIFIED]
    reached = max(ok) if ok else None
    stops = sorted((int(r[axis]), r["status"]) for r in recs if r.get("status") in STOPPED
                   and (reached is None or int(r[axis]) > reached))
    if not stops:
        return reached, None, None
    return reached, stops[0][0], stops[0][1]


def analyse(groups: list[Group]) -> list[Scaling]:
    """Scaling rows for every backend and variant of every group (unsupported ones skipped)."""
    rows = []
    for g in groups:
        split: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in g.records:
            split.setdefault((r["backend"], g.variant(r)), []).append(r)
        for (backend, variant), recs in sorted(split.items()):
            if all(r.get("status") == Status.UNSUPPORTED for r in recs):
                continue
            reached, stopped, status = frontier(recs, g.axis)
            rows.append(Scaling(
                g.scenario, g.device, g.run.label, backend, variant, g.axis,
                _points(recs, g.axis, median_ms), _points(recs, g.axis, peak_bytes),
                reached, stopped, status))
    return rows
