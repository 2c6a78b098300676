"""`attnbench recommend`: per bucket of cases, the fastest backend that agrees with the oracle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attnbench.report.groups import Run, variant_label, variant_value
from attnbench.report.recommend_case import (
    Exclusion,
    Options,
    Point,
    bucket_exclusions,
    judge_point,
)

DECODE_MAX_Q = 16  # a query length up to this (and under the key length) is decode
LABELLED_VARIANTS = ("window", "layout", "alibi", "bias", "softcap", "sinks", "lse",
                     "mask_mod", "kv_quant", "inputs", "poison", "strides")
LENGTH_LISTS = {"q_lens": "ragged q", "kv_lens": "ragged kv", "doc_lens": "documents"}
POOLING = ("records of runs made on the same machine (device type and GPU or CPU model) are "
           "pooled; a case a backend ran in several of them is judged on all its records "
           "(any failure excludes it) and timed on their samples together; runs on other "
           "machines are bucketed apart")


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
class Range:
    """Consecutive lengths of a bucket at each of which one backend (the winner here) wins or
    ties with the winner; tied: the others that do too."""

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


def recommend(runs: list[Run], options: Options | None = None) -> Recommendation:
    """Bucket every record of the runs and judge each bucket."""
    options = options or Options()
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
