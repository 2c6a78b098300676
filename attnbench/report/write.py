"""`attnbench report`: report.md, a self-contained report.html, summary.csv and plots of runs."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnbench.measure.busy import run_verdict, warning_lines
from attnbench.measure.roof import unmeasured
from attnbench.record import (
    NOT_OK,
    VERIFIED,
    Status,
    error_ratio,
    failure_text,
    median_ms,
    peak_bytes,
)
from attnbench.report import masks, plots
from attnbench.report.groups import Group, Run, field_label, make_groups, read_runs
from attnbench.report.recommend_view import recommendation_section
from attnbench.report.render import Cell, Doc, Heading, Image, Table, Text, to_html, to_markdown
from attnbench.report.scaling import Scaling, analyse
from attnbench.results_writer import writing
from attnbench.sanitize import csv_cell

STATUS_MARK = {Status.OK: "✓", Status.MISMATCH: "✗"}


@dataclass
class Report:
    """Where a report's files went."""

    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    plots: list[plots.Plot]


def write_report(paths: list[str | Path], out_dir: str | Path | None = None,
                 baseline: str = "torch-naive") -> Report:
    """Read the runs, draw the plots and write report.md, report.html and summary.csv."""
    runs = read_runs(paths)
    out = Path(out_dir) if out_dir else Path(paths[0])
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    groups = make_groups(runs)
    cmap = plots.colours([r["backend"] for g in groups for r in g.records])
    doc = Doc("attnbench report")
    doc.add(*busy_section(runs), *environment_section(runs), *recommendation_section(runs))
    drawn: list[plots.Plot] = []
    for g in groups:
        made = plots.save_group(g, out / "plots", cmap, baseline)
        mask = masks.save_mask(g, out / "plots")
        drawn += made + ([mask] if mask else [])
        doc.add(*group_section(g, made, baseline, mask))
    scaling = analyse(groups)
    doc.add(*scaling_section(scaling), *frontier_section(runs), *agreement_section(groups),
            *margin_section(groups), *determinism_section(groups), *records_section(groups),
            *failures_section(groups))
    md, page, table = out / "report.md", out / "report.html", out / "summary.csv"
    with writing(md):
        md.write_text(to_markdown(doc, out), encoding="utf-8")
    with writing(page):
        page.write_text(to_html(doc), encoding="utf-8")
    with writing(table):
        write_csv(table, groups, baseline)
    return Report(out, md, page, table, drawn)


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


def case_label(g: Group, rec: dict[str, Any]) -> str:
    """Row label of a case: the x-axis value then its variant."""
    return " ".join(filter(None, [field_label(g.axis, rec.get(g.axis)), g.variant(rec)]))


def cell_text(rec: dict[str, Any] | None, base_ms: float | None) -> str:
    """'12.345 ms ×2.10 ✓', 'mismatch 3.1 ms ✗', 'oom', 'unsupported' ..."""
    if rec is None:
        return ""
    status, med = rec.get("status", "?"), median_ms(rec)
    if status in STATUS_MARK and med is not None:
        speed = f" ×{base_ms / med:.2f}" if base_ms and med else ""
        return f"{med:.3f} ms{speed} {STATUS_MARK[status]}"
    return str(status) if status not in STATUS_MARK else f"{status} (not timed)"


def group_table(g: Group, baseline: str) -> Table:
    """Cases as rows, backends as columns: median ms, speedup over the baseline, status."""
    backends, variants = g.backends(), g.variants()
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    order: dict[str, tuple[Any, ...]] = {}
    for r in g.records:
        by_case.setdefault(r["case_id"], {})[r["backend"]] = r
        order[r["case_id"]] = (variants.index(g.variant(r)), r.get(g.axis) or 0)
    rows = []
    for case_id in sorted(by_case, key=lambda c: order[c]):
        recs = by_case[case_id]
        base_rec = recs.get(baseline) or {}
        base = median_ms(base_rec) if base_rec.get("status") == Status.OK else None  # as csv, plots
        timed = {b: median_ms(r) for b, r in recs.items() if r.get("status") == Status.OK}
        timed = {b: m for b, m in timed.items() if m is not None}
        best = min(timed, key=lambda b: timed[b]) if len(timed) > 1 else None
        first = next(iter(recs.values()))
        rows.append([Cell(case_label(g, first))] + [
            Cell(cell_text(recs.get(b), base) + (" ★" if b == best else ""), b == best)
            for b in backends])
    caption = (f"median per call; ×N = speedup over {baseline}; ✓ agrees with the oracle, "
               "✗ mismatch; ★ fastest agreeing backend of the row")
    return Table(["case"] + backends, rows, caption)


def group_section(g: Group, made: list[plots.Plot], baseline: str,
                  mask: plots.Plot | None = None) -> list[Any]:
    blocks: list[Any] = [Heading(2, g.title)]
    if mask is not None:  # floats beside the table in HTML
        blocks.append(Image(mask.png, f"{g.scenario} on {g.device}: {masks.CAPTION}", "mask"))
    if g.variant_fields:
        blocks.append(Text("cases also vary in: " + ", ".join(g.variant_fields)))
    blocks.append(group_table(g, baseline))
    blocks += [Image(p.png, f"{g.scenario} on {g.device}: {p.title}") for p in made]
    if not any(r.get("status") == Status.OK for r in g.records):
        blocks.append(Text(f"no backend ran {g.scenario} on {g.device} successfully.", True))
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


def agreement_section(groups: list[Group]) -> list[Any]:
    """Backend × scenario: how many cases passed, mismatched, were unsupported (and why)."""
    scenarios = sorted({g.scenario for g in groups})
    backends = sorted({r["backend"] for g in groups for r in g.records})
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for g in groups:
        for r in g.records:
            cells.setdefault((r["backend"], g.scenario), []).append(r)
    rows = [[Cell(b)] + [Cell(agreement_cell(cells.get((b, s), [])), wrap=True)
                         for s in scenarios] for b in backends]
    return [Heading(2, "Agreement"), Table(["backend"] + scenarios, rows)]


def margin_section(groups: list[Group]) -> list[Any]:
    """Per backend, the distribution of error/bound over its checked records: how close to the
    edge of the pass rule it runs (1 is the bound)."""
    ratios: dict[str, list[float]] = {}
    for g in groups:
        for r in g.records:
            e = error_ratio(r)
            if r.get("status") in VERIFIED and e is not None:
                ratios.setdefault(r["backend"], []).append(e)
    headers = ["backend", "records", "median", "p90", "max", "over 0.5"]
    rows = []
    for b, xs in sorted(ratios.items()):
        q = np.quantile(np.asarray(xs), [0.5, 0.9]) if all(map(np.isfinite, xs)) else None
        mid, p90 = (f"{q[0]:.2g}", f"{q[1]:.2g}") if q is not None else ("–", "–")
        rows.append([Cell(b), Cell(str(len(xs))), Cell(mid), Cell(p90), Cell(f"{max(xs):.2g}"),
                     Cell(str(sum(x > 0.5 for x in xs)))])
    intro = Text("error/bound of each checked output (the worst row's error over that row's "
                 "bound; a record passes at 1 or less), per backend over every record.")
    return [Heading(2, "How close to the bound"), intro, Table(headers, rows)] if rows else []


def determinism_section(groups: list[Group]) -> list[Any]:
    """Per backend and scenario, the records whose repeated calls (--repeat) were bitwise
    identical, and the largest difference where they were not."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for g in groups:
        for r in g.records:
            if isinstance(r.get("determinism"), dict):
                cells.setdefault((r["backend"], g.scenario), []).append(r["determinism"])
    if not cells:
        return []
    rows = []
    for (backend, scenario), dets in sorted(cells.items()):
        same = sum(bool(d.get("bitwise_identical")) for d in dets)
        worst = max(float(d.get("max_abs_diff") or 0) for d in dets)
        names = sorted({str(n) for d in dets for n in d.get("differing") or []})
        calls = ", ".join(sorted({str(d.get("repeats")) for d in dets}))
        rows.append([Cell(backend), Cell(scenario), Cell(calls), Cell(f"{same} of {len(dets)}"),
                     Cell("deterministic" if same == len(dets) else "NOT deterministic"),
                     Cell(_num(worst) if worst else "0"), Cell(", ".join(names) or "–")])
    intro = Text("check/run --repeat N: each case's prepared call run N times in one worker; "
                 "outputs (and gradients in bwd and fwd_bwd) compared bit for bit with the "
                 "first call's.")
    headers = ["backend", "scenario", "calls", "bitwise identical", "verdict",
               "largest difference", "differing"]
    return [Heading(2, "Determinism"), intro, Table(headers, rows)]


def agreement_cell(recs: list[dict[str, Any]]) -> str:
    if not recs:
        return "–"
    counts = Counter(r.get("status") for r in recs)
    names = {Status.OK: "passed", Status.MISMATCH: "mismatched"}
    parts = [f"{n} {names.get(str(s), str(s))}" for s, n in sorted(counts.items(), key=str)]
    reasons = list(dict.fromkeys(x for r in recs if r.get("status") == Status.UNSUPPORTED
                                 for x in r.get("reasons") or []))
    if reasons:
        more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
        parts.append(f"unsupported because: {reasons[0][:160]}{more}")
    worst = max((e for r in recs if (e := error_ratio(r)) is not None), default=None)
    if worst is not None:
        parts.append(f"worst error/bound {worst:.2g}")
    for field, text in (("fallback_reason", "fixed bounds used because"),
                        ("baseline_missing", "no same-dtype baseline to calibrate the model"),
                        ("baseline_fallback", "baseline allowance added because")):
        why = list(dict.fromkeys(o[field] for r in recs
                                 for o in (r.get("agreement") or {}).get("outputs") or []
                                 if isinstance(o, dict) and o.get(field)))
        if why:  # the pass rule fell back, or its calibration is missing: say why
            more = f" (+{len(why) - 1} more)" if len(why) > 1 else ""
            parts.append(f"{text}: {str(why[0])[:160]}{more}")
    return "; ".join(parts)


RECORD_HEADERS = ["run", "scenario", "backend", "case", "set-up ms", "first call ms", "median ms",
                  "IQR ms", "peak MiB", "naive scores MiB", "GFLOP/s", "% of roof", "error/bound"]


def records_section(groups: list[Group]) -> list[Any]:
    """Every measured record: first call, median, IQR, peak memory, GFLOP/s, roof fraction."""
    rows = [[Cell(v) for v in record_row(g, r)] for g in groups for r in g.records
            if r.get("status") in VERIFIED]
    if not rows:
        return []
    intro = Text("One row per measured record. first call: JIT, compile and page faults, kept "
                 "out of the median; IQR marked ~ when noisy (IQR/median ≥ 10 %); peak memory "
                 "beyond the inputs, next to what a naive score matrix would hold.")
    runs = {id(g.run): g.run for g in groups}.values()
    no_roof = [Text(f"no matmul roof for {device} {dtype} in run {run.label}: {why}")
               for run in runs for device, per in unmeasured(run.meta.get("roofs")).items()
               for dtype, why in per.items()]
    return [Heading(2, "Measurements"), intro, Table(RECORD_HEADERS, rows), *no_roof]


def record_row(g: Group, r: dict[str, Any]) -> list[str]:
    timing = r.get("timing") or {}
    peak, scores = peak_bytes(r), r.get("score_bytes")
    roof, err = r.get("roof_fraction"), error_ratio(r)
    return [g.run.label, g.scenario, r["backend"], str(r.get("case_id")),
            _num(r.get("prepare_ms")), _num(r.get("first_call_ms")),
            _num(timing.get("median_ms")),
            _num(timing.get("iqr_ms")) + (" ~" if timing.get("noisy") else ""),
            _num(peak / 2**20 if peak is not None else None),
            _num(scores / 2**20 if scores else None), _num(r.get("gflops_per_s")),
            _num(100 * roof if roof is not None else None), _num(err)]


def _num(x: float | None) -> str:
    """Three significant digits, or – when missing."""
    return "–" if x is None else f"{x:.3g}"


def failures_section(groups: list[Group]) -> list[Any]:
    """Every record that is not ok or unsupported, with its message."""
    rows = []
    for g in groups:
        for r in g.records:
            if r.get("status") in NOT_OK:
                rows.append([Cell(v) for v in (g.run.label, g.scenario, r["backend"],
                                               str(r.get("case_id")), str(r.get("status")))]
                            + [Cell(failure_text(r)[:500], wrap=True)])
    if not rows:
        return [Heading(2, "Not ok"), Text("every record is ok or unsupported.")]
    return [Heading(2, "Not ok"), Table(["run", "scenario", "backend", "case", "status",
                                         "message"], rows)]


CSV_VARIANT_FIELDS = ["window_left", "window_right", "q_lens", "kv_lens", "doc_lens", "layout",
                      "page_size", "alibi", "bias", "softcap", "head_dim_v"]
CSV_FIELDS = ["run", "scenario", "device", "backend", "case_id", "variant", "batch", "heads_q",
              "heads_kv", "seq_q", "seq_kv", "head_dim", "dtype", "mask", "mode",
              *CSV_VARIANT_FIELDS, "status", "median_ms", "iqr_ms", "prepare_ms", "first_call_ms",
              "gflops_per_s", "roof_fraction", "peak_bytes", "error_over_bound",
              "speedup_vs_baseline", "repeats", "bitwise_identical", "repeat_max_abs_diff"]


def write_csv(path: Path, groups: list[Group], baseline: str) -> None:
    """One row per record with the headline numbers."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for g in groups:
            base = {r["case_id"]: median_ms(r) for r in g.records
                    if r["backend"] == baseline and r.get("status") == Status.OK}
            for r in g.records:
                med, b = median_ms(r), base.get(r["case_id"])
                row = {**r, "run": g.run.label, "variant": g.variant(r), "median_ms": med,
                       "iqr_ms": (r.get("timing") or {}).get("iqr_ms"),
                       "peak_bytes": peak_bytes(r), "error_over_bound": error_ratio(r),
                       "speedup_vs_baseline": b / med if b and med else None,
                       **determinism_columns(r)}
                for k in ("q_lens", "kv_lens", "doc_lens"):  # lengths: "512 300 0"
                    if isinstance(row.get(k), list):
                        row[k] = " ".join(map(str, row[k]))
                w.writerow({k: csv_cell(row.get(k)) for k in CSV_FIELDS})  # no formulas


def determinism_columns(r: dict[str, Any]) -> dict[str, Any]:
    """The CSV columns of a record's repeat check (empty without one)."""
    det = r.get("determinism")
    if not isinstance(det, dict):
        return {}
    return {"repeats": det.get("repeats"), "bitwise_identical": det.get("bitwise_identical"),
            "repeat_max_abs_diff": det.get("max_abs_diff")}
