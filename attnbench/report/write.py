"""`attnbench report`: report.md, a self-contained report.html, summary.csv and plots of runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attnbench.errors import UsageError
from attnbench.report import masks, plots
from attnbench.report.error_maps import mismatch_section
from attnbench.report.group_section import group_section
from attnbench.report.groups import make_groups, read_runs
from attnbench.report.plot_kit import Plot, colours
from attnbench.report.recommend_view import recommendation_section
from attnbench.report.record_sections import (
    agreement_section,
    determinism_section,
    failures_section,
    margin_section,
    records_section,
)
from attnbench.report.render import Doc, to_html, to_markdown
from attnbench.report.run_sections import (
    busy_section,
    environment_section,
    frontier_section,
    scaling_section,
)
from attnbench.report.scaling import analyse
from attnbench.report.summary_csv import write_csv
from attnbench.results_writer import writing


@dataclass
class Report:
    """Where a report's files went."""

    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    plots: list[Plot]


def write_report(paths: list[str | Path], out_dir: str | Path | None = None,
                 baseline: str | None = None) -> Report:
    """Read the runs, draw the plots and write report.md, report.html and summary.csv.
    baseline: the backend speedups are relative to (None: torch-naive, where it ran); one
    named that is in none of the runs is a UsageError."""
    runs = read_runs(paths)
    names = {r["backend"] for run in runs for r in run.records}
    if baseline is not None and baseline not in names:
        raise UsageError(f"--baseline {baseline}: no record of that backend in the run(s) "
                         f"(backends: {', '.join(sorted(names)) or 'none'})")
    baseline = baseline or "torch-naive"
    out = Path(out_dir) if out_dir else Path(paths[0])
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    groups = make_groups(runs)
    cmap = colours([r["backend"] for g in groups for r in g.records])
    doc = Doc("attnbench report")
    doc.add(*busy_section(runs), *environment_section(runs), *recommendation_section(runs))
    drawn: list[Plot] = []
    for g in groups:
        made = plots.save_group(g, out / "plots", cmap, baseline)
        mask = masks.save_mask(g, out / "plots")
        drawn += made + ([mask] if mask else [])
        doc.add(*group_section(g, made, baseline, mask))
    scaling = analyse(groups)
    doc.add(*scaling_section(scaling), *frontier_section(runs), *agreement_section(groups),
            *margin_section(groups), *determinism_section(groups), *records_section(groups),
            *failures_section(groups), *mismatch_section(groups, out / "plots"))
    md, page, table = out / "report.md", out / "report.html", out / "summary.csv"
    with writing(md):
        md.write_text(to_markdown(doc, out), encoding="utf-8")
    with writing(page):
        page.write_text(to_html(doc), encoding="utf-8")
    with writing(table):
        write_csv(table, groups, baseline)
    return Report(out, md, page, table, drawn)
