"""Two runs' records paired by key, and the coverage the new run lost against the base."""

from __future__ import annotations

from attnbench.record import record_key
from attnbench.report.compare_verdict import Row, compare_pair
from attnbench.report.groups import Run


def compare_runs(base: Run, new: Run, threshold: float | None = None,
                 min_abs_ms: float | None = None) -> tuple[list[Row], list[tuple]]:
    """Rows for every key in both runs, and the keys only the base run has."""
    new_by_key = {record_key(r): r for r in new.records}
    base_by_key = {record_key(r): r for r in base.records}
    rows = [compare_pair(base_by_key[k], new_by_key[k], threshold, min_abs_ms)
            for k in base_by_key if k in new_by_key]
    missing = [k for k in base_by_key if k not in new_by_key]
    return rows, missing


def coverage_losses(base: Run, new: Run, missing: list[tuple],
                    rows: list[Row] | None = None) -> list[str]:
    """What the new run lost against the base: backends, cases, timings, an unfinished run."""
    out = []
    if new.meta.get("finished") is not True:
        why = new.meta.get("stopped") or "its run.json does not say finished"
        out.append(f"the new run {new.path} did not finish ({why})")
    new_backends = {r["backend"] for r in new.records}
    per_backend: dict[str, int] = {}
    for key in missing:
        per_backend[key[3]] = per_backend.get(key[3], 0) + 1
    for backend, n in per_backend.items():
        what = "has no records" if backend not in new_backends else f"lacks {n} case(s)"
        out.append(f"backend {backend} {what} in the new run ({n} of the base run's missing)")
    return out + timing_losses(rows or [])


def timing_losses(rows: list[Row]) -> list[str]:
    """Backends whose cases the base run timed and the new run did not (an untimed `check`
    run, a record without samples): no timing verdict can be made for them."""
    lost: dict[str, int] = {}
    for r in rows:
        if r.verdict == "untimed" and r.base_ms and not r.new_ms:
            lost[r.key[3]] = lost.get(r.key[3], 0) + 1
    return [f"backend {b} lost the timing of {n} case(s): the base run timed them, the new "
            "run did not (an untimed check run?)" for b, n in lost.items()]
