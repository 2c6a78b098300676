"""The recommendation as JSON a model runtime can load, and back (schema attnbench.recommend/1)."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from attnbench.report.recommend import (
    Bucket,
    BucketKey,
    Crossover,
    Exclusion,
    Options,
    Point,
    Range,
    Recommendation,
)
from attnbench.results_writer import writing

SCHEMA = "attnbench.recommend/1"


def to_dict(rec: Recommendation) -> dict[str, Any]:
    """Runs, options, pooling rule and buckets; each bucket's key also as a label, its group
    ratio (heads_q / heads_kv) and its length range."""
    buckets = []
    for b in rec.buckets:
        key = {**asdict(b.key), "label": b.key.label,
               "group": b.key.heads_q // b.key.heads_kv if b.key.heads_kv else None}
        buckets.append({"key": key, "lengths": list(b.lengths), "runs": b.runs,
                        "ranges": [asdict(r) for r in b.ranges],
                        "crossovers": [asdict(c) for c in b.crossovers],
                        "excluded": [asdict(e) for e in b.excluded],
                        "points": [asdict(p) for p in b.points]})
    options = {**asdict(rec.options), "prefer": list(rec.options.prefer)}
    return {"schema": SCHEMA, "runs": rec.runs, "options": options, "pooling": rec.pooling,
            "buckets": buckets}


def from_dict(data: dict[str, Any]) -> Recommendation:
    """A recommendation read back from to_dict's output (derived fields are recomputed)."""
    if data.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} recommendation (schema {data.get('schema')!r})")
    options = Options(**{**data["options"], "prefer": tuple(data["options"]["prefer"])})
    buckets = [Bucket(_make(BucketKey, b["key"]), list(b["runs"]),
                      [_point(p) for p in b["points"]], [_make(Range, r) for r in b["ranges"]],
                      [_make(Crossover, c) for c in b["crossovers"]],
                      [_make(Exclusion, e) for e in b["excluded"]]) for b in data["buckets"]]
    return Recommendation(list(data["runs"]), options, buckets, data["pooling"])


def _make(cls: Any, data: dict[str, Any]) -> Any:
    return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _point(data: dict[str, Any]) -> Point:
    point = _make(Point, data)
    point.excluded = [_make(Exclusion, e) for e in data.get("excluded") or []]
    return point


def write_json(rec: Recommendation, path: Path) -> Path:
    with writing(path):
        path.write_text(json.dumps(to_dict(rec), indent=1) + "\n", encoding="utf-8")
    return path
