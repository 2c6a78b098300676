"""`compare --format markdown`: the comparison as a GitHub-flavoured Markdown comment for a PR."""

from __future__ import annotations

from attnbench.report.compare_verdict import Row, geomean_by_backend
from attnbench.report.groups import Run
from attnbench.sanitize import plain


def cell(x: object) -> str:
    """A table cell's text: control characters dropped, pipes and backticks escaped."""
    return plain(str(x)).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def _num(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def comparison_markdown(base: Run, new: Run, rows: list[Row], missing: list[tuple],
                        verdict: str, show_all: bool = False) -> str:
    """The verdict, the changed cases (or all), the geometric means and what is missing."""
    passed = verdict.startswith("compare: passed")
    lines = [f"### attnbench: {cell(base.label)} → {cell(new.label)}", "",
             f"{'✅' if passed else '❌'} {cell(verdict.removeprefix('compare: '))}", ""]
    shown = [r for r in rows if show_all or r.verdict != "same"]
    if shown:
        lines += ["| scenario | case | device | backend | base ms | new ms | ratio | p | verdict |",
                  "|---|---|---|---|--:|--:|--:|--:|---|"]
        for r in shown:
            what = r.verdict + (f" ({r.base_status} → {r.new_status})"
                                if r.base_status != r.new_status else "") + (
                " (unreliable: busy machine)" if r.unreliable else "")
            what = f"**{what}**" if r.gated else what
            lines.append("| " + " | ".join([*map(cell, r.key), _num(r.base_ms, ".4f"),
                                             _num(r.new_ms, ".4f"), _num(r.ratio, ".3f"),
                                             _num(r.p_value, ".2g"), cell(what)]) + " |")
    else:
        lines.append(f"No case changed ({len(rows)} compared).")
    lines += ["", "| backend | geometric mean new/base | cases |", "|---|--:|--:|"]
    lines += [f"| {cell(b)} | {g:.3f} | {n} |" for b, (g, n) in geomean_by_backend(rows).items()]
    if missing:
        lines += ["", f"{len(missing)} record(s) of the base run are not in the new one."]
    return "\n".join(lines) + "\n"
