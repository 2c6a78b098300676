"""One case of a bucket judged: who is left out and why, who ties with the fastest, the winner."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from attnbench.record import Status, error_ratio, failure_text, median_ms, peak_bytes
from attnbench.report.compare_verdict import DEFAULTS
from attnbench.report.significance import ALPHA, mann_whitney_p, ranges_apart, timing_samples

# a record with one of these anywhere in a bucket bars its backend from the whole bucket; oom
# and unsupported bar it from that case only (a size limit, not a wrong answer)
BUCKET_FAILURES = (Status.MISMATCH, Status.ERROR, Status.CRASHED, Status.TIMEOUT)


@dataclass(frozen=True)
class Options:
    """What narrows the choice: a memory budget, an accuracy bound and a tie-break order."""

    memory_budget: float | None = None  # bytes of peak memory a backend may use at a case
    max_error_over_bound: float | None = None  # worst error/bound a backend may have at a case
    prefer: tuple[str, ...] = ()  # on a tie, the first of these among the tied wins


@dataclass
class Exclusion:
    """A backend left out of a bucket (case_id None) or of one case, and why."""

    backend: str
    kind: str  # failing, unverified, unsupported, oom, untimed, memory, error
    reason: str
    case_id: str | None = None


@dataclass
class Point:
    """One case of a bucket: the winner, who ties with it, the margin to the next."""

    length: int
    case_id: str
    verdict: str  # clear, tie, sole (one eligible backend), none (no eligible backend)
    winner: str | None = None
    winner_ms: float | None = None
    tied: list[str] = field(default_factory=list)  # within noise of the fastest
    next: str | None = None  # the fastest backend outside the tie
    margin: float | None = None  # next's median over the winner's
    p_value: float | None = None  # Mann-Whitney, winner against next
    preferred: bool = False  # --prefer chose the winner among the tied
    ranking: list[list[Any]] = field(default_factory=list)  # [backend, median ms], fastest first
    excluded: list[Exclusion] = field(default_factory=list)


@dataclass
class Timed:
    """A candidate at one case: its median and raw samples (pooled over runs)."""

    backend: str
    median: float
    samples: list[float]
    record: dict[str, Any]


def bucket_exclusions(records: list[dict[str, Any]]) -> list[Exclusion]:
    """Backends with a failing or unverified record anywhere in the bucket, with the first."""
    out: dict[str, Exclusion] = {}
    counts: dict[str, int] = {}
    for rec in records:
        kind = _bucket_failure(rec)
        if kind is None:
            continue
        backend = str(rec["backend"])
        counts[backend] = counts.get(backend, 0) + 1
        if backend not in out:
            why = (failure_text(rec) or "no reason recorded") if kind == "failing" else (
                "ok but its agreement with the oracle was not passed")
            out[backend] = Exclusion(backend, kind, f"{rec['status']} at {rec.get('case_id')}: "
                                     f"{' '.join(why.split())[:160]}")
    for backend, n in counts.items():
        if n > 1:
            out[backend].reason += f" (and {n - 1} more record(s) not ok)"
    return list(out.values())


def _bucket_failure(rec: dict[str, Any]) -> str | None:
    status = rec.get("status")
    if status in BUCKET_FAILURES:
        return "failing"
    if status == Status.OK and (rec.get("agreement") or {}).get("passed") is not True:
        return "unverified"
    return None


def judge_point(records: list[dict[str, Any]], barred: set[str], options: Options,
                device: str) -> Point:
    """One case: rank the eligible backends, find who ties with the fastest, pick the winner."""
    first = records[0]
    point = Point(int(first.get("seq_kv") or 0), str(first.get("case_id")), "none")
    per_backend: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        per_backend.setdefault(str(rec["backend"]), []).append(rec)
    timed = []
    for backend, recs in sorted(per_backend.items()):
        if backend in barred:
            continue
        why = case_exclusion(backend, recs, options)
        if why:
            point.excluded.append(why)
        else:
            timed.append(timed_candidate(backend, recs))
    timed.sort(key=lambda t: t.median)
    point.ranking = [[t.backend, t.median] for t in timed]
    if timed:
        settle(point, timed, options, device)
    return point


def case_exclusion(backend: str, recs: list[dict[str, Any]], options: Options
                   ) -> Exclusion | None:
    """Why a backend cannot be recommended at this case (its records here, from one run or
    several), or None. The bucket-wide failures are judged before (bucket_exclusions)."""
    def out(kind: str, reason: str) -> Exclusion:
        return Exclusion(backend, kind, reason, str(recs[0].get("case_id")))

    ok = [r for r in recs if r.get("status") == Status.OK]
    if any(r.get("status") == Status.OOM for r in recs):
        return out("oom", "ran out of memory at this case")
    if not ok:
        reasons = [x for r in recs for x in r.get("reasons") or []]
        return out("unsupported", (reasons or ["unsupported"])[0][:160])
    if not timed_records(recs):
        return out("untimed", "not timed (a check run records agreement only)")
    return budget_exclusion(timed_records(recs), ok, options, out)


def timed_records(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ok records with a median: those a backend is timed, and its memory judged, on."""
    return [r for r in recs if r.get("status") == Status.OK and median_ms(r) is not None]


def budget_exclusion(timed: list[dict[str, Any]], ok: list[dict[str, Any]], options: Options,
                     out: Any) -> Exclusion | None:
    """--memory-budget (on the timed records: a check run measures no memory) and
    --max-error-over-bound (on every ok record): over them, or not recorded, excludes."""
    if options.memory_budget is not None:
        peaks = [peak_bytes(r) for r in timed]
        if any(p is None for p in peaks):
            return out("memory", "no peak memory recorded to hold to --memory-budget")
        if max(peaks) > options.memory_budget:  # type: ignore[type-var]
            return out("memory", f"peak memory {bytes_text(max(peaks))} over the budget "
                       f"{bytes_text(options.memory_budget)}")
    if options.max_error_over_bound is not None:
        errors = [error_ratio(r) for r in ok]
        if any(e is None for e in errors):
            return out("error", "no error/bound recorded to hold to --max-error-over-bound")
        if max(errors) > options.max_error_over_bound:  # type: ignore[type-var]
            return out("error", f"error/bound {max(errors):.3g} over "  # type: ignore[type-var]
                       f"--max-error-over-bound {options.max_error_over_bound:g}")
    return None


def timed_candidate(backend: str, recs: list[dict[str, Any]]) -> Timed:
    """A backend at one case: the median of its samples, pooled when several runs timed it."""
    timed = timed_records(recs)
    samples = [x for r in timed for x in timing_samples(r)]
    if len(timed) == 1 or not samples:
        median = median_ms(timed[0])
    else:
        median = statistics.median(samples)
    return Timed(backend, float(median or 0.0), samples, timed[0])


def clearly_slower(fast: Timed, slow: Timed, device: str) -> tuple[bool, float | None]:
    """Whether slow is slower than fast beyond noise, as compare judges a regression: the
    ratio over the device's threshold, the change over its floor, and significant (p < 0.05
    on the raw samples; without samples, p20-p80 ranges apart). Returns it and the p-value."""
    threshold, floor = DEFAULTS.get(device, DEFAULTS["cpu"])
    p = mann_whitney_p(fast.samples, slow.samples)
    significant = p is not None and p < ALPHA
    if not fast.samples and not slow.samples:
        significant = ranges_apart(fast.record, slow.record)
    big = slow.median > fast.median * (1 + threshold) and slow.median - fast.median > floor
    return big and significant, p


def settle(point: Point, timed: list[Timed], options: Options, device: str) -> None:
    """The winner (the fastest, or the first preferred among those tied with it) and the
    margin to the fastest backend outside the tie."""
    fastest = timed[0]
    tie = [fastest] + [t for t in timed[1:] if not clearly_slower(fastest, t, device)[0]]
    order = {name: i for i, name in enumerate(options.prefer)}
    winner = min(tie, key=lambda t: (order.get(t.backend, len(order)), t.median))
    point.winner, point.winner_ms = winner.backend, winner.median
    point.preferred = winner is not fastest
    point.tied = [t.backend for t in tie if t is not winner]
    rest = [t for t in timed if t not in tie]
    if rest:
        point.next = rest[0].backend
        point.margin = rest[0].median / winner.median if winner.median > 0 else None
        point.p_value = clearly_slower(winner, rest[0], device)[1]
    point.verdict = "sole" if len(timed) == 1 else "tie" if point.tied else "clear"


UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> float:
    """'8GiB', '512 MB', '1e9': a size in bytes; ValueError saying what is accepted."""
    raw = text.strip().lower()
    unit = raw.lstrip("0123456789.e+ ").strip() if raw[:1].isdigit() or raw[:1] == "." else raw
    number = raw[: len(raw) - len(unit)].strip() if unit else raw
    try:
        value = float(number) * UNITS[unit or "b"]
    except (KeyError, ValueError):
        raise ValueError(f"not a size: {text!r} (bytes, or a number with B, KB, MB, GB, TB, "
                         "KiB, MiB, GiB or TiB, e.g. 8GiB)") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"must be a positive finite size, got {text!r}")
    return value


def bytes_text(n: float) -> str:
    """1.5 GiB, 37 MiB, 512 B."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"
