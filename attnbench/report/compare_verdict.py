"""The verdict on one case of two runs (regression, faster, new failure), busy runs discounted."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from attnbench.measure.busy import run_verdict
from attnbench.record import NOT_OK, Status, median_ms, record_key
from attnbench.report.groups import Run
from attnbench.report.significance import ALPHA, mann_whitney_p, ranges_apart, timing_samples

DEFAULTS = {"cpu": (0.10, 0.050), "cuda": (0.05, 0.010)}  # (threshold, min_abs ms) per device


@dataclass
class Row:
    """One case and backend present in both runs."""

    key: tuple[str, str, str, str]
    base_status: str
    new_status: str
    base_ms: float | None
    new_ms: float | None
    p_value: float | None
    verdict: str  # faster, slower, same, regression, new failure, fixed, untimed
    gated: bool
    unreliable: bool = False  # a timing verdict between runs either of which was busy

    @property
    def ratio(self) -> float | None:
        return self.new_ms / self.base_ms if self.base_ms and self.new_ms else None


def _newly_failing(base_status: str, new_status: str) -> bool:
    """A failure the base did not have; a wrong answer is new unless the base was wrong too."""
    if new_status == Status.MISMATCH:
        return base_status != Status.MISMATCH
    return new_status in NOT_OK and base_status not in NOT_OK


def compare_pair(base: dict[str, Any], new: dict[str, Any], threshold: float | None,
                 min_abs_ms: float | None) -> Row:
    """Verdict for one case: a gated regression needs ratio, absolute change and significance."""
    dev_thr, dev_abs = DEFAULTS.get(str(new.get("device")), DEFAULTS["cpu"])
    thr = dev_thr if threshold is None else threshold
    floor = dev_abs if min_abs_ms is None else min_abs_ms
    bs, ns = str(base.get("status")), str(new.get("status"))
    b_ms, n_ms = median_ms(base), median_ms(new)
    row = Row(record_key(new), bs, ns, b_ms, n_ms, None, "same", False)
    if _newly_failing(bs, ns):
        row.verdict, row.gated = "new failure", True
        return row
    if bs in NOT_OK and ns == Status.OK:
        row.verdict = "fixed"
        return row
    if bs == Status.OK and ns == Status.UNSUPPORTED:
        row.verdict, row.gated = "now unsupported", True  # lost coverage is not a pass
        return row
    if not b_ms or not n_ms:
        row.verdict = "untimed"
        return row
    row.p_value = mann_whitney_p(timing_samples(base), timing_samples(new))
    significant = row.p_value is not None and row.p_value < ALPHA
    if not timing_samples(base) and not timing_samples(new):  # no raw samples stored:
        significant = ranges_apart(base, new)  # the p20-p80 ranges must not overlap
    big = abs(n_ms - b_ms) > floor
    if n_ms / b_ms > 1 + thr and big:
        row.verdict = "regression" if significant else "slower"
        row.gated = significant
    elif b_ms / n_ms > 1 + thr and big and significant:
        row.verdict = "faster"
    return row


def geomean_by_backend(rows: list[Row]) -> dict[str, tuple[float, int]]:
    """Geometric mean of new/base median ratios per backend, with the number of cases."""
    logs: dict[str, list[float]] = {}
    for r in rows:
        if r.ratio:
            logs.setdefault(r.key[3], []).append(math.log(r.ratio))
    return {b: (math.exp(sum(v) / len(v)), len(v)) for b, v in sorted(logs.items())}


def busy_verdict(run: Run) -> dict[str, Any] | None:
    """A run's busy-machine verdict (its readings judged by today's rules, else run.json
    `busy`), when it was busy."""
    verdict = run_verdict(run.meta)
    return verdict if isinstance(verdict, dict) and verdict.get("busy") is True else None


TIMING_VERDICTS = ("regression", "slower", "faster")


def discount_busy(rows: list[Row], base: Run, new: Run, strict: bool) -> list[Row]:
    """When either run was busy, timing verdicts are unreliable: listed, and (unless strict)
    not gated. Correctness verdicts (new failure, now unsupported) stay gated. Returns the
    timing regressions that are not gated because of it."""
    if busy_verdict(base) is None and busy_verdict(new) is None:
        return []
    spared = []
    for r in rows:
        if r.verdict in TIMING_VERDICTS:
            r.unreliable = True
            if r.gated and not strict:
                r.gated = False
                spared.append(r)
    return spared
