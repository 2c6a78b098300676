"""Whether two timings differ: a Mann-Whitney U test on their samples, else their p20-p80 ranges."""

from __future__ import annotations

import math
from typing import Any

ALPHA = 0.05


def mann_whitney_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Mann-Whitney U p-value; scipy when importable, else the normal approximation."""
    if len(a) < 2 or len(b) < 2:
        return None
    try:
        from scipy.stats import mannwhitneyu
    except ImportError:
        return _mann_whitney_normal(a, b)
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def _mann_whitney_normal(a: list[float], b: list[float]) -> float:
    """U with mid-ranks for ties, normal approximation with tie and continuity corrections."""
    pooled = sorted((v, i) for i, v in enumerate(a + b))
    ranks = [0.0] * len(pooled)
    ties, i = 0.0, 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[pooled[k][1]] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    n1, n2 = len(a), len(b)
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(var)
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def timing_samples(rec: dict[str, Any]) -> list[float]:
    """The raw samples in ms; none when a stored list holds anything but finite numbers."""
    s = (rec.get("timing") or {}).get("samples_ms")
    ok = isinstance(s, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in s)
    return [float(x) for x in s] if ok else []


def ranges_apart(base: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when the p20-p80 ranges of the two timings do not overlap."""
    b, n = base.get("timing") or {}, new.get("timing") or {}
    try:
        return float(n["p20_ms"]) > float(b["p80_ms"]) or float(b["p20_ms"]) > float(n["p80_ms"])
    except (KeyError, TypeError, ValueError):
        return False
