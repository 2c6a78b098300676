"""`attnbench recommend`: per bucket of cases, the fastest backend that agrees with the oracle."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from attnbench.record import Status, error_ratio, failure_text, median_ms, peak_bytes
from attnbench.report.compare import (
    ALPHA,
    DEFAULTS,
    mann_whitney_p,
    ranges_apart,
    timing_samples,
)
from attnbench.report.groups import Run, variant_label, variant_value

DECODE_MAX_Q = 16  # a query length up to this (and under the key length) is decode
# a record with one of these anywhere in a bucket bars its backend from the whole bucket; oom
# and unsupported bar it from that case only (a size limit, not a wrong answer)
BUCKET_FAILURES = (Status.MISMATCH, Status.ERROR, Status.CRASHED, Status.TIMEOUT)
LABELLED_VARIANTS = ("window", "layout", "alibi", "bias", "softcap")
LENGTH_LISTS = {"q_lens": "ragged q", "kv_lens": "ragged kv", "doc_lens": "documents"}
POOLING = ("records of runs made on the same machine (device type and GPU or CPU model) are "
           "pooled; a case a backend ran in several of them is judged on all its records "
           "(any failure excludes it) and timed on their samples together; runs on other "
           "machines are bucketed apart")


@dataclass(frozen=True)
class Options:
    """What narrows the choice: a memory budget, an accuracy bound and a tie-break order."""

    memory_budget: float | None = None  # bytes of peak memory a backend may use at a case
    max_error_over_bound: float | None = None  # worst error/bound a backend may have at a case
    prefer: tuple[str, ...] = ()  # on a tie, the first of these among the tied wins


@dataclass(frozen=True)
class BucketKey:
    """What a recommendation holds for: machine, dtype, pass, variant and shape but length."""

    machine: str
    dtype: str
    mode: str
    variant: str
    head_dim: int
    head_dim_v: int | None
    heads_q: int
    heads_kv: int
    batch: int
    seq_q: int | None  # None: the query length is the key length (self-attention)
    phase: str  # prefill or decode

    @property
    def label(self) -> str:
        dv = f" dv{self.head_dim_v}" if self.head_dim_v is not None else ""
        q = "q=k" if self.seq_q is None else f"q{self.seq_q}"
        return (f"{self.machine} {self.dtype} {self.mode} {self.variant} d{self.head_dim}{dv} "
                f"h{self.heads_q}:{self.heads_kv} b{self.batch} {self.phase} {q}")


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
class Range:
    """Consecutive lengths of a bucket with the same winner."""

    start: int
    end: int
    winner: str | None
    tied: list[str] = field(default_factory=list)


@dataclass
class Crossover:
    """Where the winner changes: after one length, by the next."""

    after: int
    before: int
    old: str | None
    new: str | None


@dataclass
class Bucket:
    """Every case of one key, judged length by length."""

    key: BucketKey
    runs: list[str]
    points: list[Point]
    ranges: list[Range]
    crossovers: list[Crossover]
    excluded: list[Exclusion]  # from every case of the bucket

    @property
    def lengths(self) -> tuple[int, int]:
        return self.points[0].length, self.points[-1].length


@dataclass
class Recommendation:
    """What `attnbench recommend` answers: the runs read, the options and every bucket."""

    runs: list[dict[str, str]]
    options: Options
    buckets: list[Bucket]
    pooling: str = POOLING


@dataclass
class Timed:
    """A candidate at one case: its median and raw samples (pooled over runs)."""

    backend: str
    median: float
    samples: list[float]
    record: dict[str, Any]


def recommend(runs: list[Run], options: Options = Options()) -> Recommendation:
    """Bucket every record of the runs and judge each bucket."""
    entries: dict[BucketKey, list[tuple[str, dict[str, Any]]]] = {}
    for run in runs:
        for rec in run.records:
            entries.setdefault(bucket_key(run, rec), []).append((run.label, rec))
    buckets = [judge_bucket(key, entries[key], options)
               for key in sorted(entries, key=_bucket_order)]
    described = [{"run_id": str(r.meta.get("run_id") or r.path.name), "label": r.label,
                  "path": str(r.path)} for r in runs]
    return Recommendation(described, options, buckets)


def _bucket_order(key: BucketKey) -> tuple[Any, ...]:
    return (key.machine, key.dtype, key.mode, key.phase, key.variant, key.head_dim,
            key.head_dim_v or 0, key.heads_q // max(key.heads_kv, 1), key.heads_q, key.batch,
            key.seq_q or 0)


def machine(run: Run, rec: dict[str, Any]) -> str:
    """The record's device with the GPU (cuda) or CPU model and cores it was measured on:
    a Ray node's when the record names one, else the run's environment."""
    device = str(rec.get("device", "?"))
    node = rec.get("node") if isinstance(rec.get("node"), dict) else {}
    env = run.environment
    if device == "cuda":
        gpu = env.get("gpu") if isinstance(env.get("gpu"), dict) else {}
        model = node.get("gpu") or gpu.get("name")
    else:
        model = node.get("cpu") or env.get("cpu")
        cores = node.get("cores") if node.get("cpu") else env.get("cores")
        model = f"{model}, {cores} cores" if model and cores else model
    return f"{device} ({model})" if isinstance(model, str) and model else device


def bucket_key(run: Run, rec: dict[str, Any]) -> BucketKey:
    seq_q, seq_kv = int(rec.get("seq_q") or 0), int(rec.get("seq_kv") or 0)
    decode = seq_q <= DECODE_MAX_Q and seq_q < seq_kv
    return BucketKey(
        machine(run, rec), str(rec.get("dtype", "?")), str(rec.get("mode", "fwd")),
        variant(rec), int(rec.get("head_dim") or 0), rec.get("head_dim_v"),
        int(rec.get("heads_q") or 0), int(rec.get("heads_kv") or 0), int(rec.get("batch") or 0),
        None if seq_q == seq_kv else seq_q, "decode" if decode else "prefill")


def variant(rec: dict[str, Any]) -> str:
    """'causal', 'none win 128:0 alibi', 'causal ragged kv paged 16': mask and variants. Length
    lists are named by kind, not value: they follow the sequence length in a sweep."""
    parts = [str(rec.get("mask", "none"))]
    parts += [variant_label(f, variant_value(f, rec, "seq_kv")) for f in LABELLED_VARIANTS]
    parts += [name for f, name in LENGTH_LISTS.items() if rec.get(f) is not None]
    if rec.get("scale") is not None:
        parts.append(f"s={rec['scale']:g}")
    return " ".join(p for p in parts if p)


def judge_bucket(key: BucketKey, entries: list[tuple[str, dict[str, Any]]],
                 options: Options) -> Bucket:
    records = [rec for _, rec in entries]
    barred = bucket_exclusions(records)
    by_case: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_case.setdefault(str(rec.get("case_id")), []).append(rec)
    cases = sorted(by_case, key=lambda c: (int(by_case[c][0].get("seq_kv") or 0), c))
    device = key.machine.split(" ")[0]
    points = [judge_point(by_case[c], {e.backend for e in barred}, options, device)
              for c in cases]
    ranges = winner_ranges(points, options.prefer)
    runs = list(dict.fromkeys(label for label, _ in entries))
    return Bucket(key, runs, points, ranges, crossovers(ranges), barred)


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
    """Why a backend cannot be recommended at this case (its records here), or None."""
    def out(kind: str, reason: str) -> Exclusion:
        return Exclusion(backend, kind, reason, str(recs[0].get("case_id")))

    statuses = {str(r.get("status")) for r in recs}
    if Status.UNSUPPORTED in statuses:
        reasons = [x for r in recs for x in r.get("reasons") or []]
        return out("unsupported", (reasons or ["unsupported"])[0][:160])
    if Status.OOM in statuses:
        return out("oom", "ran out of memory at this case")
    if any(median_ms(r) is None for r in recs):
        return out("untimed", "not timed (a check run records agreement only)")
    return budget_exclusion(recs, options, out)


def budget_exclusion(recs: list[dict[str, Any]], options: Options, out: Any
                     ) -> Exclusion | None:
    """--memory-budget and --max-error-over-bound: over them, or not recorded, excludes."""
    if options.memory_budget is not None:
        peaks = [peak_bytes(r) for r in recs]
        if any(p is None for p in peaks):
            return out("memory", "no peak memory recorded to hold to --memory-budget")
        if max(peaks) > options.memory_budget:  # type: ignore[type-var]
            return out("memory", f"peak memory {bytes_text(max(peaks))} over the budget "
                       f"{bytes_text(options.memory_budget)}")
    if options.max_error_over_bound is not None:
        errors = [error_ratio(r) for r in recs]
        if any(e is None for e in errors):
            return out("error", "no error/bound recorded to hold to --max-error-over-bound")
        if max(errors) > options.max_error_over_bound:  # type: ignore[type-var]
            return out("error", f"error/bound {max(errors):.3g} over "  # type: ignore[type-var]
                       f"--max-error-over-bound {options.max_error_over_bound:g}")
    return None


def timed_candidate(backend: str, recs: list[dict[str, Any]]) -> Timed:
    samples = [x for r in recs for x in timing_samples(r)]
    if len(recs) == 1 or not samples:
        median = median_ms(recs[0])
    else:
        median = statistics.median(samples)
    return Timed(backend, float(median or 0.0), samples, recs[0])


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


def winner_ranges(points: list[Point], prefer: tuple[str, ...] = ()) -> list[Range]:
    """Consecutive points merged while some backend wins or ties with the winner at each of
    them (two names of one kernel make no crossover); that backend is the range's winner."""
    spans: list[tuple[set[str | None], list[Point]]] = []
    for p in points:
        contenders = {p.winner, *p.tied}
        common = spans[-1][0] & contenders if spans else set()
        if common:
            spans[-1] = (common, spans[-1][1] + [p])
        else:
            spans.append((contenders, [p]))
    out = []
    for common, span in spans:
        winner = range_winner(common, span, prefer)
        out.append(Range(span[0].length, span[-1].length, winner,
                         sorted(b for b in common if b != winner)))  # type: ignore[type-var]
    return out


def range_winner(common: set[str | None], span: list[Point], prefer: tuple[str, ...]
                 ) -> str | None:
    """Of the backends within noise of the winner at every length of a range: the first
    preferred, else the one winning most lengths, else the fastest over them."""
    if None in common:
        return None
    order = {name: i for i, name in enumerate(prefer)}

    def slowness(b: str) -> float:
        return sum(dict(map(tuple, p.ranking))[b] / (p.winner_ms or 1.0) for p in span)

    return min(common, key=lambda b: (order.get(b, len(order)),  # type: ignore[arg-type]
                                      -sum(p.winner == b for p in span), slowness(b), b))


def crossovers(ranges: list[Range]) -> list[Crossover]:
    """Where the winner of one range gives way to the next's."""
    return [Crossover(a.end, b.start, a.winner, b.winner)
            for a, b in zip(ranges, ranges[1:], strict=False)]


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
