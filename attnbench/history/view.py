"""`attnbench history show | bisect`: the series and their steps as a table, plots of each
series' medians over the runs (IQR band, steps marked), and the first label of a step."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from attnbench.history.changes import EVERY, MIN_RUNS, Step, by_series, is_backend_level
from attnbench.history.store import Point, SeriesKey
from attnbench.sanitize import plain

MAX_PLOTS = 40


def series_name(key: SeriesKey) -> str:
    scenario, case, backend, device, _machine = key
    if key == EVERY:
        return "every series (the run factors)"
    if is_backend_level(key):
        return f"{backend}, all its cases ({device})"
    return f"{backend} {case} ({scenario}, {device})"


def step_text(s: Step) -> str:
    way = "slower" if s.ratio > 1 else "faster"
    return f"at {s.label}: ×{s.ratio:.3f} ({way}; noise {100 * s.sigma:.2g} %)"


def table_rows(points: list[Point], steps: list[Step]) -> list[list[str]]:
    """One row per series: its name, runs, last median and its steps."""
    found: dict[SeriesKey, list[Step]] = {}
    for s in steps:
        found.setdefault(s.key, []).append(s)
    rows = []
    for key, pts in sorted(by_series(points).items()):
        mine = "; ".join(step_text(s) for s in found.get(key, []))
        short = f"too few runs (< {MIN_RUNS})" if len(pts) < MIN_RUNS else "none"
        rows.append([series_name(key), str(len(pts)), f"{pts[-1].median_ms:.4g}",
                     mine or short])
    for key in sorted(k for k in found if is_backend_level(k)):
        rows.append([series_name(key), "", "", "; ".join(step_text(s) for s in found[key])])
    if EVERY in found:
        rows.append([series_name(EVERY), "", "", "; ".join(step_text(s) for s in found[EVERY])])
    return rows


def bisect_steps(steps: list[Step], raw: bool) -> list[Step]:
    """The steps bisect looks at: a backend's cases together first, then single cases, then
    (with nothing else, or --raw) the run factors."""
    backends = [s for s in steps if is_backend_level(s.key)]
    cases = [s for s in steps if s.key != EVERY and not is_backend_level(s.key)]
    return backends or cases or (steps if raw or not cases else [])


def first_step(steps: list[Step]) -> str:
    """`bisect`'s answer: the first label where a step happened, and which series."""
    if not steps:
        return "no step found in the history"
    first = min(s.seq for s in steps)
    at = [s for s in steps if s.seq == first]
    named = "; ".join(f"{series_name(s.key)} ×{s.ratio:.3f}" for s in at[:5])
    more = f" (and {len(at) - 5} more series)" if len(at) > 5 else ""
    return f"first step at {at[0].label}: {named}{more}"


def changed_versions(versions: dict[int, dict[str, Any]], seq: int) -> str:
    """What library versions differ between the run before a step and the run at it."""
    before, at = versions.get(seq - 1) or {}, versions.get(seq) or {}
    diff = [f"{k} {before.get(k)} -> {at.get(k)}" for k in sorted(set(before) | set(at))
            if before.get(k) != at.get(k)]
    return ("versions changed there: " + ", ".join(diff)) if diff else (
        "no library version changed there (the step is in the code or the machine)")


def save_plots(points: list[Point], steps: list[Step], factors: dict[int, float], out: Path,
               every: bool = False) -> list[Path]:
    """A PNG per series with a step (every series with every=True), at most MAX_PLOTS."""
    from matplotlib.figure import Figure

    found: dict[SeriesKey, list[Step]] = {}
    for s in steps:
        found.setdefault(s.key, []).append(s)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for key, pts in sorted(by_series(points).items()):
        if (not every and key not in found) or len(made) >= MAX_PLOTS:
            continue
        fig = Figure(figsize=(7.5, 3.6), layout="constrained")
        _draw(fig.add_subplot(), pts, found.get(key, []), factors)
        fig.suptitle(plain(series_name(key))[:120], fontsize=9)
        path = out / (re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(key[:3]))[:150] + ".png")
        fig.savefig(path, dpi=100)
        made.append(path)
    return made


def _draw(ax: Any, pts: list[Point], steps: list[Step], factors: dict[int, float]) -> None:
    x = np.arange(len(pts))
    med = np.array([p.median_ms for p in pts])
    lo = np.array([p.q25_ms if p.q25_ms is not None else p.median_ms for p in pts])
    hi = np.array([p.q75_ms if p.q75_ms is not None else p.median_ms for p in pts])
    ax.fill_between(x, lo, hi, alpha=0.25, lw=0, label="IQR of the run's samples")
    ax.plot(x, med, "o-", ms=3, label="median")
    if factors:
        ax.plot(x, med / np.array([factors.get(p.seq, 1.0) for p in pts]), "--", lw=1,
                label="median / the run's drift factor")
    index = {p.seq: i for i, p in enumerate(pts)}
    for s in steps:
        if s.seq in index:
            ax.axvline(index[s.seq] - 0.5, color="red", lw=1.2)
            ax.text(index[s.seq] - 0.4, ax.get_ylim()[1], f"×{s.ratio:.3f}", color="red",
                    va="top", fontsize=8)
    ticks = x[:: max(1, len(x) // 12)]
    ax.set_xticks(ticks, [plain(pts[i].label)[:14] for i in ticks], rotation=45, fontsize=7,
                  ha="right")
    ax.set_ylabel("median ms")
    ax.legend(fontsize=7, loc="best")
    ax.grid(True, alpha=0.3)
