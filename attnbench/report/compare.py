"""`attnbench compare BASE NEW`: the comparison printed, and the regression gate's verdict."""

from __future__ import annotations

import sys

from attnbench.errors import UsageError
from attnbench.measure.busy import run_verdict, warning_lines
from attnbench.report.compare_env import environment_differences, setting_differences
from attnbench.report.compare_match import compare_runs, coverage_losses
from attnbench.report.compare_verdict import Row, busy_verdict, discount_busy, geomean_by_backend
from attnbench.report.groups import Run, read_runs
from attnbench.sanitize import plain


def busy_warnings(base: Run, new: Run, strict: bool) -> list[str]:
    """The busy-machine warnings of both runs, and what compare does about them."""
    lines = warning_lines(run_verdict(base.meta), f"the base run {base.label}") + warning_lines(
        run_verdict(new.meta), f"the new run {new.label}")
    if busy_verdict(base) or busy_verdict(new):
        lines.append("compare: timing changes are unreliable and " + (
            "gated anyway (--strict)" if strict else
            "listed, not gated (--strict gates them); correctness failures are still gated"))
    return lines


def load_pair(base: str, new: str) -> tuple[Run, Run]:
    """The base and the new run, read."""
    runs = read_runs([base, new])
    return runs[0], runs[1]


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def print_comparison(base: Run, new: Run, rows: list[Row], missing: list[tuple],
                     show_all: bool = False) -> None:
    """Warnings, the cases that changed (or all), the geometric means and a one-line verdict."""
    from rich.table import Table
    from rich.text import Text

    from attnbench.report.tables import console

    out = console()
    diffs = environment_differences(base, new)
    if diffs:
        print("WARNING: the two runs come from different environments; the numbers may not "
              "be comparable: " + plain("; ".join(diffs)), file=sys.stderr)
    settings = setting_differences(base, new)
    if settings:
        print("WARNING: the two runs were measured with different settings; the numbers may "
              "not be comparable: " + plain("; ".join(settings)), file=sys.stderr)
    table = Table(title=f"{base.label} → {new.label}", title_justify="left")
    for col in ("scenario", "case", "device", "backend", "base ms", "new ms", "ratio", "p",
                "verdict"):
        table.add_column(col, justify="right" if col in ("base ms", "new ms", "ratio", "p")
                         else "left")
    for r in rows:
        if show_all or r.verdict != "same":
            verdict = r.verdict + (f" ({r.base_status} → {r.new_status})"
                                   if r.base_status != r.new_status else "") + (
                " (unreliable: busy machine)" if r.unreliable else "")
            table.add_row(*map(plain, r.key), _fmt(r.base_ms, ".4f"), _fmt(r.new_ms, ".4f"),
                          _fmt(r.ratio, ".3f"), _fmt(r.p_value, ".2g"),
                          Text(verdict, style="bold red" if r.gated else ""))
    if table.row_count:
        out.print(table)
    means = Table(title="geometric mean of new/base per backend", title_justify="left")
    for col in ("backend", "ratio", "cases"):
        means.add_column(col)
    for backend, (g, n) in geomean_by_backend(rows).items():
        means.add_row(plain(backend), f"{g:.3f}", str(n))
    out.print(means)
    for key in missing[:20]:
        print(f"note: {plain(' '.join(key))} is in the base run but not in the new one",
              file=sys.stderr)
    if len(missing) > 20:
        print(f"note: {len(missing) - 20} more records of the base run are not in the new one",
              file=sys.stderr)


def run_compare(base_path: str, new_path: str, threshold: float | None, min_abs_ms: float | None,
                show_all: bool = False, allow_missing: bool = False, strict: bool = False,
                fmt: str = "table") -> int:
    """The compare command: 0 when nothing is gated, 1 on a regression, a new failure or lost
    coverage (missing cases or backends, an unfinished new run) unless allow_missing. When
    either run was busy, timing regressions are listed but not gated unless strict."""
    base, new = load_pair(base_path, new_path)
    rows, missing = compare_runs(base, new, threshold, min_abs_ms)
    if not rows:
        raise UsageError(f"{base_path} and {new_path} have no (scenario, case, device, backend) "
                         "in common: nothing to compare")
    spared = discount_busy(rows, base, new, strict)
    for line in busy_warnings(base, new, strict):  # at the top: before the table
        print(plain(line), file=sys.stderr)
    if fmt == "table":
        print_comparison(base, new, rows, missing, show_all)
    if base.meta.get("finished") is not True:
        print(f"note: the base run {base.path} did not finish; only its records are compared",
              file=sys.stderr)
    losses = coverage_losses(base, new, missing, rows)
    for text in losses:
        print(f"{'note' if allow_missing else 'coverage'}: {plain(text)}", file=sys.stderr)
    gated = [r for r in rows if r.gated]
    counts = {v: sum(r.verdict == v for r in rows) for v in dict.fromkeys(r.verdict for r in rows)}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items()) or "no common records"
    if missing:
        summary += f", {len(missing)} missing from the new run"
    if spared:
        summary += (f"; {len(spared)} timing regression(s) not gated, a run was busy: "
                    + ", ".join(sorted({r.key[3] for r in spared})))
    parts = [f"{len(gated)} gated: " + ", ".join(sorted({f"{r.key[3]} ({r.verdict})"
                                                          for r in gated}))] if gated else []
    if losses and not allow_missing:
        parts.append("lost coverage: " + "; ".join(losses) + " (--allow-missing accepts it)")
    verdict = plain("compare: FAILED, " + "; ".join(parts) + f". [{summary}]") if parts else (
        f"compare: passed [{summary}]")
    if fmt == "markdown":
        from attnbench.report.compare_markdown import comparison_markdown

        print(comparison_markdown(base, new, rows, missing, verdict, show_all), end="")
    else:
        print(verdict)
    return 1 if parts else 0
