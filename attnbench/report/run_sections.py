"""Report sections about the runs: busy-machine warnings, environments, scaling, frontiers."""

from __future__ import annotations

import json
from typing import Any

from attnbench.measure.busy import run_verdict, warning_lines
from attnbench.report.groups import Run
from attnbench.report.render import Cell, Heading, Table, Text
from attnbench.report.scaling import Scaling


def busy_section(runs: list[Run]) -> list[Any]:
    """At the top: a loud warning for each run made on a busy machine, with what was seen."""
    blocks: list[Any] = []
    for run in runs:
        verdict = run_verdict(run.meta)
        lines = warning_lines(verdict,
                              f"run {run.label}")
        if lines:
            blocks.append(Text(lines[0].removeprefix("WARNING: "), True))
            blocks += [Text(f"why: {r}") for r in verdict.get("reasons") or []]
            if verdict.get("seen"):
                blocks.append(Text(f"seen: {verdict['seen']}"))
    return blocks


def machine_state(run: Run) -> str:
    """busy, idle, or not judged (a run made before attnbench judged contention)."""
    verdict = run_verdict(run.meta)
    if not isinstance(verdict, dict) or not isinstance(verdict.get("busy"), bool):
        return "not judged"
    return "busy" if verdict["busy"] else "idle"


def environment_section(runs: list[Run]) -> list[Any]:
    """Which runs, on what: one row per run."""
    headers = ["run", "host", "cpu", "cores", "gpu", "python", "torch", "numpy", "commit",
               "finished", "records", "machine"]
    rows = []
    for run in runs:
        env = run.environment
        versions = env.get("versions") or {}
        gpu = env.get("gpu")
        gpu_text = gpu.get("name", str(gpu)) if isinstance(gpu, dict) else str(gpu or "none")
        values = [run.label, env.get("host"), env.get("cpu"), env.get("cores"), gpu_text,
                  env.get("python"), versions.get("torch"), versions.get("numpy"),
                  str(env.get("git_commit") or "")[:10], run.meta.get("finished"),
                  len(run.records), machine_state(run)]
        rows.append([Cell("" if v is None else str(v)) for v in values])
    blocks: list[Any] = [Heading(2, "Runs"), Table(headers, rows)]
    for run in runs:
        if not run.meta.get("finished"):
            blocks.append(Text(f"run {run.label} did not finish: its records are partial.", True))
        if not run.records:
            blocks.append(Text(f"run {run.label} has no records.", True))
    return blocks


def scaling_section(rows: list[Scaling]) -> list[Any]:
    """Fitted exponents of time and memory in the x axis, and how far each backend got."""
    headers = ["scenario", "device", "run", "backend", "variant", "axis", "time exponent",
               "memory exponent", "largest ok", "stopped at", "warnings"]
    table_rows = []
    shown = [s for s in rows if s.time.exponent is not None or s.memory.exponent is not None
             or s.stopped_at is not None]
    for s in shown:
        stop = f"{s.stopped_at} ({s.stop_status})" if s.stopped_at else "–"
        warns = "; ".join(f"{k}: {f.warning}" for k, f in (("time", s.time), ("memory", s.memory))
                          if f.warning and f.n)
        values = [s.scenario, s.device, s.run, s.backend, s.variant or "–", s.axis,
                  s.time.text(), s.memory.text(), str(s.reached or "–"), stop, warns]
        table_rows.append([Cell(v) for v in values[:-1]] + [Cell(values[-1], wrap=True)])
    intro = Text("Exponent p of a log-log least-squares fit, time ∝ size^p (ok records only). "
                 "Dense attention costs O(N²) FLOPs: p near 2 at large N; a smaller p means "
                 "fixed overheads still dominate. Memory p near 2 means a materialised score "
                 "matrix; near 1, a fused kernel.")
    blocks: list[Any] = [Heading(2, "Scaling"), intro, Table(headers, table_rows)]
    if len(shown) < len(rows):
        blocks.append(Text(f"{len(rows) - len(shown)} backend and variant pair(s) ran at a "
                           "single size and stopped nowhere: no exponent to fit."))
    return blocks


def frontier_section(runs: list[Run]) -> list[Any]:
    """Where each backend stopped in a `run --frontier` (its frontier.json), when there is one."""
    rows = []
    for run in runs:
        path = run.path / "frontier.json"
        try:
            stops = json.loads(path.read_text()) if path.is_file() else []
        except (OSError, json.JSONDecodeError):
            stops = []
        for st in stops if isinstance(stops, list) else []:
            rows.append([Cell(str(st.get(k) if st.get(k) is not None else "–")) for k in (
                "scenario", "device", "backend", "start_case", "reached_seq_kv",
                "stopped_at_seq_kv", "stop", "reason")] + [Cell(run.label)])
    if not rows:
        return []
    headers = ["scenario", "device", "backend", "start", "largest ok", "stopped at", "stop",
               "reason", "run"]
    return [Heading(2, "Frontier (doubling until failure)"), Table(headers, rows)]
