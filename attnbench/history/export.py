"""A run's timings in the formats other trackers read: Bencher's BMF JSON and an asv results
folder (benchmarks.json, machine.json and one results file per run, as asv's developer docs
describe them; `asv publish` can draw them beside a project's own benchmarks)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from attnbench.history.store import quartiles

ASV_COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a",
               "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number", "stats_repeat",
               "samples"]


def timed(records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
    """The ok records with a median, and that median in ms."""
    out = []
    for rec in records:
        median = (rec.get("timing") or {}).get("median_ms")
        if rec.get("status") == "ok" and isinstance(median, (int, float)):
            out.append((rec, float(median)))
    return out


def bencher_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Bencher Metric Format: benchmark -> latency in ns, the IQR's ends as lower and upper."""
    out: dict[str, Any] = {}
    for rec, median in timed(records):
        q25, q75 = quartiles(rec["timing"])
        name = f"{rec.get('scenario')}/{rec.get('case_id')}/{rec.get('backend')}"
        out[name] = {"latency": {"value": median * 1e6,
                                 "lower_value": (q25 if q25 is not None else median) * 1e6,
                                 "upper_value": (q75 if q75 is not None else median) * 1e6}}
    return out


def asv_name(rec: dict[str, Any]) -> str:
    """A record's asv benchmark name: attnbench.SCENARIO.BACKEND.CASE, each word without dots
    or odd characters."""
    parts = ("attnbench", rec.get("scenario"), rec.get("backend"), rec.get("case_id"))
    return ".".join(re.sub(r"[^A-Za-z0-9_:-]+", "_", str(p)) for p in parts)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def asv_results(meta: dict[str, Any], records: list[dict[str, Any]], out: Path,
                label: str | None) -> Path:
    """Write (or add to) an asv results folder; the results file written."""
    env = meta.get("environment") or {}
    commit = label or str(env.get("git_commit") or meta.get("run_id") or "unknown")
    machine = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(env.get("host") or "machine"))[:60]
    started = _js_time(meta.get("started"))
    bench_file = out / "benchmarks.json"
    benchmarks = json.loads(bench_file.read_text()) if bench_file.is_file() else {"version": 2}
    results: dict[str, Any] = {}
    for rec, median in timed(records):
        name = asv_name(rec)
        timing = rec["timing"]
        q25, q75 = quartiles(timing)
        samples = [s / 1e3 for s in timing.get("samples_ms") or [] if isinstance(s, (int, float))]
        results[name] = [[median / 1e3], [], "attnbench-1", started, None, [None], [None],
                         [None if q25 is None else q25 / 1e3],
                         [None if q75 is None else q75 / 1e3], [timing.get("loops") or 1],
                         [timing.get("n") or len(samples)], [samples or None]]
        benchmarks[name] = {"name": name, "type": "time", "unit": "seconds", "params": [],
                            "param_names": [], "version": "attnbench-1", "timeout": 60.0}
    _write_json(bench_file, benchmarks)
    _write_json(out / machine / "machine.json", {
        "version": 1, "machine": machine, "cpu": str(env.get("cpu") or ""),
        "num_cpu": str(env.get("cores") or ""), "os": str(env.get("platform") or ""),
        "arch": "", "ram": ""})
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", commit)[:80]
    path = out / machine / f"{safe}-attnbench.json"
    _write_json(path, {
        "version": 2, "commit_hash": commit, "env_name": "attnbench", "date": started,
        "params": {"machine": machine, "python": str(env.get("python") or "")},
        "python": str(env.get("python") or ""),
        "requirements": {k: v for k, v in (env.get("versions") or {}).items() if v},
        "env_vars": {}, "result_columns": ASV_COLUMNS, "results": results, "durations": {}})
    return path


def _js_time(stamp: Any) -> int | None:
    """A JavaScript time stamp (ms since the epoch) of an ISO time, or None."""
    try:
        return int(dt.datetime.fromisoformat(str(stamp)).timestamp() * 1000)
    except ValueError:
        return None
